"""A reduced quickstart end to end (tools/quickstart.py): the whole pipeline learns on synthetic data.

One run (module fixture, about 2 minutes on 2 idle cores) of the real quickstart command on a smaller synthetic
set (5 LaSOT test videos) with the shipped pipeline's stages cut short (a pipeline file with per-stage ``set``),
then: the trained teacher tracks better than holding the first box; stage 2 fades, prunes and fine-tunes, and the
shallower student's held-out IoU stays close to the deeper one's; the score head separates positive from negative
crops on held-out data; a re-run skips every step; the report and summary hold every row.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mixformerv2.data.synthetic import PRESETS, generate_all
from tests.tool_loader import load_tool

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "quickstart" / "pipeline.yaml"
# every stage 512 samples per epoch (the shipped quickstart: 2048), validated only after the last epoch
COMMON = ["data.samples_per_epoch=512", "train.val_interval=100"]
# per stage: epochs (shipped: 10, 28, 3, 12, 3) and held-out samples. Stage 2 fades block 1 at rate 0.5, then 0.
# Stage 3 is scored on 512 held-out crops: the more there are, the closer to 0.5 an AUROC without separation stays.
PER_STAGE = {"teacher": ["train.epochs=12", "data.val_samples_per_epoch=256"],
             "stage1": ["train.epochs=6", "data.val_samples_per_epoch=256"],
             "stage2": ["train.epochs=2", "train.remove_epochs=2", "data.val_samples_per_epoch=256"],
             "stage2b": ["train.epochs=3", "data.val_samples_per_epoch=256"],
             "stage3": ["train.epochs=3", "data.val_samples_per_epoch=512"]}


def reduced_pipeline(path: Path) -> Path:
    """The shipped quickstart pipeline with each stage's settings from ``PER_STAGE``, written to ``path``."""
    spec = yaml.safe_load(SHIPPED.read_text())
    assert {stage["name"] for stage in spec["stages"]} == set(PER_STAGE)
    for stage in spec["stages"]:
        stage["config"] = str(SHIPPED.parent / stage["config"])
        stage["set"] = [*stage.get("set", []), *PER_STAGE[stage["name"]]]
    path.write_text(yaml.safe_dump(spec))
    return path


def last_val(run_dir, key: str) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [row[key] for row in rows if row.get("split") == "val" and key in row]
    assert values, f"{run_dir}: no validation {key}"
    return values[-1]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    data, out = root / "data", root / "out"
    generate_all(data, replace(PRESETS["quickstart"], lasot_test_per_class=1), formats=("lasot", "got10k"),
                 workers=2)
    args = ["--out", str(out), "--data", str(data), "--no-progress", "--device", "cpu", "--workers", "1",
            "--pipeline", str(reduced_pipeline(root / "pipeline.yaml")), "--set", *COMMON]
    status = load_tool("quickstart").main(args)
    assert status == 0
    return {"out": out, "args": args, "summary": json.loads((out / "summary.json").read_text())}


def test_the_trained_teacher_tracks_better_than_holding_the_first_box(quickstart):
    rows = quickstart["summary"]["rows"]
    # hold-first-box scores 5.5 AUC points on these 5 videos and a teacher that does not follow the target stays
    # there. Measured with these settings (6144 training samples): 12.7, i.e. +7.2; other training seeds gave
    # +2.5 (seed 1) and +3.4 (seed 2), and so the bound is 1.5 (the shipped quickstart: +13.1)
    assert rows["teacher"]["auc_pct"] >= rows["hold_first_box"]["auc_pct"] + 1.5


def test_stage2_prunes_and_the_shallower_student_stays_close_to_the_deeper_one(quickstart):
    runs = quickstart["out"] / "runs"
    from mixformerv2.models import read_checkpoint

    final = read_checkpoint(runs / "stage2" / "model_final.pth.tar")
    assert final["removed_layers"] == [1]
    assert quickstart["summary"]["rows"]["stage2b"]["params_m"] < quickstart["summary"]["rows"]["stage1"]["params_m"]
    deep, shallow = last_val(runs / "stage1", "iou"), last_val(runs / "stage2b", "iou")
    # one of four layers removed, then fine-tuned on the same data: the held-out IoU may not fall by more than
    # 0.05 (measured: 0.164 -> 0.175, it rises: the fine-tuning is extra training)
    assert shallow >= deep - 0.05, (deep, shallow)


def test_the_score_head_separates_positive_from_negative_crops(quickstart):
    auroc = last_val(quickstart["out"] / "runs" / "stage3", "auroc")
    # 512 held-out crops, about half negative: under "no separation" the AUROC is 0.5 with a standard deviation of
    # about 0.0256, so 0.55 is 2 of them above chance. Measured here (a frozen student after 3072 samples, the score
    # head after 1536): 0.573 (other training seeds, on 256 crops: 0.67-0.69); the shipped quickstart reaches 0.77,
    # the score of a better student.
    assert auroc >= 0.55, auroc


def test_a_rerun_skips_every_step_and_the_report_holds_every_row(quickstart, caplog):
    import logging

    caplog.set_level(logging.INFO)
    assert load_tool("quickstart").main(quickstart["args"]) == 0
    log = caplog.text
    assert "data: skipped" in log
    for stage in ("teacher", "stage1", "stage2", "stage2b", "stage3"):
        assert f"stage {stage}: skipped" in log
    assert "already complete" in log  # tracking resumes: nothing is tracked again
    summary = json.loads((quickstart["out"] / "summary.json").read_text())
    assert set(summary["rows"]) == {"teacher", "stage1", "stage2b", "stage3", "final_no_update", "hold_first_box"}
    report = (quickstart["out"] / "report.md").read_text()
    assert all(name in report for name in summary["rows"])
    assert all((quickstart["out"] / plot).is_file() for plot in summary["plots"])
