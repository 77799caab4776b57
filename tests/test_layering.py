"""The layering of the packages, as a fresh interpreter imports them.

``models`` and ``data_pipeline`` stand alone; the training engine, the configuration, the search
spaces and the results tables run without ray; the configuration, the spaces, the results and the
``egotune results`` command run without torch too (they are what a laptop reading a cluster's
tables imports). ``lint-imports`` (``make lint``) checks the same contracts on the source, that
only ``tuner.tune`` imports ray, and that the modules of ``tuner`` import each other without
cycles. No module outside a package imports that package's private modules.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

FORBIDDEN = {
    "models": ("ray", "data_pipeline", "tuner"),
    "data_pipeline": ("ray", "models", "tuner"),
    "tuner.training.engine": ("ray",),
    "tuner.training.checkpoints.files": ("ray",),
    "tuner.training.config": ("ray", "torch", "models"),
    "tuner.training.recipes": ("ray", "torch", "models"),
    "tuner.tune.search": ("ray",),
    "tuner.spaces": ("ray", "torch", "models"),
    "tuner.results": ("ray", "torch", "models", "optuna"),
    "tuner.cli.results": ("ray", "torch", "models", "optuna"),
    "tuner.ui": ("ray", "torch", "models", "optuna"),
    "tuner.cli.ui": ("ray", "torch", "models", "optuna"),
}
"""Module -> top-level packages that importing it must leave out of ``sys.modules``."""
ROOT = Path(__file__).resolve().parents[1]
OURS = ("tuner", "models", "data_pipeline", "bench", "tests")
"""The project's packages: the private-module rule holds for all of them (tests included)."""


def private_imports(path: Path) -> list[str]:
    """``line: module`` for each private module of another package that ``path`` imports: a
    dotted name with a part ``_name`` (not ``__init__``) whose package does not hold ``path``."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module
    package = package if path.name == "__init__.py" else package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] not in OURS:
                continue
            for depth, part in enumerate(parts[1:], start=1):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:depth])
                    inside = package == owner or package.startswith(f"{owner}.")
                    line = f"{node.lineno}: {'.'.join(parts[: depth + 1])}"
                    if not inside and _is_module(parts[: depth + 1]) and line not in found:
                        found.append(line)
                    break
    return found


def _is_module(parts: list[str]) -> bool:
    folder = ROOT.joinpath(*parts)
    return folder.with_suffix(".py").is_file() or (folder / "__init__.py").is_file()


def test_no_module_imports_another_package_s_private_modules():
    sources = [p for root in OURS for p in sorted((ROOT / root).rglob("*.py"))]
    assert len(sources) > 150
    found = {str(p.relative_to(ROOT)): private_imports(p) for p in sources}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_private_module_rule_finds_a_private_import(tmp_path):
    module = ROOT / "tests" / "_private_import_probe.py"
    module.write_text("from tuner.results._store import read_trials\nimport tuner.ui._app\n")
    try:
        assert private_imports(module) == ["1: tuner.results._store", "2: tuner.ui._app"]
    finally:
        module.unlink()


@cache
def imported_by(module: str) -> frozenset[str]:
    """Top-level packages in ``sys.modules`` after a fresh interpreter imports ``module``."""
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return frozenset(json.loads(done.stdout))


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_module_leaves_out_what_its_layer_must_not_import(module):
    assert not imported_by(module) & set(FORBIDDEN[module])


def test_runtime_versions_of_an_experiment_record_leave_torch_and_ray_out():
    code = (
        "import sys, tuner.results._metadata as m; m.runtime_versions(); "
        "print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


HEAVY = ("torch", "torchvision", "data_pipeline", "models", "ray")
"""What the ``egotune`` command must not import before a handler needs it."""


def test_building_the_parser_imports_no_table_library():
    """pandas alone takes about half of ``egotune --help``'s start: only handlers import it."""
    code = (
        "import json, sys; from tuner.cli import build_parser; build_parser(); "
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not set(json.loads(done.stdout)) & {"pandas", "numpy", "pyarrow", *HEAVY}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["spaces", "list"],
        ["spaces", "show", "fig10_ms_classification_grid"],
        ["results", "list"],
        ["train", "--help"],
        ["search", "--help"],
        ["data", "check", "--help"],
    ],
    ids=" ".join,
)
def test_command_parses_and_answers_without_torch_or_ray(argv, tmp_path):
    code = (
        "import contextlib, io, json, sys\n"
        "from tuner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        status = main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        status = exc.code\n"
        "print(json.dumps([status, sorted({n.split('.')[0] for n in sys.modules})]))"
    )
    env = {**os.environ, "EGOTUNE_STORAGE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    status, loaded = json.loads(done.stdout)
    assert status == 0
    assert not set(loaded) & set(HEAVY)
