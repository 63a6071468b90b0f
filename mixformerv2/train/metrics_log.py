"""Training metrics: TensorBoard scalars and a JSON-lines file, written by rank 0 only. (The text log of a run is
``utils.log.setup_logging``'s ``log_file``.)

``metrics.jsonl`` holds one object per logging point: ``{"split": "train"|"val", "step": int, "epoch": int,
"time": unix seconds, <name>: value, ...}``. Train points (every ``train.print_interval`` iterations and at epoch
ends) carry the means over the window's good iterations and all ranks of ``loss`` and each stage metric, and
``grad_norm`` (before clipping), ``lr/<group>``, ``samples_per_s`` (all ranks), ``data_wait_fraction`` (time
blocked on the loader / wall time), ``skipped_steps`` (non-finite iterations, whole run), ``skipped_samples``
(draws the pipeline re-made for the window's batches, from their ``skipped_io`` and ``skipped_invalid`` counts:
missing or corrupt frames and invalid samples, all ranks) and ``fp16_overflows``. Stage metrics pass through under
the stage's names (``loss/ciou``, ``iou``, ``teacher_iou``, ...). Val points carry the sample-weighted means of
``loss`` and the stage metrics.

After a resume from iteration ``s``, rows past ``s`` (written by the interrupted run) are dropped and TensorBoard
purges its events past ``s`` too, so curves do not fold back.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Mapping

from ..utils.io import atomic_write_text

logger = logging.getLogger(__name__)


class MetricsLogger:
    """Scalars to TensorBoard (``<output>/tensorboard``) and ``<output>/metrics.jsonl``; inert when disabled
    (ranks other than 0). ``resume_step``: the iteration the run resumes from (None for a fresh run)."""

    def __init__(self, output_dir: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            atomic_write_text(self.path, "")
        else:
            self._drop_rows_after(resume_step)
        self._writer = SummaryWriter(str(Path(output_dir) / "tensorboard"),
                                     purge_step=None if resume_step is None else resume_step + 1)

    def _drop_rows_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, split: str, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
        """One logging point: every scalar as TensorBoard tag ``<split>/<name>`` and one JSON line."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._writer.add_scalar(f"{split}/{name}", value, step)
        row = {"split": split, "step": step, "epoch": epoch, "time": round(time.time(), 3),
               **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
