"""Worker processes for the benchmark runner: each builds its tracker once, then tracks tasks from a queue.

``multiprocessing.Pool`` is not used because of three failure modes that matter on long benchmark runs:

* a worker whose initializer raises (a checkpoint that does not fit the config) is respawned forever, and the run
  never ends; here a set-up error ends the run at once with its one-line message (:class:`TrackerSetupError`);
* a worker that dies while tracking (out-of-memory kill, crash in native code) leaves ``imap`` waiting forever;
  here it ends the run naming the process and its sequence (:class:`WorkerDiedError`);
* after a SIGKILL of the parent, workers finish their sequence and write it as orphans; here they die with their
  parent (``PR_SET_PDEATHSIG`` on Linux, a watchdog thread polling the parent elsewhere).

Every worker reports that its tracker is built (with the tracker's own description of what runs) before any task
is handed out, so a run either tracks with all workers or does not start.
"""
from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

logger = logging.getLogger(__name__)

_READY, _SETUP_ERROR, _STARTED, _DONE = "ready", "setup_error", "started", "done"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_S = 0.2


class TrackerSetupError(RuntimeError):
    """The tracker could not be built (bad checkpoint, config, device); the message is one line."""


class WorkerDiedError(RuntimeError):
    """A worker process ended without finishing its work (killed, crashed); the message names it."""


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else '(no message)'}"


# ----------------------------------------------------------------------------------------------- in the worker
def _exit_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` does: the kernel's parent-death signal on Linux, a watchdog
    thread polling ``os.getppid`` where that is not available."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(int(signal.SIGKILL)),
                               ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_POLL_S)
    os._exit(1)  # orphaned: no clean-up, the parent that would read our results is gone


def _worker_main(parent_pid: int, threads: int, tracker_factory: Callable[[], Any], describe: Callable[[Any], dict],
                 task_fn: Callable[[Any, Any], Any], tasks, results) -> None:
    """Build the tracker, report it (or the set-up error), then run ``task_fn(tracker, task)`` until ``None``."""
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it terminates the workers
    torch.set_num_threads(threads)
    pid = os.getpid()
    try:
        tracker = tracker_factory()
        report = describe(tracker)
    except Exception as err:  # handed to the parent, which ends the run with this message
        results.put((_SETUP_ERROR, pid, first_line(err), traceback.format_exc()))
        return
    results.put((_READY, pid, report, None))
    while (task := tasks.get()) is not None:
        name = getattr(task[0], "name", None) if isinstance(task, tuple) and task else None  # a Sequence's name
        results.put((_STARTED, pid, name, None))
        results.put((_DONE, pid, task_fn(tracker, task), None))


# ----------------------------------------------------------------------------------------------- in the parent
class WorkerPool:
    """One worker process (spawned) per entry of ``tracker_factories``, each with the tracker that its factory
    builds (a factory per process, so that each can build on a device of its own).

    Use as a context manager: ``start()`` waits until every worker has built its tracker and returns the first
    worker's ``describe(tracker)``; ``run(tasks)`` yields ``task_fn(tracker, task)`` for every task, in completion
    order. Leaving the block terminates the workers that are still running.

    tracker_factories, describe, task_fn: picklable (module-level functions or ``functools.partial`` of them).
    threads: torch threads per worker.
    """

    def __init__(self, tracker_factories: Sequence[Callable[[], Any]], describe: Callable[[Any], dict],
                 task_fn: Callable[[Any, Any], Any], threads: int = 1):
        self._ctx = torch.multiprocessing.get_context("spawn")
        self._factories = list(tracker_factories)
        self._args = (os.getpid(), threads)
        self._tail = (describe, task_fn)
        self._count = len(self._factories)
        self._procs: list = []
        self._tasks = self._results = None
        self._current: dict[int, str | None] = {}  # pid -> sequence being tracked

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> dict:
        """Start the workers; returns the first tracker's description. Raises :class:`TrackerSetupError` with the
        first worker's set-up error, or :class:`WorkerDiedError` when a worker dies before reporting."""
        self._tasks, self._results = self._ctx.Queue(), self._ctx.Queue()
        self._tasks.cancel_join_thread()  # unread tasks must not keep this process alive once the workers are gone
        for k in range(self._count):
            args = (*self._args, self._factories[k], *self._tail, self._tasks, self._results)
            proc = self._ctx.Process(target=_worker_main, args=args,
                                     name=f"tracker-worker-{k + 1}", daemon=True)
            proc.start()
            self._procs.append(proc)
        reports = []
        while len(reports) < self._count:
            kind, pid, payload, detail = self._next("building its tracker")
            if kind == _SETUP_ERROR:
                logger.debug("worker %d set-up failed:\n%s", pid, detail)
                raise TrackerSetupError(payload)
            reports.append(payload)
        return reports[0]

    def run(self, tasks: Iterable) -> Iterator:
        """Hand out ``tasks`` and yield each result as it arrives."""
        tasks = list(tasks)
        for task in tasks:
            self._tasks.put(task)
        for _ in self._procs:
            self._tasks.put(None)
        remaining = len(tasks)
        while remaining:
            kind, pid, payload, _ = self._next("tracking")
            if kind == _STARTED:
                self._current[pid] = payload
                continue
            self._current.pop(pid, None)
            remaining -= 1
            yield payload

    def _next(self, doing: str) -> tuple:
        """The next message from the workers; raises :class:`WorkerDiedError` when one ended abnormally, or when
        all ended while messages are still expected."""
        while True:
            try:
                return self._results.get(timeout=_POLL_S)
            except queue.Empty:
                pass
            for proc in self._procs:
                if proc.exitcode not in (None, 0):
                    raise WorkerDiedError(self._death_message(proc, doing))
            if all(proc.exitcode is not None for proc in self._procs):
                try:  # what the workers sent just before ending may still be on its way
                    return self._results.get(timeout=_POLL_S)
                except queue.Empty:
                    raise WorkerDiedError(f"all {len(self._procs)} worker processes ended while {doing}") from None

    def _death_message(self, proc, doing: str) -> str:
        code = proc.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        sequence = self._current.get(proc.pid)
        where = f" (sequence {sequence})" if sequence else ""
        return (f"worker process {proc.pid} died while {doing}{where}: {how}; the sequences finished so far are "
                "kept, a re-run resumes")

    def close(self) -> None:
        """Terminate the workers still running and wait for them (idempotent)."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for q in (self._tasks, self._results):
            if q is not None:
                q.close()
        self._procs = []
