"""Reaching a cluster's job server (the dashboard, port 8265) with Ray's token authentication.

The client reads the token the way Ray does (RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH,
then ~/.ray/auth_token) and always sends it as an explicit `Authorization: Bearer` header, so it
does not depend on RAY_AUTH_MODE being set in the user's shell. The job server answers 401 when
no token came and 403 when it was wrong: each gets its own message and exit code.
"""

from __future__ import annotations

import os
from pathlib import Path

# Exit codes of `tunekit submit` / `tunekit jobs` (documented in clusters/README.md).
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DUPLICATE = 3
EXIT_NO_TOKEN = 4
EXIT_WRONG_TOKEN = 5
EXIT_UNREACHABLE = 6
EXIT_JOB_STOPPED = 130


class ClusterError(Exception):
    """A one-line problem with the cluster or the submission, and the exit code it maps to."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def token_file() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def find_token() -> str | None:
    """The token this client would present, or None when there is none."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = token_file()
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def normalise_address(address: str) -> str:
    """`host:8265` or `http://host:8265/` -> `http://host:8265` (the job server's HTTP URL)."""
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = "http://" + address
    return address


def probe(address: str, token: str | None, timeout_s: float = 10.0) -> str:
    """Ask the job server for its Ray version, checking reachability and auth on the way.

    Raises `ClusterError` with a distinct exit code for: unreachable, no token (401),
    wrong token (403). Returns the cluster's Ray version.
    """
    import requests

    url = normalise_address(address) + "/api/version"
    try:
        r = requests.get(url, headers=auth_headers(token), timeout=timeout_s)
    except requests.RequestException as e:
        raise ClusterError(f"cannot reach the Ray job server at {normalise_address(address)} "
                           f"({type(e).__name__}); is the cluster up and is this its dashboard port (8265)?",
                           EXIT_UNREACHABLE) from None
    if r.status_code == 401:
        where = "RAY_AUTH_TOKEN or " + str(token_file())
        raise ClusterError(f"the cluster at {normalise_address(address)} requires a token and none was found "
                           f"({where}); copy the cluster's token there (`ray get-auth-token` on the head)",
                           EXIT_NO_TOKEN)
    if r.status_code == 403:
        source = "RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN", "").strip() else str(token_file())
        raise ClusterError(f"the cluster at {normalise_address(address)} rejected the token from {source} "
                           "(wrong token: it belongs to another cluster or was rotated)", EXIT_WRONG_TOKEN)
    if r.status_code != 200:
        raise ClusterError(f"{url} answered HTTP {r.status_code}: is this a Ray dashboard?", EXIT_UNREACHABLE)
    try:
        return str(r.json()["ray_version"])
    except (ValueError, KeyError):
        raise ClusterError(f"{url} did not answer like a Ray job server", EXIT_UNREACHABLE) from None


def job_client(address: str, token: str | None):
    """Ray's `JobSubmissionClient` for `address` exactly (environment overrides are the
    caller's to warn about: see `preflight.address_overrides`)."""
    from ray.job_submission import JobSubmissionClient

    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        return JobSubmissionClient(normalise_address(address), headers=auth_headers(token))
    finally:
        os.environ.update(saved)
