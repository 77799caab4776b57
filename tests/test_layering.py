"""The layering of the packages, as a fresh interpreter imports them.

``models`` and ``data_pipeline`` stand alone; the training engine, the configuration, the search
spaces and the results tables run without ray; the configuration, the spaces, the results and the
``egotune results`` command run without torch too (they are what a laptop reading a cluster's
tables imports). ``lint-imports`` (``make lint``) checks the same contracts on the source, and
that the modules of ``tuner`` import each other without cycles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache

import pytest

FORBIDDEN = {
    "models": ("ray", "data_pipeline", "tuner"),
    "data_pipeline": ("ray", "models", "tuner"),
    "tuner.training.engine": ("ray",),
    "tuner.training.checkpoints.files": ("ray",),
    "tuner.training.config": ("ray", "torch", "models"),
    "tuner.spaces": ("ray", "torch", "models"),
    "tuner.results": ("ray", "torch", "models", "optuna"),
    "tuner.cli.results": ("ray", "torch", "models", "optuna"),
    "tuner.ui": ("ray", "torch", "models", "optuna"),
    "tuner.cli.ui": ("ray", "torch", "models", "optuna"),
}
"""Module -> top-level packages that importing it must leave out of ``sys.modules``."""


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
