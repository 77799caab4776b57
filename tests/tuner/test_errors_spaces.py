"""Bad search-space files and override flags through ``spaces show`` and ``search``: one line on
stderr naming the file (with the line for broken YAML) and the key, exit status 2."""

from __future__ import annotations

import re

import pytest

from tests.console import error_line
from tuner.cli import main

TINY = "fixed: {model: ego_rnn, stage: 1, epochs: 4}\n"
SAMPLED = TINY + "sample: {lr: {loguniform: [1.0e-4, 1.0e-2]}}\n"
PREREQUISITE = """\
fixed: {model: ego_rnn, stage: 2}
prerequisites:
  stage1:
    provides: init_checkpoint
    requires: [stage0]
    config: {model: ego_rnn, stage: 1}
"""

BAD_FILES = [  # (file content, the key the message names, the rest of the message)
    pytest.param(
        "fixd: {model: ego_rnn}\n",
        "fixd",
        "unknown key (did you mean fixed?)",
        id="unknown top-level key",
    ),
    pytest.param(
        TINY + "grid: {lrr: [0.1, 0.01]}\n",
        "grid.lrr",
        "unknown key (did you mean lr?)",
        id="unknown key",
    ),
    pytest.param(
        "fixed: {model: ego_rnn, frames: seven}\n",
        "fixed.frames",
        "expected int, got 'seven'",
        id="wrong type",
    ),
    pytest.param(
        "fixed: {model: ego_rnn, milestones: 30}\n",
        "fixed.milestones",
        "expected a list of integers, got 30",
        id="wrong list type",
    ),
    pytest.param(
        TINY + "grid: {lr: []}\n",
        "grid.lr",
        "expected a non-empty list of values",
        id="empty grid list",
    ),
    pytest.param(
        "fixed: {model: ego_rnn2}\n", "fixed.model", "unknown model 'ego_rnn2'", id="unknown model"
    ),
    pytest.param(
        TINY + "scheduler: {algorithm: hyperband}\n",
        "scheduler.algorithm",
        "unknown scheduler 'hyperband' (known: grid, random, asha",
        id="unknown scheduler",
    ),
    pytest.param(
        SAMPLED + "scheduler: {algorithm: asha, num_samples: 2, metric: accuracy}\n",
        "scheduler.metric",
        "'accuracy' is not reported (known: val_acc",
        id="unknown metric",
    ),
    pytest.param(
        SAMPLED + "scheduler: {algorithm: asha, num_samples: 2, metric: val_accc}\n",
        "scheduler.metric",
        "'val_accc' is not reported (did you mean val_acc?)",
        id="misspelt metric",
    ),
    pytest.param(
        SAMPLED + "scheduler: {algorithm: random, num_samples: 2, metric: val_loss}\n",
        "scheduler.mode",
        "max contradicts metric val_loss; use mode: min",
        id="loss maximised",
    ),
    pytest.param(
        SAMPLED + "scheduler: {algorithm: asha, num_samples: 2, max_t: 3, grace_period: 5}\n",
        "scheduler.grace_period",
        "5 is larger than max_t 3",
        id="asha grace beyond max_t",
    ),
    pytest.param(
        TINY + "scheduler: {algorithm: grid, grace_period: 2}\n",
        "scheduler.grace_period",
        "only used by asha, not grid",
        id="asha setting under grid",
    ),
    pytest.param(
        TINY + "grid: {gamma: [0.1, 0.5]}\n"
        "sample: {lr: {loguniform: [1.0e-4, 1.0e-2]}}\n"
        "scheduler: {algorithm: optuna, num_samples: 2}\n",
        "grid.gamma",
        "optuna samples every searched key; use choice",
        id="optuna with grid axes",
    ),
    pytest.param(SAMPLED, "sample.lr", "the grid algorithm cannot sample", id="grid with samples"),
    pytest.param(
        SAMPLED + "scheduler: {algorithm: random}\n",
        "scheduler.num_samples",
        "required when keys are sampled",
        id="sampling without num_samples",
    ),
    pytest.param(
        "fixed: {model: ego_rnn, stage: both, init_checkpoint: /x.pt}\n",
        "",
        "init_checkpoint: not used with stage=both",
        id="init_checkpoint with stage both",
    ),
    pytest.param(
        PREREQUISITE,
        "prerequisites.stage1.requires",
        "unknown prerequisite 'stage0'",
        id="unknown prerequisite",
    ),
    pytest.param(
        "- model: ego_rnn\n", "", "expected a mapping at the top of the file", id="not a mapping"
    ),
    pytest.param(
        "fixed:\n  model: ego_rnn\n  milestones: [30, 70\ngrid: {lr: [0.1]}\n",
        "",
        "not valid YAML: line 4, column 5: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence that starts at line 3, column 15)",
        id="broken flow list",
    ),
    pytest.param(
        "fixed:\n\tmodel: ego_rnn\n",
        "",
        "not valid YAML: line 2, column 1: found character '\\t' that cannot start any token",
        id="tab indentation",
    ),
    pytest.param(
        "fixed: !!python/object/apply:os.system ['true']\n",
        "",
        "not valid YAML: line 1, column 8: could not determine a constructor",
        id="python tag",
    ),
]


@pytest.fixture
def no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_search(*args: object) -> None:
        raise AssertionError("the search must not start")

    monkeypatch.setattr("tuner.tune.search.run_search", run_search)


@pytest.mark.parametrize(("text", "key", "message"), BAD_FILES)
def test_a_bad_space_file_is_one_line_naming_file_and_key(
    text, key, message, tmp_path, no_search, capsys
):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    expected = f"egotune: error: {path}: {key}: {message}" if key else f"{path}: {message}"
    assert main(["spaces", "show", str(path)]) == 2
    assert expected in error_line(capsys.readouterr().err)
    assert main(["search", str(path), "--data", str(tmp_path), "--storage", str(tmp_path)]) == 2
    assert expected in error_line(capsys.readouterr().err)
    assert path.read_text() == text


def test_a_file_that_does_not_exist(tmp_path, no_search, capsys):
    path = tmp_path / "absent.yaml"
    assert main(["spaces", "show", str(path)]) == 2
    assert error_line(capsys.readouterr().err) == f"egotune: error: {path}: no such file"
    assert main(["search", str(path), "--data", str(tmp_path)]) == 2
    assert error_line(capsys.readouterr().err) == f"egotune: error: {path}: no such file"


def test_an_unknown_bundled_name_suggests_the_close_one(no_search, capsys):
    assert main(["spaces", "show", "fig10_ms_classification_grd"]) == 2
    assert error_line(capsys.readouterr().err) == (
        "egotune: error: fig10_ms_classification_grd: unknown search space; "
        "did you mean fig10_ms_classification_grid?"
    )


def test_a_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("fixed: {model: ego_rnn}\n# r\xe9sum\xe9\n".encode("latin-1"))
    assert main(["spaces", "show", str(path)]) == 2
    assert f"{path}: not UTF-8 text (line 2); save it as UTF-8" in error_line(
        capsys.readouterr().err
    )


# flags -> the message
BAD_FLAGS = {
    ("--set", "lrr=0.1"): "--set lrr: unknown key (did you mean lr?)",
    ("--set", "alpha.mss=1"): "--set alpha.mss: unknown key (did you mean alpha.ms?)",
    ("--set", "lr=abc"): "--set lr: expected float, got 'abc'",
    ("--set", "frames=[3"): "--set frames: cannot parse value '[3': expected ',' or ']', but got "
    "'<stream end>' (while parsing a flow sequence)",
    ("--set", "lr"): "--set 'lr': expected key=value",
    ("--set", "stage=3"): "--set stage: expected 1, 2 or both, got 3",
    ("--set", "gamma=0"): "search_spaces/demo.yaml: gamma: must be a finite number > 0, got 0.0",
    ("--gpus-per-trial", "1.5"): "resources.gpus: a fraction must be <= 1, got 1.5",
    ("--num-samples", "0"): "scheduler.num_samples: expected int >= 1, got 0",
}


@pytest.mark.parametrize("flags", BAD_FLAGS, ids=" ".join)
def test_a_bad_override_flag_names_the_flag_and_key(flags, tmp_path, no_search, capsys):
    assert main(["spaces", "show", "demo", *flags]) == 2
    assert BAD_FLAGS[flags] in error_line(capsys.readouterr().err)
    assert main(["search", "demo", "--data", str(tmp_path), *flags]) == 2
    assert BAD_FLAGS[flags] in error_line(capsys.readouterr().err)


def test_an_unknown_scheduler_flag_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["spaces", "show", "demo", "--scheduler", "hyperband"])
    assert exit_info.value.code == 2
    assert re.search(r"--scheduler: invalid choice: 'hyperband'", capsys.readouterr().err)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "lrr=1"], "--set lrr: unknown key (did you mean lr?)"),
        (["--set", "stage1.lrr=1"], "--set stage1.lrr: unknown key (did you mean lr?)"),
        (["--set", "lr=abc"], "--set lr: must be a finite number > 0, got 'abc'"),
        (["--set", "model=flow_resnet34"], "--set model: use the --model flag instead"),
    ],
)
def test_train_set_errors_name_the_flag(flags, message, tmp_path, capsys):
    args = ["train", "--model", "ego_rnn", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, *flags]) == 2
    assert message in error_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_the_metrics_a_space_may_name_are_those_every_epoch_reports():
    from tuner.spaces import METRICS
    from tuner.training.engine import EpochRecord

    reported = EpochRecord.__dataclass_fields__
    assert all(metric in reported for metric in METRICS)
