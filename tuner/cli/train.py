"""``egotune train``: one configuration, no Ray, one JSON line per finished epoch.

Output folder layout::

    OUT/config.yaml              the configuration as run
    OUT/epochs.jsonl             every epoch record (also printed on stdout)
    OUT/checkpoints/latest.pt    full resumable state after the last finished epoch
    OUT/checkpoints/best_stage<k>.pt   weights of the best validation epoch of stage k
    OUT/checkpoints/best.pt      weights of the best epoch of the last stage run

An existing run is never overwritten: ``--resume`` continues it, anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tuner._atomic import write_text_atomic
from tuner.config import MODEL_NAMES, TrainConfig, config_warnings, parse_overrides
from tuner.errors import EgotuneError, UsageError

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
    parser.add_argument("--stage", choices=("1", "2", "both"), default=None)
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
    from tuner.checkpoint import load_checkpoint, save_checkpoint
    from tuner.engine import Trainer

    config = build_config(args)
    for warning in config_warnings(config):
        print(f"egotune: warning: {warning}", file=sys.stderr)
    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    out: Path = args.out
    latest = out / "checkpoints" / "latest.pt"
    if args.resume and not latest.is_file():
        raise UsageError(f"--resume: {latest} does not exist; nothing to resume")
    if not args.resume and (latest.exists() or (out / "epochs.jsonl").exists()):
        raise UsageError(
            f"--out {out}: already holds a run; "
            "pass --resume to continue it or choose another folder"
        )
    _check_writable(out)
    index = discover(args.data)
    verify_frames(index)  # a truncated frame would otherwise stop the run at its first epoch
    _note_unused_users(index.users, config)
    trainer = Trainer(config, index)
    if args.resume:
        trainer.load_state_dict(load_checkpoint(latest))
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
            save_checkpoint(trainer.state_dict(), latest)
            if record.is_best:
                _save_best(trainer, record.to_dict(), out / "checkpoints", save_checkpoint)
            print(line, flush=True)
    if not trainer.finished:
        raise EgotuneError("training stopped before its last epoch")
    return 0


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


def _save_best(trainer: Any, record: dict[str, Any], folder: Path, save: Any) -> None:
    state = {
        "config": trainer.config.to_dict(),
        "classes": trainer.classes,
        "stage": record["stage"],
        "epoch": record["epoch"],
        "val_acc": record["val_acc"],
        "model": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
    }
    save(state, folder / f"best_stage{record['stage']}.pt")
    if record["stage"] == trainer.stages[-1]:
        save(state, folder / "best.pt")
