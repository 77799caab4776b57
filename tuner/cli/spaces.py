"""``egotune spaces``: list the search spaces and show the trials of one.

``egotune spaces list`` prints every bundled space (and those in ``$EGOTUNE_SPACES``) with its
algorithm, trial count and report figure. ``egotune spaces show NAME [--json]`` validates one space
(a bundled name or a YAML path) and prints its trials; the override flags shared with
``egotune search`` apply first, so a change can be previewed before it runs. ``egotune spaces keys
[--model M]`` lists the keys a space may set: the core ones and each model family's options, as
their recipes declare them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tuner.spaces import ALGORITHMS, SearchSpace, SpaceError, list_spaces, load_space

__all__ = ["add_override_arguments", "apply_override_arguments", "register"]


def register(subparsers: Any) -> None:
    """Add the ``spaces`` command group to the ``egotune`` parser."""
    parser = subparsers.add_parser("spaces", help="list search spaces and show their trials")
    actions = parser.add_subparsers(dest="spaces_action", metavar="ACTION")
    listing = actions.add_parser("list", help="every known space: algorithm, trials, report figure")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(handler=_list_spaces)
    show = actions.add_parser("show", help="validate one space and print its trials")
    show.add_argument("name", help="bundled space name or path to a YAML file")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_override_arguments(show)
    show.set_defaults(handler=_show_space)
    keys = actions.add_parser("keys", help="the keys a space may set, with their defaults")
    keys.add_argument("--model", help="only the core keys and the options this model reads")
    keys.add_argument("--json", action="store_true", help="print JSON instead of text")
    keys.set_defaults(handler=_list_keys)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that change a space for one run (used by ``spaces show`` and ``search``)."""
    group = parser.add_argument_group("search-space overrides")
    group.add_argument("--scheduler", choices=ALGORITHMS, help="replace the space's algorithm")
    group.add_argument("--num-samples", type=int, metavar="N", help="samples (sampled spaces)")
    group.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once")
    group.add_argument("--cpus-per-trial", type=float, metavar="F", help="CPUs each trial reserves")
    group.add_argument("--gpus-per-trial", type=float, metavar="F", help="GPU fraction per trial")
    group.add_argument(
        "--set",
        dest="set_values",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a TrainConfig key in every trial (repeatable), e.g. --set frames=7",
    )


def apply_override_arguments(space: SearchSpace, args: argparse.Namespace) -> SearchSpace:
    """``space`` with the override flags of ``args`` applied (unchanged when none is given)."""
    overrides = {
        "scheduler": args.scheduler,
        "num_samples": args.num_samples,
        "max_concurrent": args.max_concurrent,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
    }
    if not args.set_values and all(v is None for v in overrides.values()):
        return space
    return space.with_overrides(set_values=args.set_values, **overrides)


def _list_spaces(args: argparse.Namespace) -> int:
    entries = []
    for name, path in list_spaces().items():
        entry: dict[str, Any] = {"name": name, "file": str(path)}
        try:
            space = load_space(path)
        except SpaceError as exc:
            entries.append({**entry, "algorithm": None, "trials": None, "error": str(exc)})
            continue
        entries.append(
            {
                **entry,
                "algorithm": space.scheduler.algorithm,
                "trials": space.trial_count,
                "sampled": space.scheduler.uses_optuna or space.is_sampled,
                "report": space.report or "",
            }
        )
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        _print_listing(entries)
    return 1 if any("error" in entry for entry in entries) else 0


def _print_listing(entries: list[dict[str, Any]]) -> None:
    rows = [("NAME", "ALGORITHM", "TRIALS", "REPORT")]
    for entry in entries:
        if "error" in entry:
            rows.append((entry["name"], "invalid", "-", entry["error"]))
        else:
            unit = "samples" if entry["sampled"] else "trials"
            rows.append(
                (entry["name"], entry["algorithm"], f"{entry['trials']} {unit}", entry["report"])
            )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]
        )


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, list | bool) or value is None else str(value)


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={_format(value)}" for key, value in values.items())


def _show_space(args: argparse.Namespace) -> int:
    space = apply_override_arguments(load_space(args.name), args)
    if args.json:
        print(json.dumps(_space_json(space), indent=2))
    else:
        _print_space(space)
    return 0


def _space_json(space: SearchSpace) -> dict[str, Any]:
    """``{"name", "scheduler", "trials"}`` (plus ``"distributions"`` for a sampled space)."""
    result: dict[str, Any] = {"name": space.name, "scheduler": space.scheduler.to_dict()}
    result["warnings"] = list(space.warnings)
    if space.is_sampled:
        result["distributions"] = {k: d.to_dict() for k, d in space.sample.items()}
    result["trials"] = space.expand()
    plan = space.sharing_plan()
    result["sharing"] = plan.to_dict() if plan is not None else None
    if space.scheduler.rungs is not None:
        result["fidelity"] = fidelity_plan(space)
    return result


def fidelity_plan(space: SearchSpace) -> dict[str, Any]:
    """The space's fidelity schedule counted in FLOPs on a GTEA61 epoch
    (:func:`tuner.training.cost.schedule_plan`)."""
    from tuner.training.cost import schedule_plan

    rungs, eta = space.scheduler.rungs, space.scheduler.reduction_factor
    assert rungs is not None and eta is not None
    configs = list(space.trial_configs) * (space.scheduler.num_samples or 1)
    plan = space.sharing_plan()
    shared = plan.shared_trial_epochs if plan is not None else None
    return schedule_plan(configs, rungs, eta, shared)


def _print_fidelity(plan: dict[str, Any]) -> None:
    from tuner.results import format_cost

    clips = plan["clips"]
    print(
        f"fidelity schedule, counted on a GTEA61 epoch ({clips['train']} training and "
        f"{clips['val']} validation clips), a 1/{plan['reduction_factor']:g} promoted per rung:"
    )
    print("  rung  epochs     frames  crop    FLOP/epoch  trials")
    for row in plan["rungs"]:
        first, last = row["epochs"]
        print(
            f"  {row['rung']:<5} {f'{first}-{last}':<10} {row['frames']:>6} {row['crop_size']:>5}"
            f" {format_cost('flops', row['epoch_flops']):>13} {row['trials']:>7}"
        )
    grid, schedule = plan["grid_flops"], plan["schedule_flops"]
    line = (
        f"  one full-size trial {format_cost('flops', plan['trial_flops'])}; the grid at full "
        f"size {format_cost('flops', grid)}"
    )
    if plan["shared_flops"] is not None:
        line += f" ({format_cost('flops', plan['shared_flops'])} with prefix sharing)"
    print(line)
    versus = plan["shared_flops"] or grid
    print(
        f"  this schedule: {format_cost('flops', schedule)}, {100 * schedule / versus:.0f}% of the "
        f"grid{' with sharing' if plan['shared_flops'] is not None else ''}"
    )


def _print_space(space: SearchSpace) -> None:
    listed = ("points_to_evaluate", "mutations")
    settings = {k: v for k, v in space.scheduler.to_dict().items() if k not in listed}
    print(f"name: {space.name}\nfile: {space.source}")
    for warning in space.warnings:
        print(f"warning: {warning}")
    if space.report:
        print(f"report: {space.report}")
    print(f"scheduler: {_pairs(settings)}")
    print(f"resources per trial: {space.resources.cpus:g} CPUs, {space.resources.gpus:g} GPU")
    for run in space.prerequisite_runs():
        provides = space.prerequisites[run.name].provides
        print(f"prerequisite {run.name} -> {provides}: {_pairs(run.config)}")
    print(f"fixed: {_pairs(space.fixed)}")
    for key, distribution in space.sample.items():
        print(f"sampled {key}: {json.dumps(distribution.to_dict())}")
    for key, distribution in (space.scheduler.mutations or {}).items():
        print(f"mutated {key}: {json.dumps(distribution.to_dict())}")
    for point in space.scheduler.points_to_evaluate:
        print(f"evaluated first: {_pairs(point)}")
    cells = space.expand()
    if space.is_sampled:
        print(f"{space.trial_count} samples over {len(cells)} grid cell(s):")
    else:
        print(f"{len(cells)} trials:")
    varying = [k for k in space.varying_keys if k not in space.sample]
    plan = space.sharing_plan()
    branches = plan.branches if plan is not None else [None] * len(cells)
    for number, (cell, branch) in enumerate(zip(cells, branches, strict=False), start=1):
        shown = {k: cell[k] for k in varying}
        line = f"  {number:>3}  {_pairs(shown) if shown else '(fixed values only)'}"
        if branch is not None:
            line += f"  [continues #{branch.parent + 1} after epoch {branch.epoch}]"
        print(line)
    if plan is not None:
        print(f"prefix sharing: {plan.summary()}")
    elif not space.share_prefixes:
        print("prefix sharing: off (share_prefixes: false)")
    if space.scheduler.rungs is not None:
        _print_fidelity(fidelity_plan(space))


def _list_keys(args: argparse.Namespace) -> int:
    """Every key with its default; an option also with the models that read it, whether PBT may
    change it and its description."""
    from tuner.training.config import TrainConfig, core_keys, registered_options
    from tuner.training.recipes import RECIPES

    if args.model is not None and args.model not in RECIPES:
        raise ValueError(f"--model: unknown model {args.model!r} (known: {', '.join(RECIPES)})")
    defaults = TrainConfig().to_flat()
    mutable = set(TrainConfig.mutable_keys())
    rows = [
        {"key": key, "default": value, "models": "all", "pbt": key in mutable, "about": ""}
        for key, value in defaults.items()
        if key.split(".")[0] in core_keys()
    ]
    for name, option in registered_options().items():
        readers = [m for m, recipe in RECIPES.items() if option in recipe.options]
        if args.model is not None and args.model not in readers:
            continue
        about = {"models": ", ".join(readers), "pbt": option.mutable, "about": option.doc}
        rows.append({"key": name, "default": defaults[name], **about})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["key"]) for row in rows)
    for row in rows:
        default = json.dumps(row["default"])
        pbt = "  (PBT may mutate)" if row["pbt"] else ""
        line = f"{row['key']:<{width}}  {default}{pbt}"
        if row["about"]:
            line += f"\n{'':<{width}}  {row['models']}: {row['about']}"
        print(line)
    return 0
