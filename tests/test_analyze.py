"""End-to-end runs of tools/analyze.py on tiny LaSOT and GOT-10k val copies written in the benchmarks' formats."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mixformerv2.data.registry import list_datasets
from mixformerv2.evaluation.report import COLUMNS, GOT10K_COLUMNS, format_table, load_paper_results, paper_rows
from mixformerv2.evaluation.results import (ResultFileError, find_result_files, load_sequence_results,
                                           read_result_file)

ANALYZE = Path(__file__).resolve().parents[1] / "tools" / "analyze.py"

# LaSOT: cat-1 has an all-zero, fully occluded frame 2; cat-2 is always visible.
LASOT = {
    "cat-1": (np.array([[1, 1, 10, 10], [3, 1, 10, 10], [0, 0, 0, 0], [5, 1, 10, 10]]), [0, 0, 1, 0], [0, 0, 0, 0]),
    "cat-2": (np.array([[10, 10, 20, 20], [10, 10, 20, 20]]), [0, 0], [0, 0]),
}
# Tracker A: exact on cat-1 except a zero-size box on the occluded frame; 10 px to the right on cat-2 frame 1.
LASOT_A = {"cat-1": np.array([[1, 1, 10, 10], [3, 1, 10, 10], [0, 0, 0, 0], [5, 1, 10, 10]]),
           "cat-2": np.array([[10, 10, 20, 20], [20, 10, 20, 20]])}

# GOT-10k val: frame 0 of seq 1 is wrong (ignored), frame 2 sticks out of the 100x50 image, frame 3 has cover 0.
GOT = {
    "GOT-10k_Val_000001": (np.array([[0, 0, 10, 10], [0, 0, 10, 10], [90, 0, 20, 10], [0, 0, 10, 10.]]),
                           [8, 8, 4, 0], [0, 0, 0, 1]),
    "GOT-10k_Val_000002": (np.array([[5, 5, 10, 10]] * 3, dtype=float), [8, 8, 8], [0, 0, 0]),
}
GOT_PRED = {"GOT-10k_Val_000001": np.array([[50, 50, 5, 5], [0, 0, 10, 10], [95, 0, 10, 10], [0, 0, 10, 10.]]),
            "GOT-10k_Val_000002": np.array([[5, 5, 10, 10], [30, 30, 10, 10], [5, 5, 10, 10.]])}


def _lines(boxes, sep=","):
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in boxes)


def make_lasot(root: Path) -> Path:
    for name, (gt, occlusion, out_of_view) in LASOT.items():
        folder = root / name.rsplit("-", 1)[0] / name
        folder.mkdir(parents=True)
        (folder / "groundtruth.txt").write_text(_lines(gt))
        (folder / "full_occlusion.txt").write_text(",".join(map(str, occlusion)))
        (folder / "out_of_view.txt").write_text(",".join(map(str, out_of_view)))
        (folder / "nlp.txt").write_text("a cat\n")
    (root / "testing_set.txt").write_text("".join(f"{n}\n" for n in LASOT))
    return root


def make_got10k_val(root: Path) -> Path:
    val = root / "val"
    for name, (gt, cover, absence) in GOT.items():
        folder = val / name
        folder.mkdir(parents=True)
        (folder / "groundtruth.txt").write_text(_lines(gt))
        (folder / "cover.label").write_text("".join(f"{c}\n" for c in cover))
        (folder / "absence.label").write_text("".join(f"{a}\n" for a in absence))
        (folder / "cut_by_image.label").write_text("".join("0\n" for _ in cover))
        (folder / "meta_info.ini").write_text("[METAINFO]\nobject_class: cat\nresolution: (100, 50)\n")
        for i in range(len(gt)):  # empty frame files: only the got10k toolkit lists them
            (folder / f"{i + 1:08d}.jpg").write_bytes(b"")
    (val / "list.txt").write_text("".join(f"{n}\n" for n in GOT))
    return root


def run_analyze(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ANALYZE), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture()
def lasot_setup(tmp_path):
    root = make_lasot(tmp_path / "lasot")
    results = tmp_path / "results"
    for name, pred in LASOT_A.items():
        (results / "A").mkdir(parents=True, exist_ok=True)
        (results / "A" / f"{name}.txt").write_text(_lines(pred, "\t"))
    (results / "B" / "lasot").mkdir(parents=True)  # the test runner's layout; cat-2 missing
    (results / "B" / "lasot" / "cat-1.txt").write_text(_lines(LASOT["cat-1"][0]))
    return root, results, tmp_path


def test_lasot_end_to_end_values_json_and_plots(lasot_setup):
    root, results, tmp = lasot_setup
    out = run_analyze("--dataset", "lasot", "--root", root, "--results", results, "--trackers", "A",
                      "--json", tmp / "r.json", "--plots", tmp / "plots", "--paper")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp / "r.json").read_text())
    assert report["dataset"] == "lasot" and report["num_sequences"] == 2
    a = report["trackers"]["A"]
    assert set(a) >= {"auc", "op50", "op75", "precision", "norm_precision", "success_curve", "precision_curve",
                      "norm_precision_curve"}
    # cat-1: 3 of 4 frames perfect (occluded frame fails everything); cat-2: IoU 1/3, error 10 px, norm 0.5
    assert a["auc"] == pytest.approx(100 * (15 / 21 + 13.5 / 21) / 2)
    assert a["op50"] == a["op75"] == pytest.approx(62.5)
    assert a["precision"] == pytest.approx(87.5) and a["norm_precision"] == pytest.approx(62.5)
    assert len(a["success_curve"]) == 21 and len(a["precision_curve"]) == len(a["norm_precision_curve"]) == 51
    assert report["paper"] == paper_rows("lasot")  # the packaged numbers of this benchmark, as the report reads them
    assert report["paper_sources"] == [{k: row[k] for k in ("tracker", "metric", "source")}
                                       for row in load_paper_results("lasot")]
    for kind in ("success", "precision", "norm_precision"):
        assert (tmp / "plots" / f"lasot_{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_sequence_is_an_error_naming_it_unless_allow_incomplete(lasot_setup):
    root, results, tmp = lasot_setup
    out = run_analyze("--dataset", "lasot", "--root", root, "--results", results, "--trackers", "A", "B")
    assert out.returncode == 1 and "cat-2" in out.stderr and "B" in out.stderr
    out = run_analyze("--dataset", "lasot", "--root", root, "--results", results, "--trackers", "A", "B",
                      "--allow-incomplete", "--json", tmp / "r.json", "--protocol", "toolkit")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp / "r.json").read_text())
    assert (report["num_sequences"], report["num_sequences_total"]) == (1, 2)
    assert report["missing"] == {"A": [], "B": ["cat-2"]}
    for tracker in ("A", "B"):
        assert report["trackers"][tracker]["auc"] == pytest.approx(100 * 15 / 21)


def test_malformed_result_is_an_error_naming_file_and_row(lasot_setup):
    root, results, tmp = lasot_setup
    (results / "A" / "cat-2.txt").write_text("10,10,20,20\n20,10,-20,20\n")
    out = run_analyze("--dataset", "lasot", "--root", root, "--results", results, "--trackers", "A")
    assert out.returncode == 1 and "cat-2.txt: row 2" in out.stderr and "negative" in out.stderr


def test_got10k_val_end_to_end(tmp_path):
    root = make_got10k_val(tmp_path / "got10k")
    results = tmp_path / "results"
    for name, pred in GOT_PRED.items():  # the got10k toolkit's layout
        (results / "T" / name).mkdir(parents=True)
        (results / "T" / name / f"{name}_001.txt").write_text(_lines(pred))
    out = run_analyze("--dataset", "got10k_val", "--root", root, "--results", results, "--trackers", "T",
                      "--json", tmp_path / "g.json", "--plots", tmp_path / "plots")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    t = report["trackers"]["T"]
    # pooled IoUs over frames 1.. with cover > 0: [1, 0.5] and [0, 1]
    assert t["ao"] == pytest.approx(62.5) and t["sr50"] == pytest.approx(50) and t["sr75"] == pytest.approx(50)
    assert report["num_sequences"] == 2 and set(t) >= {"ao", "sr50", "sr75", "success_curve"}
    assert (tmp_path / "plots" / "got10k_val_success.png").read_bytes()[:4] == b"\x89PNG"


def test_got10k_val_matches_the_got10k_toolkit(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    experiments = pytest.importorskip("got10k.experiments")
    from mixformerv2.data.registry import get_dataset
    from mixformerv2.evaluation.protocols import eval_sequence, evaluate_tracker, get_rules

    rng = np.random.default_rng(0)
    root = tmp_path / "got10k"
    make_got10k_val(root)
    result_dir = tmp_path / "results"
    for name, (gt, _, _) in GOT.items():
        runs = [np.clip(gt + rng.normal(0, 4, gt.shape), [-20, -20, 1, 1], None) for _ in range(2)]
        for r, run in enumerate(runs):
            path = result_dir / "GOT-10k" / "T" / name / f"{name}_{r + 1:03d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(path, run, fmt="%.3f", delimiter=",")
        np.savetxt(path.parent / f"{name}_time.txt", np.full((len(gt), 2), 0.01), fmt="%.8f", delimiter=",")
    exp = experiments.ExperimentGOT10k(str(root), subset="val", result_dir=str(result_dir),
                                       report_dir=str(tmp_path / "reports"))
    theirs = exp.report(["T"])["T"]["overall"]
    reader = get_dataset("got10k_val", root=root)
    sequences = [eval_sequence(reader[n], "got10k_val") for n in reader.sequence_names]
    runs = [[read_result_file(result_dir / "GOT-10k" / "T" / s.name / f"{s.name}_{r:03d}.txt") for r in (1, 2)]
            for s in sequences]
    ours = evaluate_tracker(get_rules("got10k_val"), sequences, runs)
    assert ours["ao"] == pytest.approx(100 * theirs["ao"], abs=1e-9)
    assert ours["sr50"] == pytest.approx(100 * theirs["sr"], abs=1e-9)
    assert ours["sr75"] == pytest.approx(100 * theirs["succ_curve"][75], abs=1e-9)


# ----------------------------------------------------------------------------------------------- result files

def test_result_files_accept_comma_tab_and_space_and_reject_bad_rows(tmp_path):
    path = tmp_path / "s.txt"
    for text in ("1,2,3,4\n5,6,7,8\n", "1\t2\t3\t4\n5\t6\t7\t8", "1 2 3 4\n\n5  6 7 8\n", "1, 2, 3, 4\n5,6,7,8\n"):
        path.write_text(text)
        np.testing.assert_array_equal(read_result_file(path), [[1, 2, 3, 4], [5, 6, 7, 8]])
    for text, needle in (("1,2,3,4\n1,2,3\n", "row 2"), ("1,2,3,4\n1,2,nan,4\n", "row 2"),
                         ("1,2,3,4\n1,x,3,4\n", "row 2"), ("", "empty"), ("1,,3,4\n", "row 1")):
        path.write_text(text)
        with pytest.raises(ResultFileError, match=needle):
            read_result_file(path, "seqA")
    with pytest.raises(ResultFileError, match="seqA"):
        read_result_file(tmp_path / "missing.txt", "seqA")


def test_truncate_to_int_matches_the_official_runner(tmp_path):
    (tmp_path / "T").mkdir()
    (tmp_path / "T" / "s.txt").write_text("3.7,-1.2,10.9,5.5\n")
    runs = load_sequence_results(tmp_path, "T", "otb100", "s", rule="truncate_int")
    np.testing.assert_array_equal(runs[0], [[3, -1, 10, 5]])


def test_result_layouts(tmp_path):
    (tmp_path / "T" / "uav123").mkdir(parents=True)
    (tmp_path / "T" / "uav123" / "uav_bike1.txt").write_text("1,2,3,4\n")
    assert find_result_files(tmp_path, "T", "uav123", "bike1")[0].name == "uav_bike1.txt"
    with pytest.raises(ResultFileError, match="bike2"):
        find_result_files(tmp_path, "T", "uav123", "bike2")


# ----------------------------------------------------------------------------------------------- paper numbers

def _packaged_tsv_rows() -> list[dict]:
    """paper_results.tsv read with the csv module alone, independently of the report code."""
    text = resources.files("mixformerv2.evaluation").joinpath("paper_results.tsv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def test_paper_table_is_well_formed():
    rows = load_paper_results()
    assert len(rows) == len(_packaged_tsv_rows()) > 0
    keys = [(row["tracker"], row["dataset"], row["metric"]) for row in rows]
    assert len(keys) == len(set(keys))  # one number per tracker, benchmark and metric
    table_metrics = {key for key, _ in COLUMNS + GOT10K_COLUMNS}
    for row in rows:
        assert row["dataset"] in list_datasets(), row  # a registry name, or no report would ever show it
        assert row["metric"] in table_metrics, row  # a metric without a table column would be dropped silently
        assert 0.0 < row["value"] <= 100.0, row  # every published metric is a percentage
        assert row["source"].strip(), row


def test_paper_rows_hold_exactly_the_tsv_rows_of_their_benchmark():
    tsv = _packaged_tsv_rows()
    for dataset in {row["dataset"] for row in tsv}:
        mine = [row for row in tsv if row["dataset"] == dataset]
        grouped = paper_rows(dataset)
        assert sum(len(metrics) for metrics in grouped.values()) == len(mine)
        for row in mine:
            assert grouped[row["tracker"]][row["metric"]] == float(row["value"])
    assert paper_rows("otb100") == {}  # registered, but no published number in the table


def test_paper_rows_of_an_unknown_benchmark_is_an_error():
    with pytest.raises(ValueError, match="lasott"):
        paper_rows("lasott")


def test_format_table_puts_each_paper_value_under_its_metric():
    paper = paper_rows("lasot_ext")
    lines = format_table({"mine": {"auc": 12.345, "precision": 2.0}}, paper).splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header == ["Tracker"] + [name for _, name in COLUMNS]
    rows = {}
    for line in lines[1:]:
        name, *cells = re.split(r"\s{2,}", line.strip())
        rows[name] = dict(zip(header[1:], cells, strict=True))
    assert rows.pop("mine") == {"AUC": "12.35", "OP50": "-", "OP75": "-", "Prec": "2.00", "NormPrec": "-"}
    assert sorted(rows) == sorted(f"{tracker} [paper]" for tracker in paper)
    for tracker, values in paper.items():
        for key, column in COLUMNS:
            assert rows[f"{tracker} [paper]"][column] == (f"{values[key]:.2f}" if key in values else "-")
