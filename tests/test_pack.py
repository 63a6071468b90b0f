"""GOT-10k / TrackingNet packing and the submission validator."""
import zipfile
from pathlib import Path

import pytest

from mixformerv2.evaluation.packing import (Expectation, PackError, check_submission, default_expectation, pack,
                                            write_zip)
from tool_loader import load_tool

FRAMES = 5



def _write_results(folder: Path, names, frames=FRAMES):
    """Result files as tools/test.py writes them (full-precision boxes, run.json with the box rule)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        rows = [f"{10 + i + k + 0.996!r},{20 + i!r}.0,30.0,40.5" for i in range(frames)]
        (folder / f"{name}.txt").write_text("\n".join(rows) + "\n")
        (folder / f"{name}_time.txt").write_text("".join(f"{0.01 + i / 1000:.6f}\n" for i in range(frames)))
    (folder / "run.json").write_text('{"box_rule": "truncate_int"}\n')


GOT = [f"GOT-10k_Test_{i:06d}" for i in (1, 2, 3)]
TN = ["-Dz7OIf54b0_0", "abc_1", "xyz_2"]


def _expect(names):
    return Expectation(len(names), tuple(names), {n: FRAMES for n in names})


@pytest.fixture
def got_zip(tmp_path):
    _write_results(tmp_path / "results", GOT)
    out = tmp_path / "got.zip"
    assert pack("got10k", tmp_path / "results", out, _expect(GOT)) == []
    return out


def _members(zip_path):
    with zipfile.ZipFile(zip_path) as zf:
        return {i.filename: zf.read(i).decode() for i in zf.infolist() if not i.is_dir()}


def test_got10k_layout(got_zip):
    members = _members(got_zip)
    assert sorted(members) == sorted([f"{n}/{n}_001.txt" for n in GOT] + [f"{n}/{n}_time.txt" for n in GOT])
    first = members[f"{GOT[0]}/{GOT[0]}_001.txt"].splitlines()
    assert len(first) == FRAMES and first[0] == "10,20,30,40"  # truncated as the official scripts pack
    assert check_submission(got_zip, "got10k", _expect(GOT)) == []
    assert check_submission(got_zip, None, _expect(GOT)) == []  # kind guessed from the layout


def test_trackingnet_layout(tmp_path):
    _write_results(tmp_path / "results", TN)
    out = tmp_path / "tn.zip"
    assert pack("trackingnet", tmp_path / "results", out, _expect(TN)) == []
    assert sorted(_members(out)) == sorted(f"{n}.txt" for n in TN)
    assert check_submission(out, "trackingnet", _expect(TN)) == []


def test_official_counts():
    got = default_expectation("got10k")
    assert got.count == 180 and got.names[0] == "GOT-10k_Test_000001" and got.names[-1] == "GOT-10k_Test_000180"
    assert default_expectation("trackingnet").count == 511
    assert default_expectation("trackingnet", expected_count=3) == Expectation(3)


def _broken(tmp_path, members, change):
    members = dict(members)
    change(members)
    out = tmp_path / "broken.zip"
    write_zip(members, out)
    return out


BOX = f"{GOT[1]}/{GOT[1]}_001.txt"
TIME = f"{GOT[1]}/{GOT[1]}_time.txt"


def _replace_line(text, index, line):
    lines = text.splitlines()
    lines[index] = line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("change, reason", [
    (lambda m: [m.pop(BOX), m.pop(TIME)], "missing: GOT-10k_Test_000002"),
    (lambda m: m.update({BOX: m[BOX] + "1,2,3,4\n"}), "6 lines but the sequence has 5 frames"),
    (lambda m: m.update({BOX: _replace_line(m[BOX], 2, "1,2,nan,4")}), "NaN"),
    (lambda m: m.update({BOX: _replace_line(m[BOX], 2, "1,2,-3,4")}), "negative width or height"),
    (lambda m: m.update({BOX: _replace_line(m[BOX], 2, "1,2,abc,4")}), "non-numeric"),
    (lambda m: m.update({BOX: _replace_line(m[BOX], 2, "1 2 3 4")}), "4 comma-separated values"),
    (lambda m: m.pop(TIME), "time file missing"),
    (lambda m: m.update({TIME: "0.1\n"}), "lines but the box file has 5"),
    (lambda m: [m.update({f"submit/{k}": m.pop(k)}) for k in list(m)], "extra folder 'submit/'"),
])
def test_broken_got10k_submissions_fail_with_the_reason(tmp_path, got_zip, change, reason):
    broken = _broken(tmp_path, _members(got_zip), change)
    problems = check_submission(broken, "got10k", _expect(GOT))
    assert problems and any(reason in p for p in problems), problems


def test_broken_trackingnet_submission(tmp_path):
    _write_results(tmp_path / "results", TN)
    good = tmp_path / "tn.zip"
    pack("trackingnet", tmp_path / "results", good, _expect(TN))
    members = _members(good)
    del members["abc_1.txt"]
    problems = check_submission(_broken(tmp_path, members, lambda m: None), "trackingnet", _expect(TN))
    assert any("missing: abc_1" in p for p in problems)
    counted = check_submission(good, "trackingnet", Expectation(511))
    assert any("3 sequences, expected 511" in p for p in counted)


def test_pack_refuses_incomplete_results(tmp_path):
    _write_results(tmp_path / "results", GOT[:2])
    (tmp_path / "results" / f"{GOT[0]}_time.txt").unlink()
    out = tmp_path / "got.zip"
    with pytest.raises(PackError) as err:
        pack("got10k", tmp_path / "results", out, _expect(GOT))
    assert GOT[2] in str(err.value) and "time file" in str(err.value)
    assert not out.exists()


def test_cli_packs_what_the_library_packs_and_reports_the_validators_problems(tmp_path, capsys):
    tool = load_tool("pack")
    _write_results(tmp_path / "results", GOT)
    out = tmp_path / "sub.zip"
    common = ["--expected-count", "3"]
    assert tool.main(["got10k", "--results", str(tmp_path / "results"), "--out", str(out), *common]) == 0
    assert pack("got10k", tmp_path / "results", tmp_path / "library.zip", Expectation(3)) == []
    assert _members(out) == _members(tmp_path / "library.zip")
    assert tool.main(["--check", str(out), *common]) == 0
    members = _members(out)
    members[BOX] = _replace_line(members[BOX], 0, "1,2,nan,4")
    broken = _broken(tmp_path, members, lambda m: None)
    problems = check_submission(broken, "got10k", Expectation(3))
    assert problems
    capsys.readouterr()
    assert tool.main(["--check", str(broken), "--kind", "got10k", *common]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert all(problem in printed for problem in problems)  # every problem the validator finds, one per line
    assert tool.main(["--check", str(tmp_path / "nothing.zip")]) == 1
    printed = capsys.readouterr()
    assert "nothing.zip" in printed.out + printed.err  # the error names the file
