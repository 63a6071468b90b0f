"""VOT integration without the toolkit: the toolkit's overlap and accuracy, workspace conversion, trackers.ini, the
reading of the toolkit's output, logs, analysis JSON and trajectories, and the TraX request loop."""
from __future__ import annotations

import ast
import configparser
import math
import os
import struct
from collections import namedtuple

import numpy as np
import pytest
import yaml

import dataset_fixtures as fx
from model_fixtures import write_tiny_model_files
from mixformerv2.data.registry import get_dataset
from mixformerv2.data.sequence import Sequence, read_frame_rgb
from mixformerv2.evaluation.metrics import EvaluationError, iou_continuous
from mixformerv2.evaluation.vot import iou_vot, unsupervised_accuracy
from mixformerv2.tracking.tracker import TrackOutput
from mixformerv2.vot import server, toolkit, workspace


# --------------------------------------------------------------------------------------------------- overlap
def test_iou_vot_hand_computed():
    pred = np.array([[0, 0, 4, 4],          # pixels 0..3 vs 2..5: 4 shared of 28
                     [0.6, 0, 4, 4],        # rounds to x=1: 3x2 shared of 26
                     [2.5, 0, 4, 4],        # half to even: x=2, the same pixels as the ground truth
                     [3.5, 0, 4, 4],        # half to even: x=4, 2 of 4 columns shared: 8 of 24
                     [3, 0, 1, 2],          # one pixel column with the ground truth's: the toolkit says 1
                     [np.nan, 0, 4, 4]])
    gt = np.array([[2, 2, 4, 4], [2, 2, 4, 4], [2, 0, 4, 4], [2, 0, 4, 4], [3, 5, 1, 2], [0, 0, 4, 4]])
    expected = [4 / 28, 6 / 26, 1.0, 8 / 24, 1.0, np.nan]
    np.testing.assert_allclose(iou_vot(pred, gt), expected, rtol=0, atol=1e-15)
    assert iou_continuous(pred[1:2], gt[1:2])[0] == pytest.approx(5.2 / 26.8)  # continuous: no rounding


def test_iou_vot_counts_only_pixels_inside_the_image():
    pred, gt = np.array([[-2.0, 0, 4, 4]]), np.array([[0.0, 0, 2, 4]])
    assert iou_vot(pred, gt).tolist() == [0.5]                  # 8 shared pixels of 16
    assert iou_vot(pred, gt, (10, 10)).tolist() == [1.0]        # columns -2, -1 are outside the image
    assert iou_vot(np.array([[20.0, 0, 4, 4]]), np.array([[8.0, 0, 4, 4]]), (10, 10)).tolist() == [0.0]


def test_unsupervised_accuracy_weights_sequences_by_length_and_skips_unknown_frames():
    box = [0.0, 0, 4, 4]
    a_pred = np.array([box, box, [1.0, 0, 4, 4]])
    a_gt = np.array([box, box, [2.0, 0, 4, 4]])  # frames 1, 2: overlaps 1 and 12/20 (columns 2..4 of 1..5)
    b_pred = np.array([box, box])
    b_gt = np.array([box, [np.nan] * 4])       # no known frame after the first: 0
    accuracy = unsupervised_accuracy([a_pred, b_pred], [a_gt, b_gt], [(64, 48), (64, 48)])
    assert accuracy == pytest.approx(((1 + 12 / 20) / 2 * 3 + 0 * 2) / 5, abs=1e-15)
    with pytest.raises(EvaluationError, match="sequence 0"):
        unsupervised_accuracy([a_pred[:2]], [a_gt], [(64, 48)])


# ------------------------------------------------------------------------------------------------ workspace
def test_mixed_frame_types_are_written_as_png_with_the_same_pixels(tmp_path):
    sequence = get_dataset("tnl2k", root=fx.make_tnl2k(tmp_path / "tnl2k"))[fx.TNL2K_NAME]
    unknown = workspace.write_sequence(sequence, tmp_path / "ws" / sequence.name)
    folder = tmp_path / "ws" / sequence.name
    assert unknown == 1
    assert (folder / "groundtruth.txt").read_text() == "-3.0,4.0,20.0,30.0\nnan,nan,nan,nan\n5.0,-2.0,20.0,30.0\n"
    meta = dict(line.split("=", 1) for line in (folder / "sequence").read_text().splitlines())
    assert meta["channels.color"] == "color/%08d.png" and (meta["width"], meta["height"], meta["length"]) == \
        ("8", "8", "3")
    for index, path in enumerate(sequence.frame_paths, start=1):
        np.testing.assert_array_equal(read_frame_rgb(folder / "color" / f"{index:08d}.png"), read_frame_rgb(path))


def test_frames_of_one_type_are_linked_and_boxes_kept_exactly(tmp_path):
    reader = get_dataset("got10k_val", root=fx.make_got10k(tmp_path / "got10k"))
    sequence = reader[0]
    gt = sequence.gt_xywh.copy()
    gt[0] = [10.125, 20.5, 30.75, 1e-3]
    sequence = Sequence(sequence.name, sequence.dataset, sequence.frame_paths, gt, sequence.visible)
    lengths = workspace.write_sequences([sequence], tmp_path / "ws")
    folder = tmp_path / "ws" / sequence.name
    assert lengths == [3] and (tmp_path / "ws" / "list.txt").read_text() == f"{sequence.name}\n"
    assert os.path.samefile(folder / "color" / "00000001.jpg", sequence.frame_paths[0])
    rows = np.loadtxt(folder / "groundtruth.txt", delimiter=",")
    np.testing.assert_array_equal(rows, gt)  # repr of float64 reads back bit for bit


def test_a_sequence_must_start_from_a_valid_box_and_names_must_be_unique(tmp_path):
    sequence = get_dataset("tnl2k", root=fx.make_tnl2k(tmp_path / "tnl2k"))[fx.TNL2K_NAME]
    bad = Sequence(sequence.name, "tnl2k", sequence.frame_paths, sequence.gt_xywh[[1, 0, 2]], sequence.visible)
    with pytest.raises(workspace.WorkspaceError, match=f"tnl2k/{sequence.name}: frame 0 has no valid box"):
        workspace.write_sequence(bad, tmp_path / "bad")
    with pytest.raises(workspace.WorkspaceError, match="two sequences are named"):
        workspace.write_sequences([sequence, sequence], tmp_path / "twice")


def test_create_workspace_writes_the_local_stack(tmp_path):
    reader = get_dataset("lasot", root=fx.make_lasot(tmp_path / "lasot"))
    root = workspace.create_workspace(tmp_path / "ws", [reader[0], reader[1]], "local")
    config = yaml.safe_load((root / "config.yaml").read_text())
    stack = yaml.safe_load((root / config["stack"]).read_text())
    assert config["registry"] == ["./trackers.ini"] and config["sequences"] == "sequences"
    assert stack["experiments"]["unsupervised"]["analyses"] == [{"type": "average_accuracy", "name": "accuracy",
                                                                 "burnin": 1}]
    eao = stack["experiments"]["baseline"]["analyses"][2]
    assert (eao["type"], eao["low"], eao["high"]) == ("supervised_eao_score", 1, 3)  # sequences of 4 and 3 frames
    assert "dataset" not in stack  # nothing to download
    results = root / "results" / "mf2" / "unsupervised"
    results.mkdir(parents=True)
    workspace.create_workspace(root, [reader[0], reader[1]], "local")
    assert results.exists()  # the same sequences: their results stay
    workspace.create_workspace(root, [reader[1]], "local")
    assert not results.exists() and (root / "sequences" / "list.txt").read_text() == "rubicCube-1\n"


# ------------------------------------------------------------------------------------------------- trackers
def test_tracker_section_round_trips_through_the_toolkits_config_parser(tmp_path):
    files = write_tiny_model_files(tmp_path)
    odd = tmp_path / "50% o'clock.pth.tar"
    odd.write_bytes(files["good"].read_bytes())
    argv = workspace.server_argv(files["config"], odd, "cpu", ["test.update_interval=10"], threads=1)
    section = workspace.tracker_section(argv, python="/venv/bin/python", paths=["/repo"], timeout_s=90)
    (tmp_path / "trackers.ini").write_text("[other]\nprotocol = trax\ncommand = run 100%%\n")  # the user's
    workspace.write_tracker(tmp_path, "mf2", section)
    parser = configparser.ConfigParser()  # as vot.tracker.Registry reads it: with % interpolation
    parser.read(tmp_path / "trackers.ini")
    assert dict(parser["mf2"]) == section and parser["other"]["command"] == "run 100%"
    command = parser["mf2"]["command"]
    assert command.startswith("import sys; from mixformerv2.vot.server import main; sys.exit(main(")
    assert ast.literal_eval(command[command.index("main(") + 5:-2]) == argv  # the argv literal survives
    assert argv[argv.index("--checkpoint") + 1] == str(odd) and argv[-2:] == ["--set", "test.update_interval=10"]
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        workspace.server_argv(files["config"], tmp_path / "missing.pth.tar")
    with pytest.raises(workspace.WorkspaceError, match="tracker name"):
        workspace.write_tracker(tmp_path, "bad name", section)


def test_results_of_another_checkpoint_under_the_same_name_are_removed(tmp_path):
    files = write_tiny_model_files(tmp_path)
    results = tmp_path / "results" / "mf2" / "baseline"

    def register(checkpoint) -> bool:
        argv = workspace.server_argv(files["config"], checkpoint)
        return workspace.register_tracker(tmp_path, "mf2", workspace.tracker_section(argv),
                                          [files["config"], checkpoint])

    assert not register(files["good"])
    results.mkdir(parents=True)
    assert not register(files["good"]) and results.exists()  # same tracker: results kept
    assert register(files["deeper"]) and not results.exists()


# ------------------------------------------------------------------------------------------ toolkit output
def test_tracker_failure_quotes_the_trackers_own_error_line(tmp_path):
    log = tmp_path / "logs" / "mf2_baseline.log"
    log.parent.mkdir()
    log.write_text("INFO loading\nmixformerv2.vot: error: /m/k.pth.tar: checkpoint does not fit\n"
                   "Process exited with code (2)\n")
    output = ("\x1b[31mTracker mf2 encountered an error at sequence seq-1: Unable to connect to tracker\x1b[0m\n"
              f"\x1b[31mTracker output written to file: {log}\x1b[0m\n"
              "Evaluation interrupted by tracker error: ...\n")
    errors = toolkit.tracker_errors(toolkit._ANSI.sub("", output), tmp_path)
    assert [(e.tracker, e.sequence, e.tracker_line) for e in errors] == \
        [("mf2", "seq-1", "mixformerv2.vot: error: /m/k.pth.tar: checkpoint does not fit")]
    assert str(errors[0]).startswith("tracker mf2 failed on sequence seq-1: mixformerv2.vot: error: /m/k.pth.tar")
    # another tracker's crash: the last line it wrote, not the toolkit's note
    assert toolkit.tracker_error_line("Traceback ...\nRuntimeError: boom\nProcess exited with code (1)\n") == \
        "RuntimeError: boom"


def test_summarize_names_the_measures_of_the_analysis_json():
    analysis = {"trackers": {"other": {}, "mf2": {}}, "results": {
        "baseline": {"parameters": {"analyses": [
            {"name": "ar", "type": "vot.analysis.supervised.AverageAccuracyRobustness"},
            {"name": "curve", "type": "vot.analysis.supervised.EAOCurve"},
            {"name": "eaoscore", "type": "vot.analysis.supervised.EAOScore"}]},
            "results": [[[0.1, 9.0, [0.0, 0.1], 16.0], [0.6, 1.5, [0.2, 0.6], 16.0]], [[[1]], [[2]]],
                        [[0.2], [math.nan]]]},
        "unsupervised": {"parameters": {"analyses": [
            {"name": "accuracy", "type": "vot.analysis.accuracy.AverageAccuracy"}]}, "results": [[[0.3], [0.5]]]}}}
    summary = toolkit.summarize(analysis, "mf2")
    assert summary["unsupervised"] == {"accuracy": 0.5}
    assert summary["baseline"]["accuracy"] == 0.6 and summary["baseline"]["robustness"] == 1.5
    assert math.isnan(summary["baseline"]["eao"]) and set(summary["baseline"]) == {"accuracy", "robustness", "eao"}
    with pytest.raises(toolkit.ToolkitError, match="no results of tracker 'x'"):
        toolkit.summarize(analysis, "x")


def test_read_trajectory_text_and_binary(tmp_path):
    text = tmp_path / "s_001.txt"
    text.write_text("1\n10.5,20.25,30.0,40.0\n2\n0\n")
    binary = tmp_path / "s_001.bin"
    binary.write_bytes(struct.pack("<hI", 1, 4) + struct.pack("<BI", 0, 1) + struct.pack("<Bffff", 1, 10.5, 20.25,
                                                                                         30, 40)
                       + struct.pack("<BI", 0, 2) + struct.pack("<BI", 0, 0))
    for path in (text, binary):
        boxes, codes = toolkit.read_trajectory(path)
        assert codes.tolist() == [1, -1, 2, 0]
        assert boxes[1].tolist() == [10.5, 20.25, 30.0, 40.0] and np.isnan(boxes[[0, 2, 3]]).all()


def test_toolkit_requirements_pin_the_versions_that_work():
    assert toolkit.toolkit_requirements() == ["vot-toolkit==0.7.4", "attributee==0.1.9", "vot-trax==4.0.2"]


def test_a_missing_toolkit_names_the_way_to_create_it(tmp_path):
    with pytest.raises(toolkit.ToolkitError, match="make vot-env"):
        toolkit.find_toolkit(tmp_path / "nothing")


# --------------------------------------------------------------------------------------------- TraX loop
Request = namedtuple("Request", "type image objects properties")


class FakeServer:
    """Replays requests and records replies as (x, y, w, h, properties)."""

    def __init__(self, requests):
        self.requests, self.replies = list(requests), []

    def wait(self):
        return self.requests.pop(0)

    def status(self, objects):
        (region, properties), = objects
        self.replies.append((*region.bounds(), properties))


class FakeImage:
    def __init__(self, path):
        self._path = path

    def path(self):
        return self._path


class FakeTracker:
    def __init__(self, score):
        self.calls, self.score = [], score

    def initialize(self, image, box_xywh):
        self.calls.append(("init", image, tuple(box_xywh)))

    def track(self, image):
        self.calls.append(("track", image))
        return TrackOutput([1.5, 2.25, 3.0, 4.0], self.score)


def test_serve_answers_initialize_and_frames_with_box_and_confidence():
    trax = pytest.importorskip("trax", reason="vot-trax is not installed here (pip install -e '.[vot]')")
    from trax.region import Rectangle
    rect = Rectangle.create(5, 6, 7, 8)
    requests = [Request(trax.TraxStatus.INITIALIZE, {"color": FakeImage("a.jpg")}, [(rect, {})], {}),
                Request(trax.TraxStatus.FRAME, {"color": FakeImage("b.jpg")}, None, {}),
                Request(trax.TraxStatus.INITIALIZE, {"color": FakeImage("c.jpg")}, [(rect, {})], {}),
                Request(trax.TraxStatus.FRAME, {"color": FakeImage("d.jpg")}, [], {}),
                Request(trax.TraxStatus.QUIT, None, None, {})]
    fake, tracker = FakeServer(requests), FakeTracker(0.25)
    assert server.serve(tracker, fake, read_image=lambda path: f"pixels of {path}") == 2
    assert tracker.calls == [("init", "pixels of a.jpg", (5.0, 6.0, 7.0, 8.0)), ("track", "pixels of b.jpg"),
                             ("init", "pixels of c.jpg", (5.0, 6.0, 7.0, 8.0)), ("track", "pixels of d.jpg")]
    assert fake.replies[1] == (1.5, 2.25, 3.0, 4.0, {"confidence": "0.250000"})
    no_score = FakeServer(requests[:2] + requests[-1:])
    server.serve(FakeTracker(None), no_score, read_image=str)
    assert no_score.replies[1][4] == {}  # no score head: no confidence


def test_serve_refuses_several_objects_with_one_line():
    trax = pytest.importorskip("trax", reason="vot-trax is not installed here (pip install -e '.[vot]')")
    from trax.region import Rectangle
    two = [(Rectangle.create(1, 1, 2, 2), {}), (Rectangle.create(3, 3, 2, 2), {})]
    fake = FakeServer([Request(trax.TraxStatus.INITIALIZE, {"color": FakeImage("a.jpg")}, two, {})])
    with pytest.raises(server.RequestError, match=r"initialize \(a.jpg\): this tracker follows one object, the "
                                                  "request has 2"):
        server.serve(FakeTracker(0.5), fake, read_image=str)



def test_server_user_error_is_one_prefixed_line(tmp_path, capsys, restore_root_logger):
    pytest.importorskip("trax", reason="vot-trax is not installed here (pip install -e '.[vot]')")
    files = write_tiny_model_files(tmp_path)
    status = server.main(["--config", str(files["config"]), "--checkpoint", str(files["deeper"]), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(server.ERROR_PREFIX) and "deeper.pth.tar" in err[-1]
    assert toolkit.tracker_error_line("\n".join(err)) == err[-1]
