"""Readers that meet a damaged or hostile input say so in one line naming it, and go on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.gtea_trees import make_tree
from tests.tuner.test_results import write_handmade
from tuner.cli import main

BAD_RECORDS = {"list": "[]", "space5": '{"space": 5}', "cut": '{"space": {"name": "demo", "te'}


@pytest.fixture(scope="module")
def storage(module_tmp) -> Path:
    """A good experiment and one per damaged ``experiment.json``."""
    write_handmade(module_tmp / "good")
    for name, text in BAD_RECORDS.items():
        shutil.copytree(module_tmp / "good", module_tmp / name)
        (module_tmp / name / "experiment.json").write_text(text)
    return module_tmp


def test_results_list_skips_each_damaged_record_naming_it(storage, capsys, recwarn):
    assert main(["results", "list", "--storage", str(storage)]) == 0
    captured = capsys.readouterr()
    assert "good" in captured.out and "Traceback" not in captured.err
    warnings = [str(w.message) for w in recwarn]
    assert len(warnings) == len(BAD_RECORDS)
    for name in BAD_RECORDS:
        [line] = [w for w in warnings if f"{storage / name / 'experiment.json'}:" in w]
        assert line.startswith(f"skipping experiment {name}:") and "\n" not in line
        assert name not in captured.out.split()


def test_results_top_of_a_damaged_record_is_one_line(storage, capsys):
    assert main(["results", "top", "space5", "--storage", str(storage)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"egotune: error: {storage / 'space5' / 'experiment.json'}: unreadable (not an "
        "experiment record: space is not an object); restore it from a backup"
    ]


DEEP = "[" * 5000 + "]" * 5000


def test_a_deeply_nested_space_file_is_one_line(tmp_path, capsys):
    space = tmp_path / "deep.yaml"
    space.write_text(f"fixed:\n  milestones: {DEEP}\n")
    assert main(["spaces", "show", str(space)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deep.yaml: not valid YAML: nested more than 32" in err[0]


def test_a_deeply_nested_set_value_is_one_line(capsys):
    assert main(["spaces", "show", "demo", "--set", f"milestones={DEEP}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["egotune: error: --set milestones: nested more than 32 lists or mappings deep"]


def test_a_huge_batch_size_in_a_space_file_names_the_key(tmp_path, capsys):
    text = Path("search_spaces/demo.yaml").read_text()
    space = tmp_path / "huge.yaml"
    space.write_text(text.replace("batch_size: 8", "batch_size: 100000000000000000000"))
    assert main(["spaces", "show", str(space)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size: must be an integer from 1 to" in err[0]


def test_an_lr_beyond_any_run_is_refused_naming_it(tmp_path, capsys):
    argv = ["train", "--model", "ego_rnn", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--stage", "1", "--set", "lr=1e308"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "egotune: error: --set lr: at most 10 (a larger rate diverges at once), got 1e+308"
    ]
    assert not (tmp_path / "run").exists()


def test_a_self_symlink_in_the_dataset_is_a_symlink_loop_problem(tmp_path, capsys):
    tree = make_tree(tmp_path / "data", classes=("a", "b"), frames=3)
    video = next((tree.root / "processed_frames2" / "S1").iterdir())
    (video / "loop").symlink_to("loop")
    assert main(["data", "check", str(tree.root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"first symlink_loop: {video / 'loop'}: a symbolic link" in err[0]
