"""Running as the driver of a Ray job (`tunekit submit`)."""

from __future__ import annotations

import os


def reenter_working_dir() -> None:
    """Step back into the job's working directory if Ray replaced it under us.

    Seen with Ray 2.60: the first job using a package on a fresh cluster had its working
    directory deleted and unpacked again when its driver connected (the job's runtime env is
    installed eagerly), leaving the driver in a deleted folder where every relative path and
    `os.getcwd()` fail. The shell that started the entrypoint recorded the path in PWD; the new
    folder at that path holds the same files.
    """
    pwd = os.environ.get("PWD")
    if not pwd or not os.path.isdir(pwd):
        return
    try:
        os.getcwd()
        gone = os.stat(".").st_nlink == 0
    except FileNotFoundError:
        gone = True
    if gone:
        os.chdir(pwd)
