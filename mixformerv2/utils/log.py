"""The one logging set-up of the project: tools call it once at start, the trainer once per rank."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_OURS = "_mixformerv2_handler"  # marks the handlers installed here, so a second call replaces only those


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a redirect or pytest's capture installed
    after set-up), like ``logging.lastResort``."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always answers sys.stderr
        pass


def setup_logging(level: int | str = logging.INFO, rank: int = 0, log_file: str | Path | None = None) -> None:
    """Configure the root logger: ``level`` for every ``mixformerv2`` and tool logger.

    Rank 0 logs to stderr (stdout is left to the tools' results: tables, JSON); other ranks log nowhere but their
    file. ``log_file``: also append the records to this file; rank ``r > 0`` writes ``<log_file>.rank<r>`` so that
    processes never share a file. Calling it again replaces what an earlier call installed (and nothing else, e.g.
    pytest's capture handlers).
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    # other ranks get a NullHandler: with no handler at all, logging's last resort would print their warnings
    handlers: list[logging.Handler] = [_StderrHandler() if rank == 0 else logging.NullHandler()]
    if log_file is not None:
        path = Path(log_file) if rank == 0 else Path(f"{log_file}.rank{rank}")
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


class LogFileSwitch:
    """A second log file that can be switched: called with a path, the root logger's records also go to that file
    (the previous one is closed); with None, to none. The pipeline's ``log_to``: each stage's ``train.log``."""

    def __init__(self) -> None:
        self.handler: logging.Handler | None = None

    def __call__(self, path: Path | None) -> None:
        root = logging.getLogger()
        if self.handler is not None:
            root.removeHandler(self.handler)
            self.handler.close()
            self.handler = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(path, encoding="utf-8")
            self.handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
            root.addHandler(self.handler)
