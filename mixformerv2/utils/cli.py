"""Shared command-line plumbing of the tools: the common flags, logging and device set-up, user errors as one line.

Every tool in ``tools/`` builds its parser with ``make_parser`` (adds ``--debug``), takes its shared flags from
``add_config_args`` (then ``load_config(args.config, args.overrides)``) and ``add_device_arg`` (then
``mixformerv2.utils.device.resolve_device(args.device)``), sets up logging with
``mixformerv2.utils.log.setup_logging``, and decorates its ``main(argv=None) -> int`` with ``cli_main``: a user
error (a missing file, a bad config, checkpoint or flag) then ends the run with one line on stderr and exit status
2 instead of a traceback; ``--debug`` shows the traceback and DEBUG log records. Like all of ``utils``, this module
imports nothing else from the package (nor torch), so the lightest tool pays nothing for it.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import logging
import sys
from pathlib import Path
from typing import Callable

from .errors import UserError

USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130

# The package's own exception types that mean bad input, by (module, class). They are looked up among the modules
# already imported when an error is handled: a tool that never imported the models cannot meet a CheckpointError,
# and listing them here keeps every tool from importing torch just to catch it.
USER_ERROR_CLASSES = (
    ("mixformerv2.config.load", "ConfigError"),
    ("mixformerv2.models.checkpoint", "CheckpointError"),
    ("mixformerv2.data.datasets.annotations", "AnnotationError"),
    ("mixformerv2.data.sampling", "SamplingError"),
    ("mixformerv2.train.checkpointing", "ResumeError"),
    ("mixformerv2.evaluation.metrics", "EvaluationError"),
    ("mixformerv2.evaluation.packing", "PackError"),
    ("mixformerv2.tracking.runner", "RunMismatchError"),
    ("mixformerv2.tracking.workers", "TrackerSetupError"),
)


def user_error_types() -> tuple[type[BaseException], ...]:
    """``UserError``, ``OSError`` (missing, unreadable or undecodable files) and those of ``USER_ERROR_CLASSES``
    whose module is imported."""
    found: list[type[BaseException]] = [UserError, OSError]
    for module_name, class_name in USER_ERROR_CLASSES:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def error_line(err: BaseException) -> str:
    """The message of ``err`` on one line (``<file>: <reason>`` for an OSError that names a file)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _wants_debug(argv) -> bool:
    """``--debug`` among the arguments, also abbreviated as argparse accepts it (``--deb``)."""
    return any(len(arg) >= 5 and "--debug".startswith(arg) for arg in argv)


def cli_main(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Decorate a tool's ``main(argv=None)``: returns its exit status (None -> 0); a user error (see
    ``user_error_types``) prints ``<tool>: error: <message>`` as one line on stderr and returns 2; Ctrl-C returns
    130. With ``--debug`` among the arguments the exception propagates with its traceback."""
    prog = Path(inspect.getfile(main)).name

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        debug = _wants_debug(sys.argv[1:] if argv is None else argv)
        try:
            status = main(argv)
        except KeyboardInterrupt:
            if debug:
                raise
            sys.stderr.write(f"{prog}: interrupted\n")
            return INTERRUPTED_STATUS
        except user_error_types() as err:  # evaluated when an exception arrives: sees the modules imported by then
            if debug:
                raise
            sys.stderr.write(f"{prog}: error: {error_line(err)}\n")
            return USER_ERROR_STATUS
        return 0 if status is None else int(status)

    return wrapper


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help shows ``doc`` (the tool's module docstring, examples kept as written) and
    that has ``--debug``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="log at DEBUG level and show the full traceback of any error")
    return parser


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config YAML`` and ``--set KEY=VALUE ...`` (repeatable; collected in ``args.overrides``)."""
    parser.add_argument("--config", required=required, metavar="YAML",
                        help="config file, e.g. configs/mixformerv2_b.yaml (its _base_ chain is merged first), or a "
                             "released config by name: mixformerv2_b, mixformerv2_s, mixvit_b_teacher")
    add_overrides_arg(parser, "override config keys by dotted name, applied after the file; repeatable. Tracker "
                              "settings: a benchmark's own entry test.datasets.<name>.<key> wins over test.<key>, "
                              "e.g. --set test.datasets.lasot.search_factor=5.0")


def add_overrides_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE ...`` alone (repeatable; collected in ``args.overrides``), for tools whose configs come
    from elsewhere (``tools/pipeline.py``: every stage's config)."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=help)


def add_device_arg(parser: argparse.ArgumentParser, workers: bool = False) -> None:
    """``--device`` (default None: ``mixformerv2.utils.device.resolve_device`` picks cuda when available).
    ``workers``: the tool runs several worker processes, which ``cuda`` spreads over the visible GPUs."""
    spread = (" With --workers, cuda spreads the workers round robin over all visible GPUs (worker k on "
              "cuda:k mod GPUs); cuda:N puts them all on GPU N") if workers else ""
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)."
                             + spread)


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint PATH`` or ``--random-init`` (exactly one): the weights a tracking tool runs
    (``checkpoint_from_args`` reads them)."""
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="PATH",
                         help="official-format checkpoint that fits the config (weights under 'net'; loaded strictly)")
    weights.add_argument("--random-init", action="store_true",
                         help="no checkpoint: randomly initialised weights (seeded, the same in every process) to "
                              "try the tools without trained weights; logged, and recorded in run.json")


def checkpoint_from_args(args: argparse.Namespace, logger: logging.Logger) -> str | None:
    """``args.checkpoint``, or None with a warning under ``--random-init``."""
    if args.random_init:
        logger.warning("--random-init: tracking with randomly initialised weights; the results mean nothing")
        return None
    return args.checkpoint



def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--precision``, ``--export-dir`` and ``--compile``: how the tracker's network runs (see
    ``mixformerv2.export.backends.build_backend``)."""
    parser.add_argument("--backend", default="torch", choices=("auto", "torch", "onnxruntime", "openvino"),
                        help="what runs the network (default torch); auto picks backend and precision for this "
                             "machine and logs why; onnxruntime needs the 'export' extra, openvino the 'openvino' one")
    parser.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16", "int8"),
                        help="default fp32. bf16: CPUs with AVX-512_BF16/AMX, or CUDA; fp16: CUDA; int8: dynamic "
                             "quantisation (torch, onnxruntime) or static, calibrated on synthetic scenes "
                             "(openvino). run.json records backend and precision")
    parser.add_argument("--export-dir", default=None, metavar="DIR",
                        help="ONNX graphs written by tools/export.py for this config and checkpoint (onnxruntime, "
                             "openvino; default: export them at start)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the per-frame step (torch backend; CUDA graphs on a GPU)")


def emit(*parts: object, file=None, end: str = "\n") -> None:
    """Write a command's result (a table, a report, a verdict) to stdout, or ``file``: what the user asked the tool
    for, as opposed to the log (progress and diagnostics go to ``logging``)."""
    stream = sys.stdout if file is None else file
    stream.write(" ".join(str(part) for part in parts) + end)
    stream.flush()
