"""The VOT toolkit run as a subprocess from its own environment: evaluate, analyse, report, and read what it wrote.

The toolkit (``vot-toolkit``, pinned in ``toolkit-requirements.txt``; ``make vot-env`` installs it into
``.venv-vot/``) needs ``opencv-python``, which clashes with our ``opencv-python-headless``, so it never shares an
environment with the package: it starts our tracker through ``trackers.ini`` (``mixformerv2.vot.workspace``).

Its exit status says nothing: a tracker that crashes or times out still ends ``vot evaluate`` with status 0. So
:func:`evaluate` reads the toolkit's output for the tracker errors it logs, opens the tracker log it points to and
raises :class:`TrackerFailure` with the tracker's own one-line error; :func:`analyse` reads the analysis JSON and
:func:`summarize` turns it into named numbers. Every command runs with ``VOT_RESULTS_BINARY=0`` (trajectories as
text, read back by :func:`read_trajectory`), ``VOT_PERSISTENT_CACHE=0`` (the toolkit keys its analysis cache by
tracker name, so a re-run would be scored with the old numbers) and its update check (github.com) sent to a closed
local port, so that it fails at once offline instead of waiting for a network timeout.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..utils.errors import UserError
from .server import ERROR_PREFIX

logger = logging.getLogger(__name__)

DEFAULT_ENV = ".venv-vot"
#: How long one toolkit command may run (seconds); ``vot evaluate`` on a real stack may take hours.
DEFAULT_TIMEOUT_S = 24 * 3600
_CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once

_TRACKER_ERROR = re.compile(r"Tracker (?P<tracker>\S+) encountered an error at sequence (?P<sequence>\S+): "
                            r"(?P<message>.*)")
_TRACKER_LOG = re.compile(r"Tracker output written to file: (?P<path>.+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: Leading measures of the analyses the summary reports, by the class name the analysis JSON gives.
MEASURES = {
    "vot.analysis.accuracy.AverageAccuracy": ("accuracy",),
    "vot.analysis.supervised.AverageAccuracyRobustness": ("accuracy", "robustness"),
    "vot.analysis.supervised.EAOScore": ("eao",),
    "vot.analysis.failures.CumulativeFailureCount": ("failures",),
    "vot.analysis.multistart.AverageAccuracyRobustness": ("accuracy", "robustness"),
    "vot.analysis.multistart.EAOScore": ("eao",),
}


class ToolkitError(UserError):
    """The toolkit is missing, or a toolkit command failed for a reason other than the tracker."""


class TrackerFailure(UserError):
    """The tracker crashed or timed out inside the toolkit; the message holds the tracker's own error line."""


def toolkit_requirements() -> list[str]:
    """The pinned toolkit packages (``name==version`` lines of the packaged ``toolkit-requirements.txt``)."""
    text = resources.files("mixformerv2.vot").joinpath("toolkit-requirements.txt").read_text(encoding="utf-8")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def find_toolkit(env: str | Path = DEFAULT_ENV) -> Path:
    """The ``vot`` executable of the toolkit environment ``env`` (a virtual environment folder)."""
    vot = Path(env) / "bin" / "vot"
    if not vot.is_file():
        raise ToolkitError(f"{vot}: no VOT toolkit there; create its environment with `make vot-env` (or "
                           f"python3 -m venv {env} && {env}/bin/pip install -r "
                           "mixformerv2/vot/toolkit-requirements.txt)")
    return vot


def _toolkit_environ() -> dict[str, str]:
    # VOT_PERSISTENT_CACHE=0: the analysis cache is keyed by tracker name, not by the results (stale numbers)
    env = dict(os.environ, VOT_RESULTS_BINARY="0", VOT_PERSISTENT_CACHE="0")
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env[key] = _CLOSED_PORT_PROXY
    for key in ("NO_PROXY", "no_proxy"):
        env.pop(key, None)
    return env


def run_toolkit(vot: str | Path, args: list[str], workspace: str | Path,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Run ``vot <args> --workspace <workspace>``; returns its output (stdout and stderr, colour codes removed).

    A command that exits with a non-zero status or runs past ``timeout_s`` raises ``ToolkitError`` with the last
    lines of its output."""
    command = [str(vot), *args, "--workspace", str(Path(workspace).absolute())]
    logger.info("running %s", " ".join(command))
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_toolkit_environ(), timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ToolkitError(f"vot {args[0]} did not finish in {timeout_s:.0f} s") from None
    output = _ANSI.sub("", done.stdout or "")
    logger.debug("vot %s output:\n%s", args[0], output)
    if done.returncode != 0:
        raise ToolkitError(f"vot {args[0]} failed with status {done.returncode}: {_last_lines(output)}")
    return output


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().endswith("%")]
    return " | ".join(lines[-count:]) or "(no output)"


def tracker_error_line(log_text: str) -> str:
    """The tracker's own error in a tracker log: our server's ``mixformerv2.vot: error: ...`` line when there is
    one, else the last line the tracker wrote (a traceback's exception line), without the toolkit's own notes."""
    lines = [line.strip() for line in _ANSI.sub("", log_text).splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if ours:
        return ours[-1]
    theirs = [line for line in lines if not line.startswith(("Process exited with code", "Process not alive",
                                                             "@@TRAX:"))]
    return theirs[-1] if theirs else "(the tracker wrote nothing)"


@dataclass(frozen=True)
class TrackerError:
    """One tracker error the toolkit logged: which tracker, where, the toolkit's message and the tracker's line."""

    tracker: str
    sequence: str
    toolkit_message: str
    tracker_line: str | None
    log_file: Path | None

    def __str__(self) -> str:
        where = f"tracker {self.tracker} failed on sequence {self.sequence}"
        if self.tracker_line and self.tracker_line not in self.toolkit_message:
            detail = f"{self.tracker_line} (toolkit: {self.toolkit_message})"
        else:
            detail = self.toolkit_message
        return f"{where}: {detail}" + (f"; tracker log: {self.log_file}" if self.log_file else "")


def tracker_errors(output: str, workspace: str | Path) -> list[TrackerError]:
    """The tracker errors in the output of ``vot evaluate``, each with the tracker's line from its log file."""
    errors: list[TrackerError] = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = _TRACKER_ERROR.search(line)
        if not match:
            continue
        log_file, tracker_line = None, None
        for following in lines[index + 1:index + 4]:
            found = _TRACKER_LOG.search(following)
            if found:
                log_file = Path(found.group("path").strip())
                if not log_file.is_absolute():
                    log_file = Path(workspace) / log_file
                break
        if log_file is not None and log_file.is_file():
            tracker_line = tracker_error_line(log_file.read_text(encoding="utf-8", errors="replace"))
        errors.append(TrackerError(match.group("tracker"), match.group("sequence"), match.group("message").strip(),
                                   tracker_line, log_file))
    return errors


def evaluate(vot: str | Path, workspace: str | Path, tracker: str, experiments: list[str] | None = None,
             force: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """``vot evaluate <tracker>``; raises ``TrackerFailure`` when the tracker crashed or timed out on any sequence
    and ``ToolkitError`` when the toolkit did not report a finished evaluation."""
    args = ["evaluate", tracker]
    if experiments:
        args += ["--experiments", ",".join(experiments)]
    if force:
        args.append("--force")
    output = run_toolkit(vot, args, workspace, timeout_s)
    errors = tracker_errors(output, workspace)
    if errors:
        raise TrackerFailure(str(errors[0]) + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    if "Evaluation concluded" not in output:
        raise ToolkitError(f"vot evaluate did not finish: {_last_lines(output)}")


def analyse(vot: str | Path, workspace: str | Path, tracker: str, name: str,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """``vot analysis <tracker> --format json --name <name>``; returns the JSON it wrote
    (``<workspace>/analysis/<name>.json``)."""
    output = run_toolkit(vot, ["analysis", tracker, "--format", "json", "--name", name], workspace, timeout_s)
    path = Path(workspace) / "analysis" / f"{name}.json"
    if not path.is_file():
        raise ToolkitError(f"vot analysis wrote no {path}: {_last_lines(output)}")
    return json.loads(path.read_text(encoding="utf-8"))


def report(vot: str | Path, workspace: str | Path, tracker: str, name: str,
           timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """``vot report <tracker> --format html --name <name>``; returns the report folder
    (``<workspace>/reports/<name>``)."""
    output = run_toolkit(vot, ["report", tracker, "--format", "html", "--name", name], workspace, timeout_s)
    path = Path(workspace) / "reports" / name
    if not path.exists():
        raise ToolkitError(f"vot report wrote no {path}: {_last_lines(output)}")
    return path


def summarize(analysis: dict, tracker: str) -> dict[str, dict[str, float]]:
    """Named numbers of one tracker from the analysis JSON: ``{experiment: {measure: value}}``.

    Measures are those of :data:`MEASURES` (``accuracy``, ``robustness``, ``eao``, ``failures``), prefixed with the
    analysis name when an experiment has two analyses giving one measure. NaN stays NaN (e.g. an EAO range beyond
    every run); an experiment without results for the tracker raises ``ToolkitError``."""
    trackers = list(analysis.get("trackers", {}))
    if tracker not in trackers:
        raise ToolkitError(f"the analysis has no results of tracker {tracker!r} (it has {trackers})")
    column = trackers.index(tracker)
    summary: dict[str, dict[str, float]] = {}
    for experiment, data in analysis["results"].items():
        values: dict[str, float] = {}
        for spec, result in zip(data["parameters"]["analyses"], data["results"]):
            labels = MEASURES.get(spec.get("type", ""))
            if labels is None:
                continue
            row = result[column] if result is not None and column < len(result) else None
            if row is None:
                raise ToolkitError(f"experiment {experiment}: analysis {spec.get('name')} has no result for "
                                   f"{tracker} (results missing: run vot evaluate first)")
            for label, value in zip(labels, row):
                key = label if label not in values else f"{spec.get('name')}.{label}"
                values[key] = float(value) if value is not None else math.nan
        summary[experiment] = values
    return summary


# ---------------------------------------------------------------------------------------------- trajectories
def read_trajectory(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle trajectory the toolkit stored (``<name>_001.txt``, or the binary ``.bin``).

    Returns (boxes (N, 4) float64 with NaN rows for the special states, codes (N,) int64: -1 for a box, else the
    toolkit's special code: 0 unknown, 1 initialisation, 2 failure)."""
    path = Path(path)
    rows = _read_binary(path) if path.suffix == ".bin" else _read_text(path)
    boxes = np.full((len(rows), 4), np.nan)
    codes = np.full(len(rows), -1, dtype=np.int64)
    for index, row in enumerate(rows):
        if len(row) == 1:
            codes[index] = int(row[0])
        elif len(row) == 4:
            boxes[index] = row
        else:
            raise ValueError(f"{path}: row {index + 1} is neither a rectangle nor a special state: {row}")
    return boxes, codes


def _read_text(path: Path) -> list[tuple[float, ...]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(tuple(float(v) for v in line.split(",")))
        except ValueError:
            raise ValueError(f"{path}: line {number} is not comma-separated numbers: {line!r}") from None
    return rows


def _read_binary(path: Path) -> list[tuple[float, ...]]:
    """vot-toolkit's binary trajectory: ``<hI`` (version 1, length), then per frame a type byte and its values."""
    data = path.read_bytes()
    version, length = struct.unpack_from("<hI", data, 0)
    offset = struct.calcsize("<hI")
    rows = []
    for index in range(length):
        (kind,) = struct.unpack_from("<B", data, offset)
        offset += 1
        if kind == 0:
            rows.append(struct.unpack_from("<I", data, offset))
            offset += 4
        elif kind == 1:
            rows.append(struct.unpack_from("<ffff", data, offset))
            offset += 16
        else:
            raise ValueError(f"{path}: frame {index} holds a region of type {kind}; only rectangles are read")
    if version != 1:
        raise ValueError(f"{path}: binary trajectory version {version}, expected 1")
    return rows
