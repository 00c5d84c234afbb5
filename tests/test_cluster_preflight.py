"""`tunekit submit` checks that need no cluster: everything is refused before any upload."""

from pathlib import Path

import pytest

from toolkit.cluster.auth import EXIT_BAD_INPUT, EXIT_UNREACHABLE, ClusterError
from toolkit.cluster.preflight import address_overrides, check_versions, scan_package
from toolkit.cluster.submit import entrypoint, spec_digest, submission_id

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens, so reaching the network shows


class Result:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def tunekit(monkeypatch, capsys):
    """`tunekit ...` in this process (importing Ray once keeps these tests quick)."""
    from toolkit.cli import main

    def run(*args: str, cwd: Path, env: dict | None = None) -> Result:
        monkeypatch.chdir(cwd)
        for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            monkeypatch.delenv(key, raising=False)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(args))
        return Result(code, capsys.readouterr().err)

    return run


def project(tmp_path: Path, storage: str = "/tmp/tk-records") -> Path:
    spec = (ROOT / "experiments/quadratic.yaml").read_text().replace("storage: ./tunekit-results",
                                                                      f"storage: {storage}")
    (tmp_path / "sweep.yaml").write_text(spec)
    return tmp_path


def test_oversized_working_dir_is_refused_before_any_upload(tmp_path, tunekit):
    proj = project(tmp_path)
    (proj / "data").mkdir()
    with open(proj / "data" / "big.bin", "wb") as f:  # sparse: 120 MiB of size, no disk
        f.truncate(120 * 2**20)
    (proj / "small.txt").write_text("x")
    run = tunekit("submit", "sweep.yaml", "--address", UNREACHABLE, cwd=proj)
    assert run.returncode == EXIT_BAD_INPUT, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert "over Ray's 100.0 MiB upload limit" in line and "data/big.bin (120.0 MiB)" in line and ".rayignore" in line
    # Left out by a .rayignore, the same folder passes the size check and only then tries the
    # network (and finds nothing there): the refusal above happened before any connection.
    (proj / ".rayignore").write_text("data/\n")
    run = tunekit("submit", "sweep.yaml", "--address", UNREACHABLE, cwd=proj)
    assert run.returncode == EXIT_UNREACHABLE, run.stderr
    assert "cannot reach the Ray job server" in run.stderr


def test_package_scan_skips_default_and_ignored_paths(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "pack").write_bytes(b"x" * 1000)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_bytes(b"x" * 1000)
    (tmp_path / "model.py").write_bytes(b"x" * 10)
    from toolkit.cluster.preflight import DEFAULT_EXCLUDES

    pkg = scan_package(tmp_path, DEFAULT_EXCLUDES)
    assert (pkg.n_files, pkg.total_bytes) == (1, 10)


def test_relative_storage_is_refused_for_a_cluster_job(tmp_path, tunekit):
    proj = project(tmp_path, storage="./tunekit-results")
    run = tunekit("submit", "sweep.yaml", "--address", UNREACHABLE, cwd=proj)
    assert run.returncode == EXIT_BAD_INPUT
    assert run.stderr.startswith("tunekit: storage: './tunekit-results' is relative")


def test_spec_outside_the_working_dir_is_refused(tmp_path, tunekit):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    project(tmp_path / "a")  # the spec lives in a/, the job would upload b/
    run = tunekit("submit", str(tmp_path / "a" / "sweep.yaml"), "--address", UNREACHABLE, cwd=tmp_path / "b")
    assert run.returncode == EXIT_BAD_INPUT and "outside the working directory" in run.stderr


def test_environment_addresses_that_would_override_address_are_warned_about(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    (warning,) = address_overrides("http://127.0.0.1:8265")
    assert warning.startswith("RAY_ADDRESS=http://10.0.0.1:8265 is set")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.2:8265")
    assert len(address_overrides("http://127.0.0.1:8265")) == 2
    (only,) = address_overrides("http://10.0.0.2:8265/")  # the one that agrees is not warned about
    assert only.startswith("RAY_ADDRESS=")


def test_warning_is_printed_by_submit(tmp_path, tunekit):
    proj = project(tmp_path)
    run = tunekit("submit", "sweep.yaml", "--address", UNREACHABLE, cwd=proj, env={"RAY_ADDRESS": "10.1.1.1:6379"})
    assert "tunekit: warning: RAY_ADDRESS=10.1.1.1:6379 is set" in run.stderr
    assert run.returncode == EXIT_UNREACHABLE


def test_version_mismatch_is_refused():
    check_versions("2.60.0", "2.60.0")
    with pytest.raises(ClusterError, match="this client has 2.60.0, the cluster runs 2.59.1"):
        check_versions("2.60.0", "2.59.1")


def test_submission_id_follows_the_spec_content():
    a = spec_digest({"name": "q", "num_samples": 4, "stop": {"max_iterations": 2}})
    b = spec_digest({"stop": {"max_iterations": 2}, "num_samples": 4, "name": "q"})
    c = spec_digest({"name": "q", "num_samples": 5, "stop": {"max_iterations": 2}})
    assert a == b != c
    assert submission_id("q", a) == f"tunekit-q-{a[:12]}"
    assert submission_id("q", a, attempt=2) == f"tunekit-q-{a[:12]}-a2"
    assert entrypoint("exp/s.yaml", ["num_samples=4"], "/shared/r") == (
        'SPEC="$PWD"/exp/s.yaml; cd /tmp && exec tunekit run "$SPEC" --resume auto --address auto --quiet '
        '--set num_samples=4 --storage /shared/r')
