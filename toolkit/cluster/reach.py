"""Is the record storage one folder every node of the cluster reaches?

Since Ray 2.7 nothing is copied to the head node: every trial writes its checkpoints where it
runs, into the run's storage path. A head-local path on a multi-node cluster fails late (after
trials ran) and obscurely (ray#41641). So the driver writes a marker file into the storage and
asks one zero-CPU task pinned to each live node whether it sees it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def _sees(path: str) -> bool:
    return os.path.exists(path)


def unreachable_nodes(storage: Path, timeout_s: float = 120.0) -> list[str]:
    """Live nodes (as `ip (node id prefix)`) that cannot see `storage`; [] on a single node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return []
    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".tunekit-reach-{uuid.uuid4().hex}"
    marker.write_text("written by the driver; removed after the check\n")
    try:
        sees = ray.remote(num_cpus=0, max_retries=0)(_sees)
        names = [f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})" for n in nodes]
        refs = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker)) for n in nodes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        out = []
        for name, ref in zip(names, refs):
            if ref not in ready:
                out.append(f"{name}: no answer in {timeout_s:.0f} s")
                continue
            try:
                if not ray.get(ref):
                    out.append(name)
            except Exception as e:  # noqa: BLE001 - a node that cannot run the check cannot be trusted either
                out.append(f"{name}: {type(e).__name__}")
        return out
    finally:
        marker.unlink(missing_ok=True)


def check_storage(storage: Path) -> None:
    """Refuse (a `SpecError` on `storage`) a path some node of the cluster cannot reach."""
    missing = unreachable_nodes(storage)
    if missing:
        from toolkit.spec import SpecError

        raise SpecError([("storage", f"{storage} is not reachable from {len(missing)} node(s): {', '.join(missing)}; "
                                     "on a multi-node cluster every node writes there: use a shared filesystem "
                                     "(NFS, EFS, a ReadWriteMany volume) mounted at the same path everywhere")])
