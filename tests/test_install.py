"""A real install: the wheel built from this checkout, installed into a fresh virtual environment (reusing the
installed torch, no network), runs a console script from outside the repository with a released config by name."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import dataset_fixtures as fx

REPO = Path(__file__).resolve().parents[1]
COMMANDS = REPO / "mixformerv2" / "commands"


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def test_console_scripts_name_every_command_and_the_tools_are_thin_wrappers():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    modules = sorted(p.stem for p in COMMANDS.glob("[!_]*.py"))
    assert sorted(scripts.values()) == sorted(f"mixformerv2.commands.{m}:main" for m in modules)
    for script, target in scripts.items():
        assert script == "mixformerv2-" + target.split(".")[-1].split(":")[0].replace("_", "-")
    for module in modules:
        wrapper = (REPO / "tools" / f"{module}.py").read_text()
        assert f"from mixformerv2.commands.{module} import main" in wrapper and len(wrapper.splitlines()) < 15


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, its python) with the wheel of this checkout installed; torch & co. seen from the current environment."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # building writes build/ and *.egg-info: not into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "mixformerv2", source / "mixformerv2", ignore=ignore)
    shutil.copytree(REPO / "configs", source / "configs", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"),
          str(source)])
    wheel = next((tmp / "dist").glob("mixformerv2-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the dependencies of the current environment, appended after the venv's own site-packages (its .pth files,
    # among them an editable install of this checkout, are not run: the wheel is what gets imported)
    (site / "parent_env.pth").write_text(str(Path(torch.__file__).resolve().parents[1]) + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    return venv, python, site


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_wheel_ships_the_released_configs_unchanged(installed):
    _, _, site = installed
    for name in ("mixformerv2_b", "mixformerv2_s", "mixvit_b_teacher"):
        assert (site / "mixformerv2" / "configs" / f"{name}.yaml").read_bytes() == \
            (REPO / "configs" / f"{name}.yaml").read_bytes()
    assert not (site / "mixformerv2" / "configs" / "paper").exists()
    assert (site / "mixformerv2" / "data" / "specs" / "lasot_test_split.txt").is_file()


def test_installed_command_runs_outside_the_repository(installed, tmp_path):
    venv, python, site = installed
    where = _run([str(python), "-c", "import mixformerv2; print(mixformerv2.__file__)"], cwd=tmp_path,
                 env=_clean_env()).stdout.strip()
    assert Path(where) == site / "mixformerv2" / "__init__.py"
    lasot = fx.make_lasot(tmp_path / "lasot")
    done = _run([str(venv / "bin" / "mixformerv2-test"), "--config", "mixformerv2_s", "--random-init", "--dataset",
                 "lasot", "--root", str(lasot), "--device", "cpu", "--no-progress", "--sequences", "rubicCube-1",
                 "--set", "test.search_factor=2.0"], cwd=tmp_path, env=_clean_env())
    assert re.search(r"1 sequences \(1 tracked, 0 already complete, 0 failed\), 3 frames tracked", done.stderr)
    assert len((tmp_path / "results" / "mixformerv2_s" / "lasot" / "rubicCube-1.txt").read_text().splitlines()) == 3
    helped = _run([str(python), "-m", "mixformerv2.commands.analyze", "--help"], cwd=tmp_path, env=_clean_env())
    assert "--protocol" in helped.stdout
