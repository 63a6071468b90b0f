"""Tools that explain themselves: every flag has help, reports state their units, the profiler labels GMACs, the
demo says where its outputs are, pack --check says which server a zip is for (read from its contents)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from model_fixtures import TINY, write_tiny_model_files
import dataset_fixtures as fx
from mixformerv2.evaluation.packing import write_zip
from mixformerv2.evaluation.report import SCORE_UNITS
from mixformerv2.profiling import gmacs, profile_model
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
COMMANDS = sorted(p.stem for p in (REPO / "mixformerv2" / "commands").glob("[!_]*.py"))


class _Parsed(Exception):
    pass


def _parsers(name: str, monkeypatch) -> list[argparse.ArgumentParser]:
    """The parser a tool builds (and its sub-command parsers), caught when the tool parses its arguments."""
    caught = []

    def catch(self, args=None, namespace=None):
        caught.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_Parsed):
        load_tool(name).main([])
    monkeypatch.undo()
    parsers = list(caught)
    for parser in caught:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
    return parsers


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_has_help(name, monkeypatch):
    missing = [f"{parser.prog}: {'/'.join(action.option_strings) or action.dest}"
               for parser in _parsers(name, monkeypatch) for action in parser._actions
               if not action.help and not isinstance(action, argparse._SubParsersAction)]
    assert not missing, missing


def test_score_units_name_every_score():
    percent = set(SCORE_UNITS["percent (0-100)"])
    assert {"auc", "op50", "op75", "precision", "norm_precision", "ao", "sr50", "sr75"} <= percent


def test_profile_reports_gmacs_beside_gflops():
    assert gmacs(56.3) == pytest.approx(28.15)  # the paper's MixFormerV2-B "FLOPs" are MACs
    result = profile_model(TINY, "cpu", runs=2)
    assert result["gmacs_full"] == pytest.approx(result["gflops_full"] / 2)
    assert result["gmacs_cached"] == pytest.approx(result["gflops_cached"] / 2)
    assert "multiply-accumulates" in result["units"]["gmacs_*"] and "milliseconds" in result["units"]["ms_*"]


def test_demo_says_where_it_wrote(tmp_path, caplog):
    made = write_tiny_model_files(tmp_path)
    frames = fx.make_lasot(tmp_path / "lasot") / "airplane" / "airplane-1" / "img"
    out = tmp_path / "video" / "out.mp4"
    with caplog.at_level(logging.INFO):
        assert load_tool("demo").main(["--frames", str(frames), "--init-box", "1,1,4,4", "--config",
                                       str(made["config"]), "--random-init", "--out", str(out), "--device",
                                       "cpu"]) == 0
    said = [r.getMessage() for r in caplog.records if "annotated video" in r.getMessage()]
    assert said == [f"4 frames: annotated video {out.resolve()}, boxes and scores {out.with_suffix('.csv').resolve()}"]
    assert len(out.with_suffix(".csv").read_text().splitlines()) == 5


def test_pack_check_reads_the_server_from_the_zip_and_refuses_to_guess(tmp_path, capsys):
    pack = load_tool("pack")
    got = tmp_path / "got.zip"
    write_zip({"GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt": "1,2,3,4\n",
               "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt": "0.01\n"}, got)
    assert pack.main(["--check", str(got), "--expected-count", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{got}: a got10k submission, read from its contents (1 per-sequence <seq>_001.txt file(s)" in out
    tn = tmp_path / "tn.zip"
    write_zip({"abc_1.txt": "1,2,3,4\n"}, tn)
    assert pack.main(["--check", str(tn), "--expected-count", "1"]) == 0
    assert "a trackingnet submission, read from its contents" in capsys.readouterr().out
    odd = tmp_path / "odd.zip"
    write_zip({"readme.md": "hello\n", "a/b/c.txt": "1,2,3,4\n"}, odd)
    assert pack.main(["--check", str(odd)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pack.py: error: {odd}: cannot tell which server")
    assert "--kind got10k or --kind trackingnet" in err[0]
