import json
from pathlib import Path

import pytest

from tests.gtea_trees import make_tree
from tuner.cli import main


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "data", users=("S1", "S2"), frames=6)


def test_check_of_a_clean_dataset_exits_zero_and_summarises_it(tree, capsys):
    assert main(["data", "check", str(tree.root)]) == 0
    out = capsys.readouterr().out
    assert "course layout" in out
    assert "S1 3, S2 3" in out
    assert "min 6, median 6, max 6" in out
    assert out.rstrip().endswith("usable")


def test_truncated_png_exits_one_and_names_the_file(tree, capsys):
    path = tree.frame("rgb", "S2", "close_jam", "1", 4)
    path.write_bytes(path.read_bytes()[:60])
    assert main(["data", "check", str(tree.root)]) == 1
    assert str(path) in capsys.readouterr().out


def test_zero_byte_image_exits_one_and_names_the_file(tree, capsys):
    path = tree.frame("mmaps", "S1", "open_jam", "1", 2)
    path.write_bytes(b"")
    assert main(["data", "check", str(tree.root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {"kind": "undecodable_image", "path": str(path)}.items() <= report["fatal"][0].items()


def test_missing_root_is_a_usage_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "absent")]) == 2
    assert "ROOT" in capsys.readouterr().err


def test_json_report_has_the_documented_keys(tree, capsys):
    (tree.root / "processed_frames2" / "S2" / ".DS_Store").write_bytes(b"x")
    assert main(["data", "check", str(tree.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "layout",
        "users",
        "classes",
        "class_names",
        "videos",
        "frames",
        "problems",
        "fatal",
    }
    assert report["users"] == {"S1": 3, "S2": 3}
    assert report["classes"] == 3
    assert report["frames"] == {"min": 6, "median": 6, "max": 6}
    assert report["problems"] == [
        {
            "kind": "hidden_file",
            "path": str(tree.root / "processed_frames2" / "S2" / ".DS_Store"),
            "repair": "delete (Finder metadata)",
        }
    ]


def test_fix_applies_the_listed_repairs_and_a_second_check_is_clean(tree, capsys):
    missing = tree.frame("mmaps", "S1", "close_jam", "1", 1)
    missing.unlink()
    duplicate = tree.frame("flow_x", "S2", "open_jam", "1", 3).with_name("flow_x_00003 (1).png")
    duplicate.write_bytes(b"copy")
    assert main(["data", "check", str(tree.root)]) == 0
    assert not missing.exists() and duplicate.exists()
    assert "--fix" in capsys.readouterr().out
    assert main(["data", "check", str(tree.root), "--fix"]) == 0
    out = capsys.readouterr().out
    repaired = out.split("repaired: 2\n")[1]
    assert f"missing_mmap: {missing} -> copy map0002.png" in repaired
    assert f"duplicate_file: {duplicate} -> move to" in repaired
    assert missing.read_bytes() == tree.frame("mmaps", "S1", "close_jam", "1", 2).read_bytes()
    assert not duplicate.exists()
    assert main(["data", "check", str(tree.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []


def test_synth_then_check_reports_four_users_and_the_planted_defects(tmp_path, capsys):
    target = tmp_path / "D"
    args = ["data", "synth", str(target), "--seed", "1", "--classes", "5", "--size", "64x36"]
    assert main([*args, "--videos-per-class", "1"]) == 0
    assert "wrote 20 videos" in capsys.readouterr().out
    assert main(["data", "check", str(target), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "course"
    assert sorted(report["users"]) == ["S1", "S2", "S3", "S4"]
    assert report["classes"] == 5
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds == {"hidden_file", "missing_mmap"}
    assert report["fatal"] == []


def test_synth_rejects_a_malformed_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", str(tmp_path), "--size", "big"])
    assert exit_info.value.code == 2


def test_synth_refuses_an_invalid_class_count(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--classes", "99"]) == 2
    assert "classes" in capsys.readouterr().err


def test_synth_json_reports_what_it_wrote(tmp_path, capsys):
    target = tmp_path / "D"
    args = ["data", "synth", str(target), "--classes", "3", "--videos-per-class", "1"]
    assert main([*args, "--size", "48x27", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["root"] == str(target / "GTEA61") and report["videos"] == 12
    assert report["users"] == {"S1": 3, "S2": 3, "S3": 3, "S4": 3}
    assert report["classes"] == 3 and len(report["class_names"]) == 3
    assert report["hidden_files"] and all(Path(p).is_file() for p in report["hidden_files"])
    assert report["frames"] == sum(
        len(list(p.glob("rgb*.png"))) for p in (target / "GTEA61").rglob("rgb")
    )
