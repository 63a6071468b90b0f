"""Running a pipeline (``train/pipeline.py``): each stage in order through ``run_training``, resumable, skipped
once finished, optionally tracked and scored, summarised.

A stage's folder ``<output>/<name>/`` holds what ``run_training`` writes (``config.yaml``, ``checkpoints/``,
``metrics.jsonl``, ``tensorboard/``, ``model_final.pth.tar``) and, from the runner:

* ``model_final.yaml``: the config of the network in ``model_final.pth.tar`` (the config the trainer stored in it:
  the shallower depth after a completed fade). Stages that name this one in ``teacher_from`` read it, and so can
  ``tools/test.py --config``.
* ``pipeline_stage.json``: written when the stage finishes: the SHA-256 of the checkpoints it started from and
  was taught by, and its wall time.
* ``results/<name>/<dataset>/``: the tracker's results when the stage is evaluated.

A stage is skipped when ``model_final.pth.tar`` exists and ``config.yaml`` equals its effective config (except
``checkpointing.RESUME_FREE_KEYS``); a different config, or a start or teacher checkpoint whose content changed
since (an earlier stage was trained again), raises ``PipelineError`` naming the key or file. Otherwise the stage
runs with ``resume="auto"``: a killed pipeline continues from the newest checkpoint of the stage it was in.
``<output>/summary.json`` lists every stage handled: config, status, depth, parameters, wall time, the last train
and validation metrics of ``metrics.jsonl`` and the benchmark scores.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import Config, config_to_dict, load_config
from ..models import read_checkpoint, unwrap_state_dict
from ..utils.io import atomic_write_text, sha256_file
from .checkpointing import config_differences
from .distributed import env_dist_info
from .pipeline import Pipeline, PipelineError, PipelineStage, select_stages, stage_config
from .run import run_training
from .stage import list_stages

logger = logging.getLogger(__name__)

STAGE_RECORD_FILE = "pipeline_stage.json"
SUMMARY_FILE = "summary.json"
_INPUT_KEYS = ("train.init_checkpoint", "train.teacher_checkpoint")
_TRAIN_METRICS = ("loss", "iou", "teacher_iou", "remove_rate")  # and every loss/<term>
_ROW_KEYS = ("split", "step", "epoch", "time")

# (stage, config of its final model, the model file, results root) -> scalar scores such as auc, precision
Evaluator = Callable[[PipelineStage, Config, Path, Path], dict]
# Called with a stage's log file before the stage and with None after it (tools: setup_logging(..., log_file))
LogTo = Callable[[Path | None], None]


@dataclass
class StageRecord:
    """One stage's line of the summary. status: ``trained`` (from scratch now), ``resumed`` (continued from a
    checkpoint of an earlier, interrupted run) or ``skipped`` (finished earlier); wall_time_s: this invocation's
    training time, or for a skipped stage the time recorded when it finished (None if unknown)."""

    name: str
    config: str
    status: str
    output: str
    depth: int | None = None
    params: int | None = None
    wall_time_s: float | None = None
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    benchmark: dict[str, float] | None = None


# --------------------------------------------------------------------------------------------- stage folders
def _input_files(cfg: Config) -> dict[str, str]:
    return {key: value for key in _INPUT_KEYS if (value := getattr(cfg.train, key.split(".")[1]))}


def input_hashes(cfg: Config) -> dict[str, dict[str, str]]:
    """``{key: {"path", "sha256"}}`` of the start and teacher checkpoints that exist."""
    return {key: {"path": path, "sha256": sha256_file(path)} for key, path in _input_files(cfg).items()
            if Path(path).is_file()}


def is_finished(pipeline: Pipeline, stage: PipelineStage, cfg: Config) -> bool:
    """Whether ``stage`` has its final model, made with ``cfg`` from the same input files; False when it has none.
    Raises ``PipelineError`` when it has one made otherwise."""
    folder, model = pipeline.stage_dir(stage.name), pipeline.model_path(stage.name)
    if not model.is_file():
        return False
    again = f"run with --fresh --only {stage.name} (or delete {folder}) to train it again"
    saved_path = folder / "config.yaml"
    if not saved_path.is_file():
        raise PipelineError(f"{folder}: holds {model.name} but no config.yaml, so which config made it is unknown; "
                            f"{again}")
    differences = config_differences(config_to_dict(load_config(saved_path, stages=list_stages())),
                                     config_to_dict(cfg))
    if differences:
        more = f" and {len(differences) - 1} more key(s)" if len(differences) > 1 else ""
        raise PipelineError(f"{folder}: stage {stage.name} finished with another config than this run's, at "
                            f"{differences[0].replace('(checkpoint ', '(finished ')}{more}; {again}")
    recorded = read_stage_record(folder).get("inputs", {})
    for key, entry in recorded.items():
        if Path(entry["path"]).is_file() and sha256_file(entry["path"]) != entry["sha256"]:
            raise PipelineError(f"{folder}: stage {stage.name} was trained from {key} {entry['path']}, whose content "
                                f"has changed since (an earlier stage trained again?); {again}")
    return True


def check_inputs(pipeline: Pipeline, stage: PipelineStage) -> None:
    """The final models that ``init_from``/``teacher_from`` name exist; else ``PipelineError`` saying which stage
    to run first. Writes a missing ``model_final.yaml`` of a teacher stage."""
    for key, source in (("init_from", stage.init_from), ("teacher_from", stage.teacher_from)):
        if source and not pipeline.model_path(source).is_file():
            raise PipelineError(f"stage {stage.name}: {key} {source}: {pipeline.model_path(source)} not found; run "
                                f"stage {source} first (left out by --only/--until?)")
    if stage.teacher_from:
        describe_final_model(pipeline, stage.teacher_from)


def describe_final_model(pipeline: Pipeline, name: str) -> tuple[Config, int]:
    """The config of stage ``name``'s final model and its number of weights (tensor elements of its state dict),
    from ``model_final.pth.tar``; writes ``model_final.yaml`` when missing or different (rank 0)."""
    model = pipeline.model_path(name)
    obj = read_checkpoint(model)
    params = sum(t.numel() for t in unwrap_state_dict(obj, model).values())
    text = obj.get("config") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        raise PipelineError(f"{model}: no 'config' stored beside the weights (not written by the trainer), so its "
                            "architecture is unknown")
    path = pipeline.final_config_path(name)
    if env_dist_info().is_main and (not path.is_file() or path.read_text() != text):
        atomic_write_text(path, text)
    return load_config(path, stages=list_stages()), params


def last_metrics(folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The last train row's loss terms and IoU and the last validation row's scalars of ``metrics.jsonl``."""
    path = folder / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    train = next((r for r in reversed(rows) if r.get("split") == "train"), {})
    val = next((r for r in reversed(rows) if r.get("split") == "val"), {})
    return ({k: v for k, v in train.items() if k in _TRAIN_METRICS or k.startswith("loss/")},
            {k: v for k, v in val.items() if k not in _ROW_KEYS})


def remove_stage_dir(folder: Path) -> None:
    """Delete a stage's output folder (``--fresh``); refuses a non-empty folder that does not look like a run
    folder (no ``config.yaml``, ``checkpoints/`` or model), so that a mistyped ``output`` deletes nothing else."""
    if not folder.exists():
        return
    marks = ("config.yaml", "checkpoints", "model_final.pth.tar", STAGE_RECORD_FILE)
    if any(folder.iterdir()) and not any((folder / m).exists() for m in marks):
        raise PipelineError(f"{folder}: --fresh: not a stage folder (none of {', '.join(marks)}); not deleting it")
    logger.info("--fresh: deleting %s", folder)
    shutil.rmtree(folder, ignore_errors=True)  # every rank deletes: a file another rank removed first is fine
    if folder.exists():
        raise PipelineError(f"{folder}: --fresh: could not delete the folder")


# ------------------------------------------------------------------------------------------------- the run
def _train_stage(pipeline: Pipeline, stage: PipelineStage, cfg: Config, device, progress: bool, train,
                 log_to: LogTo | None) -> tuple[str, float]:
    """Run (or resume) one stage; returns its status and wall time, and records it in ``pipeline_stage.json``."""
    folder = pipeline.stage_dir(stage.name)
    if env_dist_info().is_main:  # the other ranks may get here before rank 0 has written the previous stage's files
        check_inputs(pipeline, stage)
    if log_to is not None:
        log_to(folder / "train.log")
    start = time.perf_counter()
    try:
        trainer = train(cfg, folder, resume="auto", device=device, progress=progress, config_file=stage.config)
    finally:
        if log_to is not None:
            log_to(None)
    wall = time.perf_counter() - start
    status = "resumed" if getattr(trainer, "resumed_from", None) else "trained"
    if env_dist_info().is_main:
        record = {"stage": stage.name, "config": str(stage.config), "status": status, "wall_time_s": wall,
                  "inputs": input_hashes(cfg)}
        atomic_write_text(folder / STAGE_RECORD_FILE, json.dumps(record, indent=2) + "\n")
    logger.info("stage %s %s in %.1f s", stage.name, status, wall)
    return status, wall


def read_stage_record(folder: Path) -> dict[str, Any]:
    """A stage folder's ``pipeline_stage.json`` ({} when there is none: a stage trained by hand)."""
    path = folder / STAGE_RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err}); delete it, or the folder with --fresh") from None
    if not isinstance(record, dict):
        raise PipelineError(f"{path}: expected a JSON object")
    return record


def _wants_evaluation(stage: PipelineStage, evaluate: bool | None) -> bool:
    return stage.evaluate if evaluate is None else evaluate


def run_pipeline(pipeline: Pipeline, device="cpu", only: Sequence[str] = (), until: str | None = None,
                 fresh: bool = False, overrides: Sequence[str] = (), evaluate: bool | None = None,
                 evaluator: Evaluator | None = None, progress: bool = True, log_to: LogTo | None = None,
                 train=run_training) -> list[StageRecord]:
    """Run the stages ``select_stages(pipeline, only, until)`` selects, in order; returns their records and
    writes ``<output>/summary.json`` after each stage.

    Every stage's config is resolved first (``overrides``: ``--set`` for every stage), so a bad one stops the
    run before anything trains. ``fresh`` deletes the selected stages' folders first. ``evaluate``: None tracks
    and scores the stages marked ``evaluate: true``, True every selected stage, False none; ``evaluator`` does it
    (``tracking.scoring.track_and_score`` in ``tools/pipeline.py``; the train package cannot import tracking).
    Under torchrun only rank 0 writes, and nothing is evaluated. ``train``: ``run_training`` (tests pass a stub).
    """
    stages = select_stages(pipeline, only, until)
    configs = {s.name: stage_config(pipeline, s, overrides) for s in stages}
    wanted = [s.name for s in stages if _wants_evaluation(s, evaluate)]
    if wanted and pipeline.benchmark is None:
        raise PipelineError(f"--evaluate: {pipeline.path} has no top-level evaluate: {{dataset: ..., root: ...}} "
                            "naming the benchmark")
    if wanted and evaluator is None:
        raise ValueError("run_pipeline: stages to evaluate but no evaluator")
    dist = env_dist_info()
    if wanted and dist.world_size > 1:
        logger.warning("under torchrun nothing is evaluated: run the pipeline again in one process (finished "
                       "stages are skipped) to track and score %s", ", ".join(wanted))
        wanted = []
    if fresh:
        for stage in stages:
            remove_stage_dir(pipeline.stage_dir(stage.name))
    records: list[StageRecord] = []
    for index, stage in enumerate(stages, 1):
        cfg, folder = configs[stage.name], pipeline.stage_dir(stage.name)
        logger.info("stage %d/%d: %s (%s, train.stage %s) -> %s", index, len(stages), stage.name, stage.config,
                    cfg.train.stage, folder)
        if is_finished(pipeline, stage, cfg):
            logger.info("stage %s: skipped: %s exists and was made with this config", stage.name,
                        pipeline.model_path(stage.name))
            status, wall = "skipped", read_stage_record(folder).get("wall_time_s")
        else:
            status, wall = _train_stage(pipeline, stage, cfg, device, progress, train, log_to)
        record = StageRecord(stage.name, str(stage.config), status, str(folder), wall_time_s=wall)
        if dist.is_main:
            final_cfg, record.params = describe_final_model(pipeline, stage.name)
            final_cfg = replace(final_cfg, test=cfg.test)  # tracker settings may change without retraining
            record.depth = final_cfg.model.depth
            record.train, record.val = last_metrics(folder)
            if stage.name in wanted:
                record.benchmark = evaluator(stage, final_cfg, pipeline.model_path(stage.name), folder / "results")
            records.append(record)
            write_summary(pipeline, records)
    if dist.is_main:
        logger.info("summary (%s):\n%s", pipeline.output / SUMMARY_FILE, format_summary(records))
    return records


# ---------------------------------------------------------------------------------------------------- summary
def write_summary(pipeline: Pipeline, records: Sequence[StageRecord]) -> Path:
    """``<output>/summary.json``: the pipeline file, its benchmark and one object per stage record."""
    payload: dict[str, Any] = {"pipeline": str(pipeline.path), "output": str(pipeline.output),
                               "benchmark": asdict(pipeline.benchmark) if pipeline.benchmark else None,
                               "stages": [asdict(r) for r in records]}
    path = pipeline.output / SUMMARY_FILE
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def _cell(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_summary(records: Sequence[StageRecord]) -> str:
    """The records as a Markdown table: stage, status, depth, weights, time, train loss/IoU, validation IoU, and
    AUC, P_norm, P (percent) where evaluated."""
    lines = ["| stage | status | depth | params | time (s) | loss | IoU | val IoU | AUC | P_norm | P |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        scores = r.benchmark or {}
        cells = [r.name, r.status, _cell(r.depth, "d"), _cell(r.params, ","), _cell(r.wall_time_s, ".1f"),
                 _cell(r.train.get("loss"), ".4f"), _cell(r.train.get("iou"), ".3f"), _cell(r.val.get("iou"), ".3f"),
                 _cell(scores.get("auc"), ".1f"), _cell(scores.get("norm_precision"), ".1f"),
                 _cell(scores.get("precision"), ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
