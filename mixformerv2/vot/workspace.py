"""VOT workspaces: our sequences in the VOT layout, a local experiment stack, ``config.yaml`` and ``trackers.ini``.

Layout written by :func:`create_workspace` (the toolkit's own, so ``vot evaluate`` / ``analysis`` / ``report`` run on
it without any download)::

    <workspace>/config.yaml            stack: stack.yaml, registry: [./trackers.ini]
    <workspace>/stack.yaml             the local stack (:func:`local_stack`)
    <workspace>/trackers.ini           one section per tracker (:func:`write_tracker`)
    <workspace>/sequences/list.txt     one sequence name per line
    <workspace>/sequences/<name>/sequence         metadata (channels.color, width, height, length, fps)
    <workspace>/sequences/<name>/color/%08d.<ext> the frames, 1-based, hard-linked (copied across file systems)
    <workspace>/sequences/<name>/groundtruth.txt  x,y,w,h per frame; nan,nan,nan,nan where there is no valid box

Boxes are written exactly as our reader returns them (``Sequence.gt_xywh``: the benchmark's own numbers, LaSOT's
1-based ones included, as everywhere else in this project), so the tracker is started from the same box as in
``tools/test.py``. A frame without a valid box (NaN, zero or negative size) becomes the toolkit's "unknown" region:
accuracy skips it, but the supervised experiment cannot re-initialise there, so such sequences are logged.
"""
from __future__ import annotations

import configparser
import hashlib
import io
import json
import logging
import os
import shutil
import site
import sys
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import yaml

from ..data.sequence import Sequence, read_frame_rgb
from ..utils.errors import UserError
from ..utils.io import atomic_write_text, sha256_file

logger = logging.getLogger(__name__)

SEQUENCES_DIR = "sequences"
STACK_FILE = "stack.yaml"
TRACKERS_FILE = "trackers.ini"
#: What produced each tracker's results: its trackers.ini section and the hashes of its config and checkpoint.
STAMPS_FILE = "mixformerv2_trackers.json"
#: Tracker timeout of ``trackers.ini``: seconds the toolkit waits for one reply to initialize or a frame (the
#: tracker's start-up, model loading included, is not timed by toolkit 0.7.4).
DEFAULT_TIMEOUT_S = 120


class WorkspaceError(UserError):
    """A workspace or sequence that cannot be written as asked (the message names the file or sequence)."""


# ------------------------------------------------------------------------------------------------- sequences
def _box_line(box_xywh: np.ndarray) -> str:
    """One ground-truth row: the numbers as stored (``repr`` of float64, exact), or the toolkit's unknown region."""
    if not np.all(np.isfinite(box_xywh)) or box_xywh[2] <= 0 or box_xywh[3] <= 0:
        return "nan,nan,nan,nan"
    return ",".join(repr(float(v)) for v in box_xywh)


def _place_frame(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (the frame bytes stay identical); copy where a link is not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_sequence(sequence: Sequence, folder: str | Path) -> int:
    """Write ``sequence`` as a VOT sequence folder (see the module docstring). Returns the number of frames
    without a valid box.

    Frames that all share one file type are linked as they are; a sequence mixing types (TNL2K has .jpg and .png)
    is written as PNG, which keeps the decoded pixels. Raises ``WorkspaceError`` naming the sequence when its first
    frame has no valid box (the toolkit starts every run there)."""
    folder = Path(folder)
    gt = np.asarray(sequence.gt_xywh, dtype=np.float64)
    if len(gt) != len(sequence.frame_paths):
        raise WorkspaceError(f"{sequence.dataset}/{sequence.name}: {len(sequence.frame_paths)} frames but "
                             f"{len(gt)} ground-truth rows")
    lines = [_box_line(row) for row in gt]
    if lines[0].startswith("nan"):
        raise WorkspaceError(f"{sequence.dataset}/{sequence.name}: frame 0 has no valid box ({gt[0].tolist()}); "
                             "a VOT sequence starts from its first box")
    paths = [Path(p) for p in sequence.frame_paths]
    suffixes = {p.suffix.lower() for p in paths}
    mixed = len(suffixes) > 1
    suffix = ".png" if mixed else suffixes.pop()
    color = folder / "color"
    if folder.exists():
        shutil.rmtree(folder)
    color.mkdir(parents=True)
    for index, path in enumerate(paths, start=1):
        target = color / f"{index:08d}{suffix}"
        if mixed:
            image = read_frame_rgb(path)
            if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise WorkspaceError(f"{target}: cv2 could not write the frame")
        else:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: frame file is missing")
            _place_frame(path, target)
    height, width = read_frame_rgb(paths[0]).shape[:2]
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    (folder / "sequence").write_text(f"channels.color=color/%08d{suffix}\nfps=30\nformat=default\n"
                                     f"width={width}\nheight={height}\nlength={len(paths)}\n"
                                     f"source={sequence.dataset}/{sequence.name}\n")
    unknown = sum(line.startswith("nan") for line in lines)
    if unknown:
        logger.warning("%s/%s: %d of %d frames have no valid box (written as unknown); the supervised experiment "
                       "fails if it must re-initialise on one of them", sequence.dataset, sequence.name, unknown,
                       len(lines))
    return unknown


def write_sequences(sequences: Iterable[Sequence], folder: str | Path) -> list[int]:
    """Write every sequence under ``folder/<name>/`` and ``folder/list.txt``; returns the sequence lengths.
    Two sequences with one name (from different datasets) raise ``WorkspaceError``."""
    folder = Path(folder)
    names: list[str] = []
    lengths: list[int] = []
    for sequence in sequences:
        if sequence.name in names:
            raise WorkspaceError(f"two sequences are named {sequence.name!r}; VOT sequence names must be unique")
        write_sequence(sequence, folder / sequence.name)
        names.append(sequence.name)
        lengths.append(len(sequence))
    if not names:
        raise WorkspaceError("no sequences to write")
    atomic_write_text(folder / "list.txt", "".join(f"{name}\n" for name in names))
    return lengths


# ---------------------------------------------------------------------------------------------------- stack
def local_stack(title: str, eao_low: int, eao_high: int, repetitions: int = 1) -> dict:
    """The local stack: the two experiments toolkit 0.7.4 runs on any box dataset.

    * ``baseline``: supervised (VOT2017-2019 rules): the toolkit re-initialises the tracker 5 frames after a
      failure (zero overlap); analyses: accuracy / robustness (``ar``, sensitivity 30 frames), failure count and
      the expected average overlap (``eaoscore``) over sequence lengths ``[eao_low, eao_high]`` (frames);
    * ``unsupervised``: one run per sequence from the first box, never reset; analysis ``accuracy``: the mean
      overlap of every frame after the first, sequences weighted by their length (VOT2020+ "unsupervised").

    ``repetitions``: runs per sequence (the toolkit stops after 3 identical runs of a deterministic tracker)."""
    if not 0 <= eao_low <= eao_high:
        raise WorkspaceError(f"EAO range [{eao_low}, {eao_high}]: expected 0 <= low <= high")
    return {
        "title": title,
        "experiments": {
            "baseline": {
                "type": "supervised", "repetitions": repetitions, "skip_initialize": 5,
                "analyses": [
                    {"type": "supervised_average_ar", "name": "ar", "sensitivity": 30},
                    {"type": "cumulative_failures", "name": "failures"},
                    {"type": "supervised_eao_score", "name": "eaoscore", "low": eao_low, "high": eao_high},
                ],
            },
            "unsupervised": {
                "type": "unsupervised", "repetitions": 1,
                "analyses": [{"type": "average_accuracy", "name": "accuracy", "burnin": 1}],
            },
        },
    }


def _sequences_fingerprint(folder: Path) -> str | None:
    """SHA-256 of the sequence list and each listed sequence's metadata and ground truth; None without a list."""
    listing = folder / "list.txt"
    if not listing.is_file():
        return None
    digest = hashlib.sha256(listing.read_bytes())
    for name in listing.read_text(encoding="utf-8").split():
        for part in ("sequence", "groundtruth.txt"):
            path = folder / name / part
            digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()


def create_workspace(workspace: str | Path, sequences: Iterable[Sequence], title: str,
                     eao_range: tuple[int, int] | None = None) -> Path:
    """Write a complete local workspace (sequences, ``stack.yaml``, ``config.yaml``) into ``workspace``.

    ``eao_range``: the EAO interval in frames (default: ``[1, longest sequence - 1]``, every run length the
    sequences allow; the official stacks use the typical lengths of their dataset, e.g. ``[100, 356]`` in
    VOT2017, which short local sequences do not reach). Sequences, stack and config are replaced; ``trackers.ini`` is
    kept, and so are the results unless the sequences changed (the toolkit would reuse results of other sequences
    with the same names)."""
    workspace = Path(workspace)
    before = _sequences_fingerprint(workspace / SEQUENCES_DIR)
    lengths = write_sequences(sequences, workspace / SEQUENCES_DIR)
    results = workspace / "results"
    if before is not None and before != _sequences_fingerprint(workspace / SEQUENCES_DIR) and results.exists():
        logger.warning("%s: results of other sequences: removed", results)
        shutil.rmtree(results)
    low, high = eao_range if eao_range is not None else (1, max(max(lengths) - 1, 1))
    atomic_write_text(workspace / STACK_FILE, yaml.safe_dump(local_stack(title, low, high), sort_keys=False))
    atomic_write_text(workspace / "config.yaml", yaml.safe_dump(
        {"registry": [f"./{TRACKERS_FILE}"], "stack": STACK_FILE, "sequences": SEQUENCES_DIR}, sort_keys=False))
    (workspace / "results").mkdir(exist_ok=True)
    logger.info("VOT workspace %s: %d sequences (%d to %d frames), EAO range [%d, %d]", workspace, len(lengths),
                min(lengths), max(lengths), low, high)
    return workspace


# -------------------------------------------------------------------------------------------------- trackers
def import_roots(modules: Iterable[str] = ("mixformerv2", "trax")) -> list[str]:
    """The folders the tracker process needs on its ``PYTHONPATH`` to import ``modules`` as this process does.

    The toolkit sets the tracker's ``PYTHONPATH`` to the ``paths`` of its ``trackers.ini`` entry (replacing the
    caller's); a package found through ``PYTHONPATH`` here (a checkout without ``pip install -e``) must be listed
    there. Folders that are this interpreter's site-packages are left out: the interpreter finds them anyway."""
    site_dirs = {os.path.realpath(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    roots: list[str] = []
    for name in modules:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        root = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
        if os.path.realpath(root) not in site_dirs and root not in roots:
            roots.append(root)
    return roots


def server_argv(config: str | Path, checkpoint: str | Path, device: str | None = None,
                overrides: Iterable[str] = (), dataset: str | None = None, no_cache: bool = False,
                threads: int | None = None) -> list[str]:
    """Arguments of ``python -m mixformerv2.vot`` with absolute paths (the toolkit runs the tracker in a temporary
    folder). Missing files raise ``FileNotFoundError`` here rather than inside the toolkit."""
    argv: list[str] = []
    for flag, path in (("--config", config), ("--checkpoint", checkpoint)):
        path = Path(path).expanduser().absolute()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {flag} file does not exist")
        argv += [flag, str(path)]
    if device:
        argv += ["--device", device]
    if dataset:
        argv += ["--dataset", dataset]
    if no_cache:
        argv.append("--no-cache")
    if threads:
        argv += ["--threads", str(int(threads))]
    overrides = list(overrides)
    if overrides:
        argv += ["--set", *overrides]
    return argv


def tracker_section(argv: list[str], python: str = sys.executable, paths: Iterable[str] = (),
                    timeout_s: int = DEFAULT_TIMEOUT_S, label: str | None = None) -> dict[str, str]:
    """The ``trackers.ini`` keys of one tracker running ``python -m mixformerv2.vot <argv>`` with ``python``.

    ``protocol = traxpython`` runs ``<python> -c "<command>"`` with ``PYTHONPATH = paths``; ``command`` calls the
    server's ``main`` with ``argv`` and exits with its status. ``python`` is used as given (a virtual
    environment's ``bin/python`` must not be resolved to the interpreter it links to)."""
    command = f"import sys; from mixformerv2.vot.server import main; sys.exit(main({argv!r}))"
    section = {"protocol": "traxpython", "python": str(python), "command": command,
               "paths": os.pathsep.join(paths), "timeout": str(int(timeout_s))}
    if label:
        section["label"] = label
    return section


def write_tracker(workspace: str | Path, name: str, section: dict[str, str]) -> Path:
    """Add or replace the section ``[name]`` of ``<workspace>/trackers.ini``; other trackers are kept.

    The toolkit reads the file with ``configparser``'s default interpolation, so ``%`` is written as ``%%``."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise WorkspaceError(f"tracker name {name!r}: the toolkit accepts letters, digits, '-' and '_' only")
    path = Path(workspace) / TRACKERS_FILE
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep env_* names as written
    if path.is_file():
        parser.read(path, encoding="utf-8")
    parser[name] = {key: value.replace("%", "%%") for key, value in section.items()}
    text = io.StringIO()
    parser.write(text)
    atomic_write_text(path, text.getvalue())
    return path



def register_tracker(workspace: str | Path, name: str, section: dict[str, str], files: Iterable[str | Path]) -> bool:
    """Write the tracker ``name`` (:func:`write_tracker`) and drop results an earlier, different tracker of that
    name left in ``<workspace>/results/<name>``. Returns True when such results were removed.

    The toolkit reuses any results it finds under the tracker's name, whatever produced them, and caches its
    analyses under the name too; so a new checkpoint or config under an old name would be scored with the old
    numbers. What produced the results (the section and the SHA-256 of ``files``: config and checkpoint) is kept
    in ``<workspace>/mixformerv2_trackers.json``."""
    workspace = Path(workspace)
    stamps_path = workspace / STAMPS_FILE
    stamps = json.loads(stamps_path.read_text(encoding="utf-8")) if stamps_path.is_file() else {}
    stamp = {"section": section, "sha256": {str(Path(f)): sha256_file(f) for f in files}}
    results = workspace / "results" / name
    removed = results.exists() and stamps.get(name) != stamp
    if removed:
        logger.warning("%s: results of an earlier tracker %r (another config, checkpoint or command): removed",
                       results, name)
        shutil.rmtree(results)
    write_tracker(workspace, name, section)
    stamps[name] = stamp
    atomic_write_text(stamps_path, json.dumps(stamps, indent=2, sort_keys=True) + "\n")
    return removed
