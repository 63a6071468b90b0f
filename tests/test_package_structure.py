"""Package structure: the dependency direction of STYLE.md §3.3, no import cycle, a lazy public API, no sys.path
edits, no tool shadowing the standard library, and the code version outside a git checkout."""
from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from mixformerv2.utils.version import code_version

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mixformerv2"

# Units of the package: top-level modules and subpackages, plus leaf modules that other units may import on their
# own. Each unit may import itself, ``utils`` and the units listed here, nothing else.
#
# * ``utils`` is the foundation: it imports nothing from the package and every unit may use it (``config`` does:
#   ``dump_config`` writes atomically with ``utils.io``).
# * ``boxes``, ``crop``, ``imaging`` (the one image normalisation) and ``data.names`` (the benchmark-name table)
#   are leaves; ``config`` may import only ``data.names``.
# * ``models`` reads ``config`` for ``ModelConfig`` (STYLE lists only ``boxes``; config is a leaf, so no cycle).
# * ``tracking`` runs the network through a backend of ``export`` (PyTorch, ONNX Runtime, OpenVINO).
# * ``golden`` and ``profiling`` sit beside the tools: they build models to compare or time them (``profiling``
#   times every backend and the whole tracker step), and no unit imports them.
# * The root ``__init__`` may name everything (lazily), and no unit imports the root.
LEAF_MODULES = ("data.names",)
ALLOWED = {
    "utils": set(),
    "boxes": set(),
    "crop": set(),
    "imaging": {"config"},  # the default mean/std live in config.schema, with the other defaults
    "data.names": set(),
    "config": {"data.names"},
    "models": {"boxes", "config"},
    "data": {"boxes", "crop", "config", "imaging", "data.names"},
    "evaluation": {"data", "boxes", "config", "data.names"},
    "tracking": {"models", "boxes", "crop", "config", "imaging", "data", "data.names", "evaluation", "export"},
    "train": {"models", "data", "config", "boxes", "crop", "imaging", "data.names"},
    "export": {"models", "boxes", "config", "crop", "imaging", "data"},  # int8 calibration cuts tracker crops
    "golden": {"models", "boxes", "crop", "config", "imaging", "train"},  # a check harness, like tools/
    "profiling": {"models", "config", "export", "tracking"},
    "vot": {"tracking", "data", "evaluation", "config", "data.names"},  # the VOT toolkit's entry, beside the tools
    # the command-line tools (console scripts): they wire everything together, and no unit imports them
    "commands": {"boxes", "crop", "imaging", "data.names", "config", "models", "data", "evaluation", "tracking",
                 "train", "export", "golden", "profiling", "vot"},
}
FORBIDDEN = {  # STYLE §3.3 said out loud (implied by ALLOWED; checked separately for a clear message)
    "tracking": {"train"},
    "evaluation": {"models", "tracking"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of the modules that ``path`` imports anywhere (module level, functions, TYPE_CHECKING);
    ``from package import submodule`` counts as importing the submodule."""
    known = package_modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    package = package.rsplit(".", 1)[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return found


def unit_of(module: str) -> str:
    """``mixformerv2.models.vit`` -> ``models``; ``mixformerv2.data.names`` -> ``data.names``; the root -> ''."""
    rest = module.split(".")[1:]
    for leaf in LEAF_MODULES:
        if rest[:len(leaf.split("."))] == leaf.split("."):
            return leaf
    return rest[0] if rest else ""


@cache
def module_graph() -> dict[str, set[str]]:
    """Package module -> the package modules it imports."""
    graph = {}
    for module, path in package_modules().items():
        graph[module] = {m for m in imported_modules(path, module) if m.split(".")[0] == "mixformerv2"} - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return path[path.index(succ):] + [succ]
            if succ not in state and (cycle := visit(succ, path)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_import_parser_resolves_relative_and_submodule_imports():
    graph = module_graph()
    assert "mixformerv2.evaluation.metrics" in graph["mixformerv2.evaluation.protocols"]  # from . import metrics
    assert "mixformerv2.models.vit" in graph["mixformerv2.models.mixformer"]  # from .vit import ...
    assert "mixformerv2.utils.device" in graph["mixformerv2.tracking.tracker"]  # from ..utils.device import ...
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dependency_direction():
    violations = []
    for module, targets in sorted(module_graph().items()):
        source = unit_of(module)
        for target in sorted(targets):
            dest = unit_of(target)
            if dest == source or dest == "utils" or source == "":
                continue
            if dest == "":
                violations.append(f"{module} imports the package root (the root imports everything: a cycle)")
            elif source == "utils":
                violations.append(f"{module} imports {target}: utils imports nothing else from the package")
            elif dest not in ALLOWED.get(source, set()) or dest in FORBIDDEN.get(source, set()):
                violations.append(f"{module} imports {target}: {source} may import only "
                                  f"{sorted(ALLOWED.get(source, set())) or 'nothing else'}")
    assert not violations, "\n".join(violations)


def test_every_unit_has_a_rule_and_the_rules_have_no_cycle():
    units = {unit_of(m) for m in package_modules()} - {""}
    assert units <= set(ALLOWED), f"units without a dependency rule: {sorted(units - set(ALLOWED))}"
    assert find_cycle(ALLOWED) is None
    for source, forbidden in FORBIDDEN.items():
        assert not ALLOWED[source] & forbidden


def test_no_import_cycle_between_modules():
    assert find_cycle(module_graph()) is None


def test_leaf_modules_import_nothing_from_the_package():
    """config may import data.names, which runs ``data/__init__.py`` first: that must stay empty of imports too."""
    for module in ("mixformerv2.data", "mixformerv2.utils", *(f"mixformerv2.{leaf}" for leaf in LEAF_MODULES)):
        if module in package_modules():
            assert not {m for m in module_graph()[module] if unit_of(m) != "utils"}, module


def test_nothing_imports_tools():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "tools").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n == "tools" or n.startswith("tools.") for n in names), path


def test_no_sys_path_edits():
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "tools").glob("*.py"), *(REPO / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name):
                assert node.value.id != "sys", f"{path}:{node.lineno}: edits or reads sys.path"


def test_no_tool_shadows_the_standard_library():
    """``python tools/x.py`` puts tools/ first on sys.path: tools/profile.py hid the stdlib profile module."""
    shadowing = [p.name for p in (REPO / "tools").glob("*.py") if p.stem in sys.stdlib_module_names]
    assert not shadowing


def test_evaluation_and_the_package_import_no_network():
    """A fresh interpreter: importing the package and the evaluation modules loads no model, tracker or torch; a
    public name is imported on first access (a stand-in for the models module keeps torch out) and cached."""
    heavy = ("mixformerv2.models", "mixformerv2.tracking", "torch")
    code = ("import sys, types, mixformerv2, mixformerv2.evaluation.protocols, mixformerv2.evaluation.report, "
            "mixformerv2.evaluation.results, mixformerv2.evaluation.packing\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
            "assert set(mixformerv2.__all__) <= set(dir(mixformerv2)) and 'build_model' not in vars(mixformerv2)\n"
            "sys.modules['mixformerv2.models'] = types.SimpleNamespace(build_model='stand-in')\n"
            "from mixformerv2 import build_model\n"
            "print(build_model, vars(mixformerv2)['build_model'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "stand-in stand-in"]


def test_public_api_names_the_real_objects():
    import importlib

    import mixformerv2

    for name in mixformerv2.__all__:
        if name != "__version__":
            value = getattr(mixformerv2, name)
            assert value is getattr(importlib.import_module(mixformerv2._LAZY[name]), name) and callable(value)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        mixformerv2.no_such_name


# --------------------------------------------------------------------------------------------- code version
def test_code_version_outside_a_git_checkout(tmp_path):
    info = code_version(tmp_path)
    assert info == {"package": info["package"], "git_commit": None, "git_dirty": None}
    assert info["package"] is None or info["package"].count(".") >= 1
    assert code_version(tmp_path / "missing")["git_commit"] is None


def test_code_version_of_a_git_checkout_and_of_an_untracked_folder_inside_one(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    try:
        subprocess.run([*git, "init", "-q", str(tmp_path)], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    source = tmp_path / "pkg"
    source.mkdir()
    (source / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "pkg/a.py"], cwd=tmp_path, check=True, capture_output=True, timeout=30)
    subprocess.run([*git, "commit", "-q", "-m", "c"], cwd=tmp_path, check=True, capture_output=True, timeout=30)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=30).stdout.strip()
    assert code_version(source) | {"package": None} == {"package": None, "git_commit": sha, "git_dirty": False}
    (source / "a.py").write_text("x = 2\n")
    assert code_version(source)["git_dirty"] is True
    # an installed copy in an untracked virtual environment inside some checkout is not that checkout's code
    venv = tmp_path / ".venv" / "lib" / "mixformerv2"
    venv.mkdir(parents=True)
    (venv / "__init__.py").write_text("")
    assert code_version(venv)["git_commit"] is None
