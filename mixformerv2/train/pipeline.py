"""Pipeline files: a chain of training stages, each a stage config plus where it starts from.

    output: runs/paper               # stage NAME writes <output>/NAME/ (relative to the working directory)
    evaluate: {dataset: lasot, root: data/lasot}   # optional: the benchmark of the stages marked evaluate: true
    stages:
      - name: b_stage1               # unique; the stage's output folder
        config: b_stage1.yaml        # relative to this file
        init_from: b_teacher         # optional: train.init_checkpoint = <output>/b_teacher/model_final.pth.tar
        teacher_from: b_teacher      # optional: train.teacher_config = <output>/b_teacher/model_final.yaml and
                                     #   train.teacher_checkpoint = <output>/b_teacher/model_final.pth.tar
        set: ["train.epochs=3"]      # optional overrides, applied after the two above
        evaluate: false              # optional: track and score the stage's final model on the benchmark

``init_from`` and ``teacher_from`` name earlier stages of the same file. The teacher's config is
``model_final.yaml``, the config of the network in that stage's ``model_final.pth.tar`` (written by the runner,
``train/pipeline_run.py``): after a stage that removed layers it has the shallower depth, and it carries the
stage's ``set`` overrides, which the stage's own YAML file does not. Unknown keys, unknown or later stage names and
duplicate names raise ``PipelineError`` (a ``ConfigError``) naming the file and the key.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..config import Config, ConfigError, load_config
from .stage import list_stages
from .trainer import MODEL_FILE

FINAL_CONFIG_FILE = "model_final.yaml"  # the config of the network in MODEL_FILE
_PIPELINE_KEYS = ("output", "evaluate", "stages")
_STAGE_KEYS = ("name", "config", "init_from", "teacher_from", "set", "evaluate")
_BENCHMARK_KEYS = ("dataset", "root", "split")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PipelineError(ConfigError):
    """A pipeline file, or a request to run it, that cannot work; the message names the file and the key."""


@dataclass(frozen=True)
class Benchmark:
    """Where evaluated stages are tracked and scored: a dataset registry name, its root and split (None: the
    registry's defaults)."""

    dataset: str
    root: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class PipelineStage:
    """One stage of a pipeline; ``config`` is the stage config's path (the pipeline file's folder joined with the
    name given in the file)."""

    name: str
    config: Path
    init_from: str | None = None
    teacher_from: str | None = None
    overrides: tuple[str, ...] = ()
    evaluate: bool = False


@dataclass(frozen=True)
class Pipeline:
    """A loaded pipeline file: its path, the output root and the stages in order."""

    path: Path
    output: Path
    stages: tuple[PipelineStage, ...]
    benchmark: Benchmark | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> PipelineStage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise PipelineError(f"{self.path}: no stage {name!r} (stages: {', '.join(self.names)})")

    def stage_dir(self, name: str) -> Path:
        """The output folder of stage ``name``: ``<output>/<name>``."""
        return self.output / name

    def model_path(self, name: str) -> Path:
        return self.stage_dir(name) / MODEL_FILE

    def final_config_path(self, name: str) -> Path:
        return self.stage_dir(name) / FINAL_CONFIG_FILE


# --------------------------------------------------------------------------------------------------- loading
def _unknown_keys(raw: Mapping, known: Sequence[str], where: str) -> None:
    for key in raw:
        if key not in known:
            raise PipelineError(f"{where}{key}: unknown key (known: {', '.join(known)})")


def _text(raw: Mapping, key: str, where: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "missing" if value is None else f"expected a non-empty string, got {value!r}"
        raise PipelineError(f"{where}{key}: {what}")
    return value


def _benchmark(raw: Any, where: str) -> Benchmark:
    if not isinstance(raw, Mapping):
        raise PipelineError(f"{where}: expected a mapping such as {{dataset: lasot, root: data/lasot}}, got {raw!r}")
    _unknown_keys(raw, _BENCHMARK_KEYS, f"{where}.")
    return Benchmark(_text(raw, "dataset", f"{where}."), _text(raw, "root", f"{where}.", required=False),
                     _text(raw, "split", f"{where}.", required=False))


def _source(raw: Mapping, key: str, where: str, index: int, positions: Mapping[str, int], path: Path) -> str | None:
    """``init_from``/``teacher_from``: the name of an earlier stage, or None."""
    name = _text(raw, key, where, required=False)
    if name is None:
        return None
    if name not in positions:
        raise PipelineError(f"{where}{key}: {name!r} is not a stage of {path} (stages: {', '.join(positions)})")
    if positions[name] >= index:
        raise PipelineError(f"{where}{key}: {name!r} is stages[{positions[name]}], not an earlier stage; a stage "
                            "can start only from the stages before it")
    return name


def _overrides(raw: Mapping, where: str) -> tuple[str, ...]:
    value = raw.get("set", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise PipelineError(f"{where}set: expected a list of KEY=VALUE strings, got {value!r}")
    return tuple(value)


def _stage(raw: Any, index: int, positions: Mapping[str, int], path: Path) -> PipelineStage:
    where = f"{path}: stages[{index}]."
    if not isinstance(raw, Mapping):
        raise PipelineError(f"{path}: stages[{index}]: expected a mapping with name and config, got {raw!r}")
    _unknown_keys(raw, _STAGE_KEYS, where)
    name = _text(raw, "name", where)
    if not _NAME.match(name):
        raise PipelineError(f"{where}name: {name!r} is not a folder name (letters, digits, '_', '.', '-')")
    config = path.parent / _text(raw, "config", where)
    if not config.is_file():
        raise PipelineError(f"{where}config: {config}: file not found (relative to the pipeline file's folder)")
    evaluate = raw.get("evaluate", False)
    if not isinstance(evaluate, bool):
        raise PipelineError(f"{where}evaluate: expected true or false, got {evaluate!r}")
    return PipelineStage(name, config, _source(raw, "init_from", where, index, positions, path),
                         _source(raw, "teacher_from", where, index, positions, path), _overrides(raw, where),
                         evaluate)


def is_pipeline_file(path: str | Path) -> bool:
    """Whether a YAML file is a pipeline file (a top-level ``stages`` list) rather than a stage config: both live
    in ``configs/paper/`` and ``configs/quickstart/``."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError:
        return False
    return isinstance(raw, Mapping) and isinstance(raw.get("stages"), list)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and check a pipeline file (format: the module docstring). Raises ``PipelineError`` naming the file
    and the key."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: pipeline file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(raw, Mapping):
        raise PipelineError(f"{path}: the top level must be a mapping with output and stages")
    _unknown_keys(raw, _PIPELINE_KEYS, f"{path}: ")
    output = _text(raw, "output", f"{path}: ")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise PipelineError(f"{path}: stages: expected a non-empty list of stages, got {stages_raw!r}")
    positions: dict[str, int] = {}
    for index, entry in enumerate(stages_raw):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name in positions:
            raise PipelineError(f"{path}: stages[{index}].name: {name!r} is also stages[{positions[name]}]'s name")
        if isinstance(name, str):
            positions[name] = index
    stages = tuple(_stage(entry, i, positions, path) for i, entry in enumerate(stages_raw))
    benchmark = _benchmark(raw["evaluate"], f"{path}: evaluate") if raw.get("evaluate") is not None else None
    if benchmark is None and any(s.evaluate for s in stages):
        first = next(i for i, s in enumerate(stages) if s.evaluate)
        raise PipelineError(f"{path}: stages[{first}].evaluate: true, but the file has no top-level evaluate: "
                            "{dataset: ..., root: ...} naming the benchmark")
    return Pipeline(path, Path(output), stages, benchmark)


# ------------------------------------------------------------------------------------------------ resolution
def _path_override(key: str, path: Path) -> str:
    return f"{key}={json.dumps(str(path))}"  # a JSON string is a YAML string: any character survives


def stage_overrides(pipeline: Pipeline, stage: PipelineStage, extra: Iterable[str] = ()) -> list[str]:
    """The ``KEY=VALUE`` overrides that make ``stage``'s config file its config in this pipeline: the start and
    teacher files of ``init_from``/``teacher_from``, then the stage's ``set``, then ``extra`` (``--set``)."""
    out = []
    if stage.init_from:
        out.append(_path_override("train.init_checkpoint", pipeline.model_path(stage.init_from)))
    if stage.teacher_from:
        out.append(_path_override("train.teacher_config", pipeline.final_config_path(stage.teacher_from)))
        out.append(_path_override("train.teacher_checkpoint", pipeline.model_path(stage.teacher_from)))
    return out + list(stage.overrides) + list(extra)


def stage_config(pipeline: Pipeline, stage: PipelineStage, extra: Iterable[str] = ()) -> Config:
    """``stage``'s effective config: its file with ``stage_overrides``; raises ``ConfigError`` naming the file or
    override and the key."""
    return load_config(stage.config, stage_overrides(pipeline, stage, extra), stages=list_stages())


def select_stages(pipeline: Pipeline, only: Sequence[str] = (), until: str | None = None) -> list[PipelineStage]:
    """The stages to run, in pipeline order: all of them, or those named in ``only``, and none after ``until``
    (which is included). An unknown name raises ``PipelineError`` naming the flag."""
    for flag, names in (("--only", only), ("--until", [until] if until else [])):
        unknown = [n for n in names if n not in pipeline.names]
        if unknown:
            raise PipelineError(f"{flag} {unknown[0]}: not a stage of {pipeline.path} (stages: "
                                f"{', '.join(pipeline.names)})")
    last = pipeline.names.index(until) if until else len(pipeline.stages) - 1
    return [s for i, s in enumerate(pipeline.stages) if i <= last and (not only or s.name in only)]
