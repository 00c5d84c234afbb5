"""`tunekit jobs list | status ID | logs ID [--follow] | stop ID`: thin views over Ray's job API."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable

from toolkit.cluster.submit import TERMINAL_EXIT, follow


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def list_rows(client: Any, only_tunekit: bool = True) -> list[dict]:
    rows = []
    for job in sorted(client.list_jobs(), key=lambda j: j.start_time or 0):
        meta = job.metadata or {}
        if only_tunekit and "spec_sha256" not in meta:
            continue
        rows.append({"id": job.submission_id or job.job_id, "status": str(job.status),
                     "spec": meta.get("tunekit_spec", "-"), "started": _when(job.start_time),
                     "ended": _when(job.end_time)})
    return rows


def render_list(rows: list[dict]) -> str:
    if not rows:
        return "no tunekit jobs on this cluster"
    header = f"{'job':<44} {'status':<10} {'spec':<16} {'started (UTC)':<20} ended (UTC)"
    return "\n".join([header] + [f"{r['id']:<44} {r['status']:<10} {r['spec']:<16} {r['started']:<20} {r['ended']}"
                                 for r in rows])


def status(client: Any, job_id: str) -> tuple[str, str]:
    """(status, a few lines about the job)."""
    info = client.get_job_info(job_id)
    meta = info.metadata or {}
    lines = [f"job {job_id}: {info.status}", f"  entrypoint: {info.entrypoint}",
             f"  started {_when(info.start_time)}, ended {_when(info.end_time)} (UTC)"]
    if meta:
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in sorted(meta.items())))
    if info.message:
        lines.append(f"  {info.message}")
    return str(info.status), "\n".join(lines)


def logs(client: Any, job_id: str, follow_logs: bool, out: Callable[[str], None]) -> str:
    if follow_logs:
        return follow(client, job_id, stream_logs=True, out=out)
    out(client.get_job_logs(job_id))
    return str(client.get_job_status(job_id))


def stop(client: Any, job_id: str, wait_s: float = 60.0) -> str:
    """Ask Ray to stop the job (SIGTERM to its driver, which records the sweep as interrupted),
    then wait for it to end; returns the final status."""
    client.stop_job(job_id)
    deadline = time.monotonic() + wait_s
    while True:
        st = str(client.get_job_status(job_id))
        if st in TERMINAL_EXIT or time.monotonic() > deadline:
            return st
        time.sleep(0.5)
