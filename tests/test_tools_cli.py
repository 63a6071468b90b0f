"""The tools' shared command-line plumbing: user errors as one stderr line with exit status 2, --debug tracebacks,
the shared flags, device checks and the one logging set-up."""
from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dataset_fixtures as fx
from model_fixtures import write_tiny_model_files
from mixformerv2.config import ConfigError
from mixformerv2.tracking.workers import TrackerSetupError
from mixformerv2.utils import cli
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]


tool = functools.cache(load_tool)


def assert_one_error_line(captured, *needles: str) -> str:
    """stderr ends with exactly one ``<tool>: error: ...`` line naming every needle, and holds no traceback."""
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1, captured.err
    assert captured.err.rstrip("\n").splitlines()[-1] == errors[0]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny-model config, a checkpoint that fits it, one that does not, and a LaSOT-format copy."""
    root = tmp_path_factory.mktemp("cli")
    made = write_tiny_model_files(root)
    return {"config": made["config"], "good": made["good"], "other": made["deeper"],
            "lasot": fx.make_lasot(root / "lasot")}



@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _test_args(files, tmp_path, *extra, checkpoint: str | Path = "good"):
    return ["--config", str(files["config"]), "--checkpoint", str(files.get(checkpoint, checkpoint)), "--dataset",
            "lasot", "--root", str(files["lasot"]), "--results", str(tmp_path), "--device", "cpu", "--no-progress",
            *extra]


# ------------------------------------------------------------------------------------------- tools/test.py
def test_test_tool_config_errors_are_one_line(files, tmp_path, capsys):
    test = tool("test")
    assert test.main(_test_args(files, tmp_path, "--set", "test.serch_factor=4")) == 2
    assert_one_error_line(capsys.readouterr(), "test.serch_factor")
    missing = tmp_path / "none.yaml"
    assert test.main(["--config", str(missing), *_test_args(files, tmp_path)[2:]]) == 2
    assert_one_error_line(capsys.readouterr(), str(missing))


def test_test_tool_checkpoint_errors_are_one_line(files, tmp_path, capsys):
    """A checkpoint of another model (the README's case) and a missing one."""
    test = tool("test")
    assert test.main(_test_args(files, tmp_path / "a", checkpoint="other")) == 2
    assert_one_error_line(capsys.readouterr(), "deeper.pth.tar", "does not fit")
    missing = tmp_path / "missing.pth.tar"
    assert test.main(_test_args(files, tmp_path / "b", checkpoint=missing)) == 2
    assert_one_error_line(capsys.readouterr(), str(missing))


def test_cuda_without_gpu_is_refused_up_front(files, tmp_path, capsys, no_cuda):
    args = _test_args(files, tmp_path)
    args[args.index("--device") + 1] = "cuda"
    assert tool("test").main(args) == 2
    assert_one_error_line(capsys.readouterr(), "--device cuda", "not available")
    assert not any(tmp_path.iterdir())  # refused before anything was written
    assert tool("profile_model").main(["--config", str(files["config"]), "--device", "cuda", "--runs", "1"]) == 2
    assert_one_error_line(capsys.readouterr(), "--device cuda")


def test_debug_shows_the_traceback(files, tmp_path):
    with pytest.raises(ConfigError, match="serch_factor"):
        tool("test").main(_test_args(files, tmp_path, "--set", "test.serch_factor=4", "--debug"))
    with pytest.raises(TrackerSetupError, match="CheckpointError: .*deeper.pth.tar"):  # raised in the runner
        tool("test").main(_test_args(files, tmp_path, "--debug", checkpoint="other"))


# ------------------------------------------------------------------------------------------------- tools/demo.py
def _demo_args(files, tmp_path, *source, box="1,2,3,4"):
    return [*source, "--init-box", box, "--config", str(files["config"]), "--checkpoint", str(files["good"]),
            "--out", str(tmp_path / "out.mp4"), "--device", "cpu"]


@pytest.mark.parametrize("box, needle", [("1,2,3", "'1,2,3'"), ("a,b,c,d", "'a,b,c,d'"), ("1,2,0,4", "'1,2,0,4'"),
                                         ("1,2,nan,4", "'1,2,nan,4'"), ("100,100,5,5", "outside the first frame")])
def test_demo_bad_init_box(files, tmp_path, capsys, box, needle):
    frames = files["lasot"] / "airplane" / "airplane-1" / "img"
    assert tool("demo").main(_demo_args(files, tmp_path, "--frames", str(frames), box=box)) == 2
    assert_one_error_line(capsys.readouterr(), "--init-box", needle)
    assert not (tmp_path / "out.csv").exists()


def test_demo_bad_sources(files, tmp_path, capsys):
    demo = tool("demo")
    assert demo.main(_demo_args(files, tmp_path, "--video", str(tmp_path / "none.mp4"))) == 2
    assert_one_error_line(capsys.readouterr(), "--video", "none.mp4")
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video\n")
    assert demo.main(_demo_args(files, tmp_path, "--video", str(not_a_video))) == 2
    assert_one_error_line(capsys.readouterr(), "notes.mp4")
    assert demo.main(_demo_args(files, tmp_path, "--frames", str(tmp_path))) == 2  # a folder without images
    assert_one_error_line(capsys.readouterr(), "--frames", "no image files")


# ------------------------------------------------------------------------------------------------- other tools
def test_other_tools_user_errors(files, tmp_path, capsys):
    missing = tmp_path / "missing"
    cases = [
        ("check_dataset", ["--dataset", "got10k_val", "--root", str(missing)], str(missing)),
        ("analyze", ["--dataset", "got10k_val", "--root", str(missing), "--results", str(tmp_path), "--trackers",
                     "T"], str(missing)),
        ("analyze", ["--dataset", "vot2020", "--results", str(tmp_path), "--trackers", "T"], "no evaluation rules"),
        ("pack", ["got10k", "--results", str(missing), "--out", str(tmp_path / "s.zip")], str(missing)),
        ("pack", ["--check", str(tmp_path / "s.zip"), "--kind", "got10k", "--root", str(missing)], str(missing)),
        ("reproduce", ["--config", str(missing / "c.yaml"), "--checkpoint", "x", "--device", "cpu"], "c.yaml"),
        ("profile_model", ["--config", str(files["config"]), "--set", "model.depht=2"], "model.depht"),
        ("profile_data", ["--config", str(files["config"]), "--data-root", str(missing)], "make_synthetic.py"),
        ("make_synthetic", ["--out", str(tmp_path / "syn"), "--size", "320by240"], "--size '320by240'"),
        ("parity", [str(missing / "golden.pt")], "golden.pt: No such file or directory"),
    ]
    for name, argv, needle in cases:
        assert tool(name).main(argv) == 2, name
        assert_one_error_line(capsys.readouterr(), f"{name}.py: error:", needle)
    assert not (tmp_path / "syn").exists()


def test_exit_status_and_traceback_in_a_real_process(tmp_path):
    """The same error as a user sees it: exit status 2 and one line; with --debug the traceback (status 1)."""
    command = [sys.executable, str(REPO / "tools" / "check_dataset.py"), "--dataset", "got10k_val", "--root",
               str(tmp_path / "nothing")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert plain.returncode == 2
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("check_dataset.py: error: got10k_val: ")
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, timeout=120, env=env)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "UserError" in debug.stderr and "FileNotFoundError" in debug.stderr


# ------------------------------------------------------------------------------------------------- utils.cli
def test_cli_main_statuses(capsys):
    @cli.cli_main
    def main(argv=None):
        kind = argv[0]
        if kind == "user":
            raise UserError("cfg.yaml: first line\n  second line")
        if kind == "missing":
            open("/nonexistent/dir/file.txt")
        if kind == "bug":
            raise ZeroDivisionError("a bug, not a user error")
        if kind == "interrupt":
            raise KeyboardInterrupt
        return None

    assert main(["ok"]) == 0
    assert main(["user"]) == 2
    assert capsys.readouterr().err == "test_tools_cli.py: error: cfg.yaml: first line second line\n"
    assert main(["missing"]) == 2
    assert capsys.readouterr().err == ("test_tools_cli.py: error: /nonexistent/dir/file.txt: "
                                       "No such file or directory\n")
    assert main(["interrupt"]) == 130
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        main(["bug"])
    with pytest.raises(UserError):
        main(["user", "--debug"])
    with pytest.raises(UserError):
        main(["user", "--deb"])  # argparse accepts the abbreviation, so does cli_main


def test_user_error_classes_exist():
    """Every (module, class) the tools treat as a user error is importable (a rename would silently drop it)."""
    for module_name, class_name in cli.USER_ERROR_CLASSES:
        cls = getattr(importlib.import_module(module_name), class_name)
        assert issubclass(cls, Exception) and cls in cli.user_error_types(), (module_name, class_name)


def test_shared_flags():
    parser = cli.make_parser("doc")
    cli.add_config_args(parser)
    cli.add_device_arg(parser)
    args = parser.parse_args(["--config", "c.yaml", "--set", "a=1", "b=2", "--set", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"] and args.device is None and not args.debug
    assert parser.parse_args(["--config", "c.yaml"]).overrides == []
    assert parser.parse_args(["--config", "c.yaml", "--debug", "--device", "cpu"]).debug


# ------------------------------------------------------------------------------------------------ utils.device
def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="--device 'gpu0': not a torch device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(UserError, match="--device cuda:0: CUDA is not available"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


# --------------------------------------------------------------------------------------------------- utils.log
def test_setup_logging_rank_zero_stderr_once_and_file(tmp_path, capsys):
    setup_logging(logging.INFO)
    setup_logging(logging.INFO, log_file=tmp_path / "run.log")  # replaces the first: one record, printed once
    logging.getLogger("mixformerv2.something").info("hello %d", 7)
    logging.getLogger("mixformerv2.something").debug("hidden")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("hello 7") == 1 and "INFO mixformerv2.something: hello 7" in captured.err
    assert "hidden" not in captured.err
    setup_logging(logging.DEBUG)  # closes the file handler
    assert (tmp_path / "run.log").read_text().count("hello 7") == 1


def test_setup_logging_other_ranks_only_write_their_file(tmp_path, capsys):
    setup_logging(logging.INFO, rank=1, log_file=tmp_path / "run.log")
    logging.getLogger("mixformerv2.train").warning("rank one speaking")
    assert capsys.readouterr().err == ""
    setup_logging(logging.INFO)
    assert "rank one speaking" in (tmp_path / "run.log.rank1").read_text()
    assert not (tmp_path / "run.log").exists()


def test_tools_share_one_parser_and_logging_setup():
    """No tool defines its own --config/--set/--device or calls logging.basicConfig: they use utils.cli/utils.log."""
    paths = [*sorted((REPO / "mixformerv2" / "commands").glob("[!_]*.py")), *sorted((REPO / "tools").glob("*.py"))]
    for path in paths:
        text = path.read_text()
        if path.parent.name == "tools" and "A thin wrapper" in text:
            continue
        for pattern in ('add_argument("--set"', 'add_argument("--device"', 'add_argument("--config"',
                        "basicConfig(", "ArgumentParser("):
            assert pattern not in text, f"{path.name}: {pattern}"
        assert "@cli_main" in text and "setup_logging(" in text, path.name


def test_parser_help_keeps_the_examples(capsys):
    parser = cli.make_parser(tool("analyze").__doc__)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert "--results results --trackers" in capsys.readouterr().out
    assert isinstance(parser, argparse.ArgumentParser)


def test_command_docstrings_keep_their_line_breaks():
    """A backslash at the end of a line in a plain docstring joins it to the next one, so a shell example with a
    ``\\`` continuation loses its line break in ``--help``: the docstring must have as many lines as its source."""
    import ast

    import mixformerv2.commands as commands

    for path in sorted(Path(commands.__file__).parent.glob("*.py")):
        module = ast.parse(path.read_text())
        node = module.body[0] if module.body else None
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        source_lines = node.end_lineno - node.lineno + 1
        assert node.value.value.count("\n") + 1 == source_lines, f"{path.name}: a line of its docstring ends in '\\'"
