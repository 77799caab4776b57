import itertools
import json
import textwrap

import pytest

from tuner.cli import main
from tuner.spaces import (
    BUNDLED_SPACES_DIR,
    SpaceError,
    find_space,
    list_spaces,
    load_space,
    nest_config,
)
from tuner.training.config import TrainConfig

BUNDLED = sorted(path.stem for path in BUNDLED_SPACES_DIR.glob("*.yaml"))
REPORT_FILES = [
    "fig5_ego_rnn",
    "fig5_flow",
    "fig5_two_stream",
    "fig8_ms_classification",
    "fig9_ms_regression",
    "fig10_ms_classification_grid",
    "fig11_ms_regression_grid",
    "mmaps_resolution",
    "static_dynamic",
    "representation_flow",
]
EXTENSION_FILES = [
    "ms_classification_asha",
    "ms_regression_asha",
    "ms_classification_optuna",
    "demo",
]


def write_space(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_text(tmp_path, text):
    return load_space(write_space(tmp_path, text))


# -- bundled files ----------------------------------------------------------------------------


def test_every_experiment_of_the_report_and_each_extension_has_a_file():
    assert set(REPORT_FILES + EXTENSION_FILES) <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_space_validates_and_every_trial_is_a_train_config(name):
    space = load_space(name)
    cells = space.expand()
    assert cells and space.report
    for cell in cells:
        TrainConfig.from_dict(nest_config(cell))
    if space.is_sampled:
        assert space.scheduler.algorithm != "grid"
        assert space.trial_count == space.scheduler.num_samples * (
            1 if space.scheduler.uses_optuna else len(cells)
        )
    else:
        assert space.trial_count == len(cells)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_space_documents_the_format_in_its_header(name):
    text = (BUNDLED_SPACES_DIR / f"{name}.yaml").read_text()
    assert text.startswith("# Search-space file (format: docs/search-spaces.md)")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_space_trials_are_distinct(name):
    cells = [json.dumps(c, sort_keys=True) for c in load_space(name).expand()]
    assert len(set(cells)) == len(cells)


def varying(space, keys):
    return {tuple(json.dumps(cell[k]) for k in keys) for cell in space.expand()}


def test_fig10_grid_is_the_36_configurations_of_the_report():
    space = load_space("fig10_ms_classification_grid")
    expected = {
        (json.dumps(lr), json.dumps(wd), json.dumps(ms), json.dumps(gamma))
        for lr, wd, ms, gamma in itertools.product(
            [1e-4, 5e-4], [4e-3, 4e-5], [[30, 70], [40, 80], [50, 100]], [0.1, 0.2, 0.5]
        )
    }
    assert len(space.expand()) == 36
    assert varying(space, ["lr", "weight_decay", "milestones", "gamma"]) == expected


def test_fig11_grid_is_the_30_configurations_of_the_report():
    rows = [
        (1e-4, 4e-3, [30, 80]),
        (1e-4, 4e-3, [40, 90]),
        (1e-4, 4e-5, [30, 80]),
        (1e-4, 4e-5, [40, 90]),
        (5e-4, 4e-3, [30, 80]),
        (5e-4, 4e-3, [40, 90]),
        (5e-4, 4e-5, [30, 80]),
        (5e-4, 4e-5, [40, 90]),
        (5e-5, 4e-3, [30, 80]),
        (5e-5, 4e-5, [30, 80]),
    ]
    expected = {
        tuple(json.dumps(v) for v in (*row, gamma)) for row in rows for gamma in (0.1, 0.2, 0.5)
    }
    space = load_space("fig11_ms_regression_grid")
    assert len(space.expand()) == 30
    assert varying(space, ["lr", "weight_decay", "milestones", "gamma"]) == expected


@pytest.mark.parametrize("name", ["fig10_ms_classification_grid", "fig11_ms_regression_grid"])
def test_report_grids_train_stage_two_for_100_epochs_on_16_frames_from_stage_one(name):
    space = load_space(name)
    configs = [TrainConfig.from_dict(nest_config(cell)) for cell in space.expand()]
    assert {(c.model, c.stage, c.frames, c.epochs) for c in configs} == {
        ("ego_rnn_ms", "2", 16, 100)
    }
    (run,) = space.prerequisite_runs()
    stage1 = TrainConfig.from_dict(nest_config(run.config)).stage_settings(1)
    assert (stage1.lr, stage1.weight_decay, stage1.epochs) == (1e-3, 4e-5, 150)
    assert (stage1.milestones, stage1.gamma) == ((50, 100), 0.1)
    assert space.prerequisites[run.name].provides == "init_checkpoint"


def test_fig5_ego_rnn_covers_cam_frames_and_three_seeds_in_both_stages():
    space = load_space("fig5_ego_rnn")
    expected = {
        (json.dumps(cam), json.dumps(frames), json.dumps(seed))
        for cam in (True, False)
        for frames in (7, 16)
        for seed in (0, 1, 2)
    }
    assert varying(space, ["cam", "frames", "seed"]) == expected
    config = TrainConfig.from_dict(nest_config(space.expand()[0]))
    assert config.stages == (1, 2)
    assert config.stage_settings(1).epochs == 200
    assert config.stage_settings(2).milestones == (25, 75)


def test_two_stream_needs_one_rgb_run_per_frame_count_and_one_flow_run():
    runs = load_space("fig5_two_stream").prerequisite_runs()
    rgb = {run.match for run in runs if run.name == "rgb"}
    assert rgb == {(("frames", 7),), (("frames", 16),)}
    (flow,) = [run for run in runs if run.name == "flow"]
    assert flow.config["model"] == "flow_resnet34" and flow.match == ()
    assert all(run.config["frames"] == dict(run.match)["frames"] for run in runs if run.match)


def test_mmaps_resolution_has_the_seven_map_variants_with_three_seeds():
    space = load_space("mmaps_resolution")
    keys = ["ms_layer", "ms_target", "ms_task", "ms_downsample"]
    variants = {tuple(cell[k] for k in keys) for cell in space.expand()}
    assert len(variants) == 7 and len(space.expand()) == 21
    assert ("conv4", "gray", "regression", "grid") in variants
    # as the report (Figure 14): gray maps with the grid technique, b&w maps by point
    assert all((d == "grid") == (target == "gray") for _, target, _, d in variants)
    assert not space.warnings


@pytest.mark.parametrize("name", sorted(list_spaces()))
def test_no_bundled_space_downsamples_classification_targets_with_the_grid(name):
    space = load_space(name)
    assert not space.warnings
    classification = [c for c in space.expand() if c.get("ms_task") == "classification"]
    if classification:
        assert "ms_downsample" not in space.sample
        assert all(c.get("ms_downsample", "point") == "point" for c in classification)


def test_classification_targets_with_grid_downsampling_warn_naming_the_key(tmp_path):
    space = load_text(
        tmp_path,
        """
        fixed: {model: ego_rnn_ms, stage: 2, ms_task: classification}
        grid: {ms_downsample: [point, grid]}
        """,
    )
    (warning,) = space.warnings
    assert "ms_downsample: grid with ms_task=classification" in warning
    assert warning.startswith(str(tmp_path)) and "(1 trial(s))" in warning


def test_static_dynamic_has_the_four_configurations_with_three_seeds():
    space = load_space("static_dynamic")
    assert varying(space, ["sd_train_conv5", "alpha.sd"]) == {
        ("true", "1.0"),
        ("false", "1.0"),
        ("false", "0.5"),
        ("false", "0.1"),
    }
    assert len(space.expand()) == 12


def test_optuna_extension_starts_from_the_reports_best_point():
    space = load_space("ms_classification_optuna")
    first = space.scheduler.points_to_evaluate[0]
    assert (first["lr"], first["weight_decay"], first["milestones"], first["gamma"]) == (
        1e-4,
        4e-3,
        [40, 80],
        0.2,
    )
    assert set(first) == set(space.sample)


# -- format semantics -------------------------------------------------------------------------


def test_trials_are_points_times_grid_times_repeats(tmp_path):
    space = load_text(
        tmp_path,
        """
        fixed: {model: ego_rnn, stage: 2}
        points:
          - {lr: 1e-4, weight_decay: 4e-3}
          - {lr: 5e-4, weight_decay: 4e-5}
        grid: {gamma: [0.1, 0.5]}
        repeats: 3
        """,
    )
    trials = space.expand()
    assert len(trials) == 2 * 2 * 3
    assert {t["seed"] for t in trials} == {0, 1, 2}
    assert {(t["lr"], t["weight_decay"]) for t in trials} == {(1e-4, 4e-3), (5e-4, 4e-5)}
    assert all(t["model"] == "ego_rnn" and t["stage"] == "2" for t in trials)


def test_yaml_numeric_strings_are_accepted_for_float_keys(tmp_path):
    space = load_text(tmp_path, "fixed: {lr: 1e-4, alpha: {ms: 5e-1}}\ngrid: {gamma: [1e-1]}\n")
    (trial,) = space.expand()
    assert trial["lr"] == 1e-4 and trial["alpha.ms"] == 0.5 and trial["gamma"] == 0.1


def test_randint_bounds_are_inclusive_and_scheduler_defaults_follow_the_epochs(tmp_path):
    space = load_text(
        tmp_path,
        """
        fixed: {model: ego_rnn, stage: 2, epochs: 40}
        sample: {frames: {randint: [4, 8]}}
        scheduler: {algorithm: asha, num_samples: 5}
        """,
    )
    assert space.sample["frames"].contains(8)
    assert (space.scheduler.max_t, space.scheduler.grace_period) == (40, 4)
    assert (space.scheduler.metric, space.scheduler.mode) == ("val_acc", "max")


def test_unsafe_yaml_tags_are_rejected_not_evaluated(tmp_path):
    path = write_space(tmp_path, "fixed: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(path)


# -- malformed files --------------------------------------------------------------------------

MALFORMED = {
    "unknown key": ("grid: {lrr: [1e-4]}\n", r"grid\.lrr: unknown key \(did you mean lr\?\)"),
    "unknown section": ("grids: {lr: [1e-4]}\n", r"grids: unknown key"),
    "wrong type": ("fixed: {frames: seven}\n", r"fixed\.frames: expected int"),
    "wrong type in grid": ("grid: {cam: [yes, 'no']}\n", r"grid\.cam\[1\]: expected bool"),
    "empty grid": ("grid: {lr: []}\n", r"grid\.lr: expected a non-empty list"),
    "low >= high": (
        "sample: {lr: {uniform: [1e-2, 1e-3]}}\nscheduler: {algorithm: random, num_samples: 2}\n",
        r"sample\.lr\.uniform: low must be below high",
    ),
    "loguniform low <= 0": (
        "sample: {lr: {loguniform: [0, 1e-3]}}\nscheduler: {algorithm: random, num_samples: 2}\n",
        r"sample\.lr\.loguniform: loguniform needs low > 0",
    ),
    "unknown distribution": (
        "sample: {lr: {normal: [0, 1]}}\nscheduler: {algorithm: random, num_samples: 2}\n",
        r"sample\.lr\.normal: unknown distribution",
    ),
    "grid with distributions": (
        "sample: {lr: {loguniform: [1e-5, 1e-3]}}\n",
        r"sample\.lr: the grid algorithm cannot sample",
    ),
    "optuna without sampled keys": (
        "grid: {lr: [1e-4]}\nscheduler: {algorithm: optuna, num_samples: 4}\n",
        r"scheduler\.algorithm: optuna needs sampled keys",
    ),
    "fixed and searched": (
        "fixed: {lr: 1e-4}\ngrid: {lr: [1e-3]}\n",
        r"grid\.lr: also set in fixed\.lr",
    ),
    "seed and repeats": ("grid: {seed: [0, 1]}\nrepeats: 2\n", r"repeats: seeds come from"),
    "asha setting on grid": ("scheduler: {grace_period: 3}\n", r"scheduler\.grace_period: only"),
    "unknown model": ("fixed: {model: resnet_lstm}\n", r"fixed\.model: unknown model"),
    "unknown scheduler": ("scheduler: {algorithm: hyperband}\n", r"scheduler\.algorithm: unknown"),
    "points with different keys": (
        "points: [{lr: 1e-4}, {gamma: 0.1}]\n",
        r"points\[1\]: keys \['gamma'\] differ",
    ),
    "sampled without num_samples": (
        "sample: {lr: {loguniform: [1e-5, 1e-3]}}\nscheduler: {algorithm: asha}\n",
        r"scheduler\.num_samples: required",
    ),
    "missing prerequisite": (
        """
        prerequisites:
          stage2:
            provides: init_checkpoint
            requires: [stage0]
            config: {model: ego_rnn, stage: 2}
        """,
        r"prerequisites\.stage2\.requires: unknown prerequisite 'stage0'",
    ),
    "prerequisite provides a non-TrainConfig key": (
        """
        prerequisites:
          stage1: {provides: checkpoint, config: {stage: 1}}
        """,
        r"prerequisites\.stage1\.provides: 'checkpoint' is not a TrainConfig key",
    ),
    "trial rejected by TrainConfig": (
        "fixed: {model: ego_rnn_ms, ms_target: gray}\n"
        "grid: {ms_task: [regression, classification]}\n",
        r"ms_target: gray targets need ms_task=regression \(trial ms_task=\"classification\"\)",
    ),
    "bad prerequisite config": (
        "prerequisites:\n  s1: {provides: init_checkpoint, config: {stage: 3}}\n",
        r"prerequisites\.s1\.config\.stage: expected 1, 2 or both",
    ),
    "prerequisite rejected by TrainConfig": (
        "prerequisites:\n  s1: {provides: init_checkpoint, config: {stage: both, lr: -1}}\n",
        r"lr: must be a finite number > 0, got -1.0 \(prerequisite s1\)",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_file_error_names_the_file_and_the_key(tmp_path, case):
    text, pattern = MALFORMED[case]
    path = write_space(tmp_path, text, name="bad.yaml")
    with pytest.raises(SpaceError, match=r"bad\.yaml: " + pattern) as info:
        load_space(path)
    assert info.value.source.endswith("bad.yaml")


def test_prerequisite_cycles_are_errors(tmp_path):
    text = """
    prerequisites:
      a: {provides: init_checkpoint, requires: [b], config: {stage: 2}}
      b: {provides: init_checkpoint, requires: [a], config: {stage: 2}}
    """
    with pytest.raises(SpaceError, match=r"requires: cycle"):
        load_text(tmp_path, text)


def test_prerequisite_chain_runs_in_dependency_order(tmp_path):
    space = load_text(
        tmp_path,
        """
        fixed: {model: two_stream, stage: 1}
        grid: {frames: [7, 16]}
        prerequisites:
          rgb:
            provides: rgb_checkpoint
            requires: [rgb_stage1]
            match: [frames]
            config: {model: ego_rnn, stage: 2}
          rgb_stage1:
            provides: init_checkpoint
            match: [frames]
            config: {model: ego_rnn, stage: 1}
        """,
    )
    runs = [(run.name, run.match) for run in space.prerequisite_runs()]
    assert runs[:2] == [("rgb_stage1", (("frames", 7),)), ("rgb_stage1", (("frames", 16),))]
    assert runs[2:] == [("rgb", (("frames", 7),)), ("rgb", (("frames", 16),))]
    assert space.prerequisite_runs()[2].requires == (("rgb_stage1", (("frames", 7),)),)


# -- overrides --------------------------------------------------------------------------------


def test_set_fixes_a_searched_key_in_every_trial():
    space = load_space("fig10_ms_classification_grid").with_overrides(set_values=["gamma=0.2"])
    assert len(space.expand()) == 12
    assert {t["gamma"] for t in space.expand()} == {0.2}


def test_set_of_an_unknown_key_names_the_key():
    with pytest.raises(SpaceError, match=r"--set lrr: unknown key"):
        load_space("fig10_ms_classification_grid").with_overrides(set_values=["lrr=1"])


def test_set_seed_replaces_repeats_and_set_checkpoint_replaces_the_prerequisite():
    space = load_space("mmaps_resolution").with_overrides(
        set_values=["seed=5", "init_checkpoint=/models/stage1.pt"]
    )
    assert len(space.expand()) == 7 and not space.prerequisites
    assert {t["init_checkpoint"] for t in space.expand()} == {"/models/stage1.pt"}


def test_scheduler_and_resource_overrides_are_validated_again():
    space = load_space("ms_classification_optuna").with_overrides(
        scheduler="asha", num_samples=3, max_concurrent=1, cpus_per_trial=2, gpus_per_trial=0.25
    )
    assert space.scheduler.algorithm == "asha" and space.scheduler.points_to_evaluate == ()
    assert (space.trial_count, space.scheduler.max_concurrent) == (3, 1)
    assert (space.resources.cpus, space.resources.gpus) == (2.0, 0.25)
    with pytest.raises(SpaceError, match=r"sample\.lr: the grid algorithm cannot sample"):
        space.with_overrides(scheduler="grid")


# -- finding files ----------------------------------------------------------------------------


def test_egotune_spaces_adds_a_folder_of_named_spaces(tmp_path, monkeypatch):
    write_space(tmp_path, "fixed: {frames: 4}\n", name="mine.yaml")
    monkeypatch.setenv("EGOTUNE_SPACES", str(tmp_path))
    assert find_space("mine") == tmp_path / "mine.yaml"
    assert "fig10_ms_classification_grid" in list_spaces()


def test_unknown_space_name_suggests_a_bundled_one():
    with pytest.raises(SpaceError, match="did you mean fig10_ms_classification_grid"):
        find_space("fig10_ms_clasification_grid")


# -- command line -----------------------------------------------------------------------------


def test_cli_show_json_lists_every_trial_with_fixed_keys(capsys):
    assert main(["spaces", "show", "fig11_ms_regression_grid", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"name", "scheduler", "trials", "warnings", "sharing"}
    assert shown["warnings"] == [] and shown["sharing"]["shared_trial_epochs"] == 2200
    assert shown["scheduler"]["algorithm"] == "grid" and len(shown["trials"]) == 30
    assert all(t["model"] == "ego_rnn_ms" and t["frames"] == 16 for t in shown["trials"])


def test_cli_show_json_of_a_sampled_space_gives_distributions(capsys):
    assert main(["spaces", "show", "ms_classification_asha", "--json", "--num-samples", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["distributions"]["lr"] == {"loguniform": [5e-5, 1e-3]}
    assert shown["scheduler"]["num_samples"] == 3


def test_cli_show_accepts_a_path_and_prints_the_trial_count(tmp_path, capsys):
    path = write_space(tmp_path, "grid: {frames: [4, 8]}\nrepeats: 2\n")
    assert main(["spaces", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 trials:" in out and "frames=8 seed=1" in out


def test_cli_list_names_every_bundled_space_with_its_figure(capsys):
    assert main(["spaces", "list"]) == 0
    out = capsys.readouterr().out
    for name in BUNDLED:
        assert name in out
    assert "36 trials" in out and "Figure 10" in out


def test_cli_reports_a_malformed_file_on_one_line(tmp_path, capsys):
    path = write_space(tmp_path, "grid: {lrr: [1]}\n", name="bad.yaml")
    assert main(["spaces", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("bad.yaml: grid.lrr: unknown key (did you mean lr?)")
