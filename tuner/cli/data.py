"""``egotune data``: check a GTEA61 tree (and repair it) or write a synthetic one.

``egotune data check ROOT [--json] [--fix]`` reports the layout, videos per user, classes,
frame-count statistics and every problem with its path; it exits 0 when the dataset is usable,
1 when a problem is fatal and 2 on a usage error. Nothing changes on disk without ``--fix``,
which applies exactly the listed repairs. ``egotune data synth ROOT`` writes a synthetic GTEA61
under ``ROOT/GTEA61``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import UsageError

if TYPE_CHECKING:
    from data_pipeline import CheckReport, Problem

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``data`` command group to the ``egotune`` parser."""
    parser = subparsers.add_parser("data", help="check a GTEA61 dataset or write a synthetic one")
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    check = actions.add_parser("check", help="report layout, statistics and every problem")
    check.add_argument("root", metavar="ROOT", help="dataset folder (or its parent)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--fix", action="store_true", help="apply the listed repairs")
    check.add_argument("--workers", type=int, metavar="N", help="decoding threads (default: CPUs)")
    check.set_defaults(handler=_check)
    synth = actions.add_parser("synth", help="write a synthetic GTEA61 under ROOT/GTEA61")
    synth.add_argument("root", metavar="ROOT", help="destination folder")
    synth.add_argument("--classes", type=int, metavar="N", help="3..61 (default 12)")
    synth.add_argument("--videos-per-class", type=int, metavar="K", help="per user (default 2)")
    synth.add_argument(
        "--like-gtea61",
        action="store_true",
        help="the real dataset's shape: 61 classes, 457 videos (116 in S2), 1-7 per class and "
        "user, video lengths of median 34 frames",
    )
    synth.add_argument(
        "--size", type=_size, default=(455, 256), metavar="WxH", help="default 455x256"
    )
    synth.add_argument("--seed", type=int, default=0, metavar="S", help="default 0")
    synth.add_argument("--workers", type=int, metavar="N", help="processes (default: CPUs)")
    synth.add_argument("--json", action="store_true", help="print what was written as JSON")
    synth.set_defaults(handler=_synth)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 228x128, got {text!r}")
    return int(width), int(height)


def _check(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise UsageError(f"ROOT: no such directory: {root}")
    from data_pipeline import check_dataset, fix_dataset  # torch: only when a dataset is read

    report = check_dataset(root, workers=args.workers)
    repaired = fix_dataset(report) if args.fix else None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        if repaired is not None:
            print(f"repaired {len(repaired)} problem(s)", file=sys.stderr)
    else:
        print(_format_report(report, repaired))
    if report.fatal:
        _print_fatal_summary(report)
        return 1
    return 0


def _print_fatal_summary(report: CheckReport) -> None:
    """One line on stderr, also with ``--json``, so a script sees why the exit status is 1."""
    first = report.fatal[0]
    more = f" (and {len(report.fatal) - 1} more)" if len(report.fatal) > 1 else ""
    print(
        f"egotune: error: {report.root}: {len(report.fatal)} fatal problem(s), first "
        f"{first.kind}: {first.path}: {first.message}{more}; fix them by hand and check again",
        file=sys.stderr,
    )


def _format_report(report: CheckReport, repaired: list[Problem] | None) -> str:
    stats = report.frame_stats()
    lines = [
        f"dataset: {report.dataset_dir} ({report.layout or 'unknown'} layout)",
        "users: " + (", ".join(f"{u} {n}" for u, n in report.users.items()) or "none"),
        f"videos: {report.videos} in {len(report.class_names)} classes",
        f"frames per video: min {stats['min']}, median {stats['median']}, max {stats['max']}",
        f"repairable problems: {len(report.problems)}",
    ]
    lines += [f"  {p.kind}: {p.path} -> {p.repair}" for p in report.problems]
    lines.append(f"fatal problems: {len(report.fatal)}")
    lines += [f"  {f.kind}: {f.path}: {f.message}" for f in report.fatal]
    if repaired is not None:
        lines.append(f"repaired: {len(repaired)}")
        lines += [f"  {p.kind}: {p.path} -> {p.repair}" for p in repaired]
    elif report.problems:
        lines.append("run again with --fix to apply the repairs")
    lines.append("usable" if report.usable else "NOT usable: fix the fatal problems above")
    return "\n".join(lines)


def _synth(args: argparse.Namespace) -> int:
    if args.like_gtea61:
        for flag, value in (
            ("--classes", args.classes),
            ("--videos-per-class", args.videos_per_class),
        ):
            if value is not None:
                raise UsageError(f"{flag}: --like-gtea61 sets the classes and videos; drop {flag}")
        shape: dict[str, Any] = {"like_gtea61": True}
    else:
        shape = {
            "classes": 12 if args.classes is None else args.classes,
            "videos_per_class": 2 if args.videos_per_class is None else args.videos_per_class,
        }
    from data_pipeline import synthesize

    summary = synthesize(args.root, size=args.size, seed=args.seed, workers=args.workers, **shape)
    if args.json:
        print(json.dumps(_synth_json(summary), indent=2))
        return 0
    users = ", ".join(f"{user} {count}" for user, count in summary.videos_per_user.items())
    print(
        f"wrote {summary.videos} videos ({summary.frames} frames) of {len(summary.class_names)} "
        f"classes to {summary.root} in {summary.seconds:.1f} s"
    )
    print(f"videos per user: {users}")
    print("classes: " + " ".join(summary.class_names))
    print(
        f"planted defects: {len(summary.hidden_files)} .DS_Store files, "
        f"{len(summary.missing_mmaps)} videos without map0001.png"
    )
    return 0


def _synth_json(summary: Any) -> dict[str, Any]:
    return {
        "root": str(summary.root),
        "videos": summary.videos,
        "frames": summary.frames,
        "users": summary.videos_per_user,
        "classes": len(summary.class_names),
        "class_names": list(summary.class_names),
        "hidden_files": [str(p) for p in summary.hidden_files],
        "missing_mmaps": [str(p) for p in summary.missing_mmaps],
        "seconds": round(summary.seconds, 2),
    }
