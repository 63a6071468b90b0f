"""The quickstart's report: every stage's tracker and the baselines scored on one benchmark, as a paper-style table.

Given report rows (a tracker's name, its results run folder, its config and checkpoint or none for a baseline, the
wall time of the training stage that made it), ``write_quickstart_report`` scores every row's results with the
benchmark's protocol (``scoring.score_runs``, the calls behind ``tools/analyze.py``), plots the success and
precision curves (``report.plot_curves``) and writes into ``out_dir``:

* ``report.md``: the table (AUC, P_norm, P, params, GFLOPs per frame, ms per frame, training wall time), how
  speed was measured and on which machine, the plots embedded, the wall time of each pipeline step and the
  acceptance checks;
* ``summary.json``: the same numbers with their unit in each key name (``auc_pct``, ``ms_per_frame``,
  ``train_wall_time_s``, ...; ``units`` spells them out), each step's wall time, the machine.

Speed is measured by the caller, because evaluation never builds a network: pass ``profiling.profile_trackers``'s
result as ``speed``::

    speed = profile_trackers(models_to_profile(rows), dataset="lasot")
    summary = write_quickstart_report(rows, "lasot", "results", "outputs/quickstart", speed=speed,
                                      root="data/synthetic/lasot", steps={"teacher": 312.0, ...})
    report = format_checks(check_acceptance(summary))  # one PASS/FAIL line per check

``check_acceptance`` evaluates the quickstart's acceptance lines on a summary (a dict or ``summary.json``): the
final student reaches 90 % of the teacher's AUC, beats the hold-the-first-box baseline by 15 AUC points, and runs
faster per frame than the teacher. Rows are found by ``role``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..utils.io import atomic_write_text
from .protocols import get_rules
from .report import plot_curves, write_json
from .scoring import load_eval_sequences, score_runs

logger = logging.getLogger(__name__)

ROLE_TEACHER = "teacher"
ROLE_STAGE = "stage"
ROLE_FINAL = "final"
ROLE_HOLD = "hold_first_box"
ROLE_BASELINE = "baseline"
ROLES = (ROLE_TEACHER, ROLE_STAGE, ROLE_FINAL, ROLE_HOLD, ROLE_BASELINE)

#: summary.json's unit of each row key (also written into the file)
UNITS = {
    "auc_pct": "percent, mean of the 21-point success curve (LaSOT protocol)",
    "norm_precision_pct": "percent of frames with normalised centre error <= 0.20",
    "precision_pct": "percent of frames with centre error <= 20 px",
    "op50_pct": "percent of frames with IoU > 0.5", "op75_pct": "percent of frames with IoU > 0.75",
    "params_m": "millions of parameters",
    "gflops_per_frame": "1e9 FLOPs of the network call per tracked frame (1 multiply-add = 2 FLOPs)",
    "gmacs_per_frame": "1e9 multiply-adds of the network call per tracked frame",
    "ms_per_frame": "milliseconds, median whole tracker step on this CPU",
    "ms_per_frame_p95": "milliseconds, 95th percentile of the tracker step",
    "train_wall_time_s": "seconds of the training stage that produced the checkpoint",
    "steps_wall_time_s": "seconds per pipeline step",
}
_SCORES = (("auc", "auc_pct"), ("norm_precision", "norm_precision_pct"), ("precision", "precision_pct"),
           ("op50", "op50_pct"), ("op75", "op75_pct"))
_SPEED = ("params_m", "gflops_per_frame", "gmacs_per_frame", "ms_per_frame", "ms_per_frame_p95", "forward_path")


@dataclass(frozen=True)
class ReportRow:
    """One line of the table.

    name: shown in the table and the plot legends. run: the results folder ``<results_root>/<run>/<dataset>/``.
    role: ``teacher``, ``stage``, ``final``, ``hold_first_box`` or ``baseline`` (the checks find rows by role).
    config, checkpoint: what the tracker ran (None for a baseline that has no network); overrides: the ``--set``
    overrides it ran with (e.g. ``no_online_update_overrides``). wall_time_s: the training stage's wall time, or
    None. note: a few words on what the row is.
    """

    name: str
    run: str
    role: str = ROLE_STAGE
    config: str | None = None
    checkpoint: str | None = None
    overrides: tuple[str, ...] = ()
    wall_time_s: float | None = None
    note: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"report row {self.name!r}: unknown role {self.role!r} (known: {', '.join(ROLES)})")


def models_to_profile(rows: list[ReportRow]) -> dict[str, tuple[Config, str | None]]:
    """``{name: (Config, checkpoint)}`` of the rows that have a config, for ``profiling.profile_trackers``."""
    return {row.name: (load_config(row.config, row.overrides), row.checkpoint) for row in rows if row.config}


def build_summary(rows: list[ReportRow], scores: dict[str, dict], box_rules: dict[str, dict], dataset: str,
                  num_sequences: int, speed: dict | None = None, steps: dict[str, float] | None = None) -> dict:
    """The ``summary.json`` content. scores: ``{run: evaluate_tracker summary}``; box_rules: ``{run: applied
    rule as a dict}``; speed: ``profile_trackers``'s result (rows it lacks get null speed numbers)."""
    measured = (speed or {}).get("models", {})
    table = {}
    for row in rows:
        entry = {"role": row.role, "run": row.run, "note": row.note, "config": row.config,
                 "checkpoint": row.checkpoint, "overrides": list(row.overrides)}
        entry.update({key: scores[row.run][metric] for metric, key in _SCORES})
        entry.update({key: measured.get(row.name, {}).get(key) for key in _SPEED})
        entry["train_wall_time_s"] = row.wall_time_s
        entry["box_rule"] = box_rules.get(row.run)
        entry["curves_pct"] = {k: scores[row.run][k] for k in ("success_curve", "precision_curve")}
        table[row.name] = entry
    return {"dataset": dataset, "protocol": f"pytracking ({get_rules(dataset).pytracking_name} rules)",
            "num_sequences": num_sequences, "units": UNITS, "rows": table,
            "steps_wall_time_s": dict(steps or {}), "total_wall_time_s": sum((steps or {}).values()),
            "speed_settings": (speed or {}).get("settings"), "machine": (speed or {}).get("machine"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 59.95:  # what rounds to 60.0 s is written as 1 min 00 s
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def machine_line(summary: dict) -> str:
    """One line: CPU model and features, threads, how ms/frame was measured (or that it was not)."""
    machine, settings = summary.get("machine"), summary.get("speed_settings")
    if not machine or not settings:
        return "Speed not measured."
    return (f"Machine: {machine['cpu']} ({', '.join(machine['flags']) or 'no AVX2'}), {machine['logical_cpus']} "
            f"logical CPUs; ms/frame is the median of {settings['runs']} whole tracker steps (crop, normalise, "
            f"network, box) on a {settings['frame_wh'][0]}x{settings['frame_wh'][1]} frame with "
            f"{settings['threads']} torch thread(s), PyTorch {machine['versions']['torch']}, fp32.")


def markdown_report(summary: dict, plots: list[str], title: str | None = None) -> str:
    """``report.md``: the table, the machine line, the embedded plots (file names relative to the report), the
    wall time of each step and the acceptance checks. title: the heading (default: names the benchmark)."""
    lines = [f"# {title or 'Quickstart report: ' + summary['dataset']}", "",
             f"{summary['dataset']}: {summary['num_sequences']} sequences, protocol {summary['protocol']}; "
             "AUC, P_norm and P in percent.", "",
             "| Tracker | AUC | P_norm | P | Params (M) | GFLOPs/frame | ms/frame | Training time | Note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, row in summary["rows"].items():
        lines.append(f"| {name} | {row['auc_pct']:.1f} | {row['norm_precision_pct']:.1f} | "
                     f"{row['precision_pct']:.1f} | {_cell(row['params_m'], '.3f')} | "
                     f"{_cell(row['gflops_per_frame'], '.3f')} | {_cell(row['ms_per_frame'], '.1f')} | "
                     f"{_duration(row['train_wall_time_s'])} | {row['note']} |")
    lines += ["", "GFLOPs/frame: the network call the tracker makes each frame (the search step against cached "
                  "templates where the model has one, else the full forward), 1 multiply-add = 2 FLOPs "
                  "(GMACs are half; both in summary.json).", "", machine_line(summary), ""]
    lines += [f"![{Path(p).stem.split('_', 1)[-1].replace('_', ' ')} plot]({p})" for p in plots]
    steps = summary["steps_wall_time_s"]
    if steps:
        lines += ["", "## Wall time per step", "", "| Step | Wall time |", "|---|---:|"]
        lines += [f"| {step} | {_duration(seconds)} |" for step, seconds in steps.items()]
        lines.append(f"| total | {_duration(summary['total_wall_time_s'])} |")
    lines += ["", "## Acceptance", ""] + [f"- {line}" for line in format_checks(check_acceptance(summary))
                                          .splitlines()]
    return "\n".join(lines) + "\n"


def write_quickstart_report(rows: list[ReportRow], dataset: str, results_root: str | Path, out_dir: str | Path,
                            speed: dict | None = None, root: str | Path | None = None,
                            steps: dict[str, float] | None = None, title: str | None = None) -> dict:
    """Score every row's results on benchmark ``dataset`` (registry name, read at ``root``) and write
    ``report.md`` (headed ``title``), ``summary.json`` and the plots into ``out_dir`` (see the module docstring).

    Returns the summary; ``summary["rows"]`` is ``{name: numbers}``. A row without results for every sequence
    raises ``EvaluationError`` naming its run and the first missing file.
    """
    names = [row.name for row in rows]
    if len(set(names)) != len(names) or len({row.run for row in rows}) != len(rows):
        raise ValueError(f"report rows need distinct names and runs: {names}")
    sequences = load_eval_sequences(dataset, root)
    scores, applied = score_runs(results_root, [row.run for row in rows], dataset, sequences)
    summary = build_summary(rows, scores, {run: rule.as_dict() for run, rule in applied.items()}, dataset,
                            len(sequences), speed, steps)
    out_dir = Path(out_dir)
    written = plot_curves({row.name: scores[row.run] for row in rows}, out_dir, dataset)
    plots = [p.name for p in written if not p.stem.endswith("norm_precision")]
    summary["plots"] = [p.name for p in written]
    write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "report.md", markdown_report(summary, plots, title))
    logger.info("wrote %s and %s", out_dir / "report.md", out_dir / "summary.json")
    return summary


# ------------------------------------------------------------------------------------------------ acceptance
@dataclass(frozen=True)
class AcceptanceCheck:
    """One acceptance line: ``passed`` and ``detail``, a sentence with the numbers it compared."""

    name: str
    passed: bool
    detail: str


def _row_with_role(summary: dict, role: str) -> tuple[str, dict] | None:
    found = [(name, row) for name, row in summary["rows"].items() if row.get("role") == role]
    return found[-1] if found else None


def check_acceptance(summary: dict | str | Path, min_auc_ratio: float = 0.90,
                     min_auc_margin: float = 15.0) -> list[AcceptanceCheck]:
    """The quickstart's acceptance lines on a summary (dict, or the path of ``summary.json``): the ``final`` row's
    AUC >= ``min_auc_ratio`` x the ``teacher``'s; it beats ``hold_first_box`` by >= ``min_auc_margin`` AUC points;
    its ms/frame is below the teacher's. A missing row or number fails its line, saying what is missing."""
    if not isinstance(summary, dict):
        summary = json.loads(Path(summary).read_text(encoding="utf-8"))
    roles = {role: _row_with_role(summary, role) for role in (ROLE_FINAL, ROLE_TEACHER, ROLE_HOLD)}
    final, teacher, hold = roles[ROLE_FINAL], roles[ROLE_TEACHER], roles[ROLE_HOLD]

    def absent(*needed: str) -> str:
        return "; ".join(f"no row with role {role!r}" for role in needed if roles[role] is None)

    checks = []
    name = f"final AUC >= {100 * min_auc_ratio:.0f} % of the teacher's"
    if final and teacher:
        ratio = final[1]["auc_pct"] / teacher[1]["auc_pct"] if teacher[1]["auc_pct"] > 0 else float("inf")
        checks.append(AcceptanceCheck(name, ratio >= min_auc_ratio,
                                      f"{final[0]} {final[1]['auc_pct']:.2f} vs {teacher[0]} "
                                      f"{teacher[1]['auc_pct']:.2f}: {100 * ratio:.1f} %"))
    else:
        checks.append(AcceptanceCheck(name, False, absent(ROLE_FINAL, ROLE_TEACHER)))

    name = f"final beats hold-the-first-box by >= {min_auc_margin:g} AUC points"
    if final and hold:
        margin = final[1]["auc_pct"] - hold[1]["auc_pct"]
        checks.append(AcceptanceCheck(name, margin >= min_auc_margin,
                                      f"{final[0]} {final[1]['auc_pct']:.2f} vs {hold[0]} {hold[1]['auc_pct']:.2f}: "
                                      f"{margin:+.2f} points"))
    else:
        checks.append(AcceptanceCheck(name, False, absent(ROLE_FINAL, ROLE_HOLD)))

    name = "final runs faster per frame than the teacher"
    if final and teacher:
        unmeasured = [row[0] for row in (final, teacher) if row[1].get("ms_per_frame") is None]
        if unmeasured:
            checks.append(AcceptanceCheck(name, False, f"no ms_per_frame for {', '.join(unmeasured)}"))
        else:
            ms_final, ms_teacher = final[1]["ms_per_frame"], teacher[1]["ms_per_frame"]
            checks.append(AcceptanceCheck(name, ms_final < ms_teacher,
                                          f"{final[0]} {ms_final:.2f} ms/frame vs {teacher[0]} {ms_teacher:.2f} "
                                          f"ms/frame: {ms_teacher / ms_final:.2f}x"))
    else:
        checks.append(AcceptanceCheck(name, False, absent(ROLE_FINAL, ROLE_TEACHER)))
    return checks


def format_checks(checks: list[AcceptanceCheck]) -> str:
    """One line per check: ``PASS|FAIL <name>: <detail>``."""
    return "\n".join(f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks)
