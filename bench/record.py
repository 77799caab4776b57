"""Shared recording for the benchmarks: one JSON file per run and one row in ``bench/RESULTS.md``.

Every benchmark script calls :func:`record` once with its headline figures. The JSON file keeps
everything (figures, details, machine, command); the Markdown row keeps what a reader compares
across machines: date, benchmark, machine, command and figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_DIR = BENCH_DIR / "results"

_HEADER = (
    "# Benchmark results\n\n"
    "One row per benchmark run, appended by the benchmark itself (`bench/_record.py`); the JSON\n"
    "file named in the last column holds every figure and detail of that run. Re-run a row with\n"
    "its command from the repository root.\n\n"
    "| date (UTC) | benchmark | machine | command | figures | json |\n"
    "| --- | --- | --- | --- | --- | --- |\n"
)


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, accelerator and library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        # other work on the machine skews timings: keep the load seen when the figures were taken
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    except ImportError:
        pass
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        pass
    return info


def machine_summary(info: Mapping[str, Any]) -> str:
    """One short phrase for the Markdown table, e.g. ``2 cores Xeon 8375C, 23 GiB, no GPU``."""
    gpu = info.get("gpu") or "no GPU"
    return f"{info.get('cores')} cores {info.get('cpu')}, {info.get('memory_gib')} GiB, {gpu}"


def current_command() -> str:
    """The command line that ran this process, as a user would retype it."""
    override = os.environ.get("EGOTUNE_BENCH_COMMAND")
    if override:
        return override
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def record(
    name: str,
    figures: Mapping[str, Any],
    *,
    details: Mapping[str, Any] | None = None,
    command: str | None = None,
    results_md: Path | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write ``results/<name>-<timestamp>.json`` and append one row to ``RESULTS.md``.

    ``figures`` are the headline numbers (shown in the row); ``details`` hold everything else.
    Returns the path of the JSON file. Earlier files and rows are never touched.
    """
    results_md = results_md or RESULTS_MD
    results_dir = results_dir or RESULTS_DIR
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    info = machine()
    command = command or current_command()
    payload = {
        "benchmark": name,
        "date": now.isoformat(),
        "command": command,
        "machine": info,
        "figures": dict(figures),
        "details": dict(details or {}),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    json_path = results_dir / f"{name}-{stamp}.json"
    suffix = 1
    while json_path.exists():
        suffix += 1
        json_path = results_dir / f"{name}-{stamp}-{suffix}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")

    if not results_md.exists():
        results_md.write_text(_HEADER)
    shown = "; ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
    try:
        rel = json_path.relative_to(results_md.parent)
    except ValueError:
        rel = json_path
    row = (
        f"| {now:%Y-%m-%d %H:%M} | {name} | {machine_summary(info)} | `{command}` | {shown} "
        f"| {rel} |\n"
    )
    with results_md.open("a") as fh:
        fh.write(row)
    return json_path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20)
    except OSError:
        pass
    return None


def publish(name: str, headline: Mapping[str, Any], figures: Mapping[str, Any], args: Any) -> int:
    """The usual end of a benchmark's ``main``: :func:`record` the headline (with ``args`` and
    ``figures`` as details) unless ``--no-record``, then print ``figures`` as JSON (``--json``)
    or the headline as ``key: value`` lines; returns the exit status 0."""
    if not args.no_record:
        record(name, headline, details={"args": vars(args), **figures})
    text = "\n".join(f"{key}: {value}" for key, value in headline.items())
    print(json.dumps(figures, indent=2) if args.json else text)
    return 0
