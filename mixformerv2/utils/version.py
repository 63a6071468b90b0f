"""Which code produced a result: the installed package version and, in a git checkout, the commit and dirty flag."""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE = "mixformerv2"


def _git(args: list[str], cwd: Path) -> str | None:
    """stdout of ``git <args>`` run in ``cwd``, or None when git is missing or the command fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(path: str | Path | None = None) -> dict:
    """``{"package": version or None, "git_commit": SHA or None, "git_dirty": bool or None}``.

    ``path``: the source folder to describe (default: this package's folder). The commit is reported only when
    that folder is tracked by a git checkout; an installed package (site-packages, even inside some other
    repository's virtual environment) gets ``git_commit=None`` and ``git_dirty=None``. Never raises.
    """
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = None
    info = {"package": version, "git_commit": None, "git_dirty": None}
    here = Path(path) if path is not None else Path(__file__).resolve().parents[1]
    if not here.is_dir():
        return info
    # ls-files, not rev-parse alone: a folder merely lying inside a work tree (an untracked venv) is not the source
    if not _git(["ls-files", "--", "."], here):
        return info
    commit = _git(["rev-parse", "HEAD"], here)
    status = _git(["status", "--porcelain", "--untracked-files=no"], here)  # the whole checkout: tools/ too
    if commit is not None and status is not None:
        info.update(git_commit=commit, git_dirty=bool(status))
    return info
