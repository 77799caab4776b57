"""``egotune train``: one configuration, no Ray, one JSON line per finished epoch.

Output folder layout::

    OUT/config.yaml                      the configuration as run
    OUT/epochs.jsonl                     every epoch record (also printed on stdout)
    OUT/checkpoints/state-eNNNNN.pt      resume states (every ``checkpoint_every`` epochs, at
                                         stage ends and at the end; the newest three kept)
    OUT/checkpoints/best-eNNNNN.pt       the trained weights of the best epoch so far
    OUT/checkpoints/best_stage<k>.pt     complete weights of stage k's best epoch, for every
                                         stage but the last (``stage: both``)
    OUT/checkpoints/best.pt              complete weights of the last stage's best epoch

Checkpoints are written off the training loop (:mod:`tuner.training.checkpoints.writer`); the log
line of an epoch is written first, and a resume drops the lines after its checkpoint and runs those
epochs again (to the same metrics). An existing run is never overwritten: ``--resume`` continues it,
anything else is refused."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tuner.atomic import write_text_atomic
from tuner.errors import EgotuneError, UsageError
from tuner.training.config import MODEL_NAMES, TrainConfig, config_warnings, parse_overrides
from tuner.tune.preflight import require_imagenet_weights

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one configuration without Ray",
        description="Train one model configuration through its stages; resumable with --resume.",
    )
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--data", required=True, type=Path, help="GTEA61 root folder")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, logs)")
    parser.add_argument(
        "--stage",
        choices=("1", "2", "both"),
        default=None,
        help="stage of an Ego-RNN model: 1 trains the ConvLSTM and classifier, 2 fine-tunes "
        "from a stage-1 checkpoint (--set init_checkpoint=PATH), both runs 1 then 2 from "
        "stage 1's best (default: 2; models without stages run their one stage)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any configuration key, e.g. --set lr=1e-4 --set milestones=[30,70]",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT's latest checkpoint"
    )
    parser.set_defaults(handler=run_train)


def build_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = parse_overrides(args.overrides)
    for key in ("model", "stage"):
        if key in values:
            raise UsageError(f"--set {key}: use the --{key} flag instead")
    values["model"] = args.model
    if args.stage is not None:
        values["stage"] = args.stage
    try:
        return TrainConfig.from_dict(values)
    except ValueError as exc:
        raise UsageError(f"--set {exc}") from None


def run_train(args: argparse.Namespace) -> int:
    from data_pipeline import discover, verify_frames
    from tuner.training.checkpoints.contents import best_weights_checkpoint
    from tuner.training.checkpoints.files import save_checkpoint
    from tuner.training.checkpoints.policy import CheckpointPolicy
    from tuner.training.checkpoints.writer import CheckpointFolder, RunCheckpoints, resume_run
    from tuner.training.engine import Trainer

    config = build_config(args)
    started = [] if args.resume else _stage_warnings(config)  # said when the run started
    for warning in [*started, *config_warnings(config)]:
        print(f"egotune: warning: {warning}", file=sys.stderr)
    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    out: Path = args.out
    folder = CheckpointFolder(out / "checkpoints")
    latest = folder.newest_state()
    if args.resume and latest is None:
        raise UsageError(f"--resume: {folder.folder} holds no checkpoint; nothing to resume")
    if not args.resume and (latest is not None or (out / "epochs.jsonl").exists()):
        raise UsageError(
            f"--out {out}: already holds a run; "
            "pass --resume to continue it or choose another folder"
        )
    _check_writable(out)
    index = discover(args.data)
    verify_frames(index)  # a truncated frame would otherwise stop the run at its first epoch
    _note_unused_users(index.users, config)
    require_imagenet_weights([config])  # one line, not a traceback from the model
    trainer = Trainer(config, index)
    checkpoints = RunCheckpoints(trainer, folder, CheckpointPolicy(config.checkpoint_every))
    if latest is not None:
        resume_run(trainer, checkpoints, latest)
        _truncate_log(out / "epochs.jsonl", trainer.global_epoch)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True))
    with (out / "epochs.jsonl").open("a") as log:
        for record in trainer.run():
            # The log line goes first: a kill before the checkpoint re-runs the epoch, and the
            # resume drops lines past the checkpoint, so each epoch is logged exactly once.
            line = json.dumps(record.to_dict())
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())
            stage_end = trainer.stage_epoch >= (config.stage_settings(trainer.stage).epochs or 0)
            if stage_end and not trainer.finished:
                save_checkpoint(
                    best_weights_checkpoint(trainer.state_dict(), trainer.best_weights()),
                    folder.path(f"best_stage{trainer.stage}.pt"),
                )
            checkpoints.after_epoch(
                record.train_s + record.data_wait_s + record.val_s,
                stage_end=stage_end,
                last=trainer.finished,
            )
            print(line, flush=True)
    checkpoints.close(wait=True)
    if not trainer.finished:
        raise EgotuneError("training stopped before its last epoch")
    return 0


def _stage_warnings(config: TrainConfig) -> list[str]:
    """Stage 2 (the default ``stage``) without stage-1 weights fine-tunes a model nothing
    trained: the report runs stage 1 first."""
    if config.stages != (2,) or config.init_checkpoint is not None:
        return []
    return [
        f"stage 2 of {config.model} starts without a stage-1 checkpoint (stage 2 is the "
        "default): pass --stage 1 or --stage both, or --set init_checkpoint=PATH to a stage-1 "
        "best.pt"
    ]


def _check_writable(out: Path) -> None:
    """Create ``out`` and write a probe file in it, so a bad ``--out`` fails before training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".egotune-write-test-") as probe:
            probe.write(b"egotune")
            probe.flush()
    except OSError as exc:
        raise UsageError(
            f"--out {out}: not writable ({exc.strerror or exc}); choose another folder"
        ) from None


def _note_unused_users(users: tuple[str, ...], config: TrainConfig) -> None:
    unused = [u for u in users if u not in (*config.train_users, *config.val_users)]
    if unused:
        print(
            f"egotune: note: {', '.join(unused)} in neither train_users nor val_users: not used",
            file=sys.stderr,
        )


def _truncate_log(path: Path, last_epoch: int) -> None:
    """Keep the log lines of the epochs the checkpoint holds (atomic rewrite)."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("epoch", 0) <= last_epoch
    ]
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))
