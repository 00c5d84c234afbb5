"""Scheduling files for `tunekit nightly run`: cron, systemd, Kubernetes, GitHub Actions.

tunekit runs no daemon of its own: the platform's scheduler starts one run a night and the
run itself is idempotent (same night again = resume or no-op), so a retried or doubled
trigger is harmless.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

KINDS = ("cron", "systemd", "k8s", "github")


@dataclass
class ScheduleSettings:
    spec: str                    # the spec path as the scheduled command will see it
    name: str                    # the experiment name (unit and object names)
    workdir: str                 # where the command runs (the project checkout)
    hour: int = 2                # UTC
    minute: int = 0
    tunekit: str = "tunekit"     # the tunekit executable
    address: str | None = None   # a Ray cluster (job API address) to run on
    keep: int | None = None
    image: str = "rayproject/ray:2.60.0-py311"   # k8s: the image the RayJob runs (tunekit installed)
    namespace: str = "default"

    def command(self, extra: str = "") -> str:
        parts = [self.tunekit, "nightly", "run", self.spec]
        if self.address:
            parts += ["--address", self.address]
        if self.keep is not None:
            parts += ["--keep", str(self.keep)]
        return " ".join(shlex.quote(p) for p in parts) + extra

    @property
    def slug(self) -> str:
        # Kubernetes object names: lower-case alphanumerics and '-'.
        return re.sub(r"[^a-z0-9-]+", "-", self.name.lower()).strip("-")[:40] or "sweep"


def cron(s: ScheduleSettings) -> str:
    log = f"{s.workdir}/tunekit-nightly-{s.name}.log"
    return (f"# tunekit nightly sweep {s.name}: every night at {s.hour:02d}:{s.minute:02d} UTC\n"
            f"CRON_TZ=UTC\n"
            f"{s.minute} {s.hour} * * * cd {shlex.quote(s.workdir)} && {s.command()} >> {shlex.quote(log)} 2>&1\n")


def systemd(s: ScheduleSettings) -> dict[str, str]:
    unit = f"tunekit-nightly-{s.name}"
    service = (f"[Unit]\nDescription=tunekit nightly sweep {s.name}\nWants=network-online.target\n"
               f"After=network-online.target\n\n[Service]\nType=oneshot\nWorkingDirectory={s.workdir}\n"
               f"ExecStart={s.command()}\n"
               # Exit 3 is a flagged regression, 75 another run of the night: neither is a unit failure.
               f"SuccessExitStatus=3 75\n")
    timer = (f"[Unit]\nDescription=Run tunekit nightly sweep {s.name} every night\n\n[Timer]\n"
             f"OnCalendar=*-*-* {s.hour:02d}:{s.minute:02d}:00 UTC\nPersistent=true\n"
             f"RandomizedDelaySec=60\nUnit={unit}.service\n\n[Install]\nWantedBy=timers.target\n")
    return {f"{unit}.service": service, f"{unit}.timer": timer}


def k8s(s: ScheduleSettings) -> str:
    """A CronJob (concurrencyPolicy Forbid) whose pod creates one KubeRay RayJob per night.

    The RayJob is named after the night, so a second trigger of the same night is refused by
    the API server (the name is the idempotency key); the RayJob's entrypoint is the same
    idempotent `tunekit nightly run`."""
    slug = s.slug
    rayjob = {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": {"name": f"{slug}-nightly-__NIGHT__", "namespace": s.namespace,
                     "labels": {"app.kubernetes.io/part-of": "tunekit", "tunekit/sweep": slug}},
        "spec": {
            "entrypoint": f"{s.command()} --date __NIGHT__",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 3600,
            "rayClusterSpec": {
                "rayVersion": "2.60.0",
                "authOptions": {"mode": "token"},
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                                  "template": {"spec": {"containers": [{
                                      "name": "ray-head", "image": s.image, "workingDir": s.workdir,
                                      "volumeMounts": [{"name": "results", "mountPath": "/results"}],
                                      "env": [{"name": "TUNEKIT_STORAGE", "value": "/results"}]}],
                                      "volumes": [{"name": "results", "persistentVolumeClaim": {
                                          "claimName": "tunekit-results"}}]}}},
                "workerGroupSpecs": [{"groupName": "gpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 4,
                                      "rayStartParams": {},
                                      "template": {"spec": {"containers": [{
                                          "name": "ray-worker", "image": s.image,
                                          "resources": {"limits": {"nvidia.com/gpu": 1}},
                                          "volumeMounts": [{"name": "results", "mountPath": "/results"}]}],
                                          "volumes": [{"name": "results", "persistentVolumeClaim": {
                                              "claimName": "tunekit-results"}}]}}}],
            },
        },
    }
    script = ("set -eu; D=$(date -u +%F); "
              "sed \"s/__NIGHT__/$D/g\" /template/rayjob.yaml | kubectl create -f - "
              "|| kubectl get rayjob -n \"$NAMESPACE\" \"" + slug + "-nightly-$D\"")
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"{slug}-nightly", "namespace": s.namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": f"{slug}-nightly", "namespace": s.namespace},
         "rules": [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{slug}-nightly", "namespace": s.namespace},
         "subjects": [{"kind": "ServiceAccount", "name": f"{slug}-nightly", "namespace": s.namespace}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{slug}-nightly"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{slug}-rayjob", "namespace": s.namespace},
         "data": {"rayjob.yaml": yaml.safe_dump(rayjob, sort_keys=False)}},
        {"apiVersion": "batch/v1", "kind": "CronJob",
         "metadata": {"name": f"{slug}-nightly", "namespace": s.namespace},
         "spec": {"schedule": f"{s.minute} {s.hour} * * *", "timeZone": "Etc/UTC",
                  "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
                  "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": {
                      "serviceAccountName": f"{slug}-nightly", "restartPolicy": "OnFailure",
                      "containers": [{"name": "submit", "image": "bitnami/kubectl:1.31",
                                      "command": ["/bin/sh", "-c", script],
                                      "env": [{"name": "NAMESPACE", "value": s.namespace}],
                                      "volumeMounts": [{"name": "template", "mountPath": "/template"}]}],
                      "volumes": [{"name": "template", "configMap": {"name": f"{slug}-rayjob"}}]}}}}}},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def github(s: ScheduleSettings) -> str:
    workflow = {
        "name": f"tunekit nightly {s.name}",
        "on": {"schedule": [{"cron": f"{s.minute} {s.hour} * * *"}], "workflow_dispatch": {}},
        # One run of the sweep at a time; a second trigger waits instead of racing the first.
        "concurrency": {"group": f"tunekit-nightly-{s.slug}", "cancel-in-progress": False},
        "jobs": {"sweep": {
            "runs-on": "ubuntu-latest", "timeout-minutes": 360,
            "steps": [
                {"uses": "actions/checkout@v4"},
                {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11"}},
                {"run": "python -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0 "
                        "&& pip install -q -e ."},
                {"env": {"RAY_AUTH_TOKEN": "${{ secrets.RAY_AUTH_TOKEN }}"},
                 "run": ". .venv/bin/activate && " + s.command()},
                {"if": "always()", "uses": "actions/upload-artifact@v4",
                 "with": {"name": f"tunekit-nightly-{s.slug}", "path": f"tunekit-results/{s.name}/nightly/"}},
            ]}},
    }
    return yaml.safe_dump(workflow, sort_keys=False)


def emit(kind: str, s: ScheduleSettings, out: Path | None = None) -> dict[str, str]:
    """The files for ``kind`` as {file name: text}; written under ``out`` when given."""
    if kind not in KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; choose one of {', '.join(KINDS)}")
    files = {"cron": lambda: {f"tunekit-nightly-{s.name}.cron": cron(s)},
             "systemd": lambda: systemd(s),
             "k8s": lambda: {f"tunekit-nightly-{s.slug}.yaml": k8s(s)},
             "github": lambda: {f"tunekit-nightly-{s.slug}.yml": github(s)}}[kind]()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for fname, text in files.items():
            target = out / fname
            if target.exists():
                raise FileExistsError(f"{target} exists; remove it or choose another --out")
            target.write_text(text, encoding="utf-8")
    return files
