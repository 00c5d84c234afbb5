"""The cluster files under clusters/ parse and are what Ray accepts.

Launcher YAMLs: validated against the schema shipped in the installed Ray
(ray/autoscaler/ray-schema.json) and by Ray's own `prepare_config` + `validate_config`, as
`ray up` does before it starts anything. KubeRay manifests: parsed and checked for the fields
that keep them safe and self-cleaning (the KubeRay CRD schemas are not shipped with Ray; they
were validated against KubeRay's openAPIV3Schema by hand, see clusters/README.md).
"""

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = sorted((ROOT / "clusters" / "launcher").glob("*.yaml"))


def test_there_is_a_cloud_gpu_and_an_on_prem_launcher_config():
    assert {p.name for p in LAUNCHER} >= {"gpu-cloud.yaml", "onprem.yaml"}


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_launcher_config_passes_rays_schema_and_validator(path):
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_launcher_config_keeps_token_auth_on_and_the_dashboard_private(path):
    config = yaml.safe_load(path.read_text())
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert ray_starts and all("RAY_AUTH_MODE=token" in c for c in ray_starts)
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"]


def kuberay(name: str) -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / "clusters" / "kuberay" / name).read_text()) if d]
    return next(d for d in docs if d["apiVersion"] == "ray.io/v1")


def test_kuberay_cluster_and_job_run_a_tunekit_spec_with_auth_and_cleanup():
    cluster = kuberay("raycluster.yaml")
    job = kuberay("rayjob.yaml")
    assert cluster["kind"] == "RayCluster" and job["kind"] == "RayJob"
    assert cluster["spec"]["authOptions"] == {"mode": "token"}
    assert job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["entrypoint"].startswith("tunekit run experiments/") and "--resume auto" in job["spec"]["entrypoint"]
    spec_path = job["spec"]["entrypoint"].split()[2]
    assert (ROOT / spec_path).is_file()
    # Records on a volume every pod mounts (Ray does not copy trial files to the head).
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            mounts = pod["spec"]["containers"][0].get("volumeMounts", [])
            assert {"name": "results", "mountPath": "/results"} in mounts


def test_loopback_scripts_are_valid_bash():
    for script in ("up.sh", "down.sh"):
        assert os.system(f"bash -n {ROOT / 'clusters' / 'local' / script}") == 0
