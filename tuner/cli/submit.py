"""``egotune submit``: run ``egotune search`` on a cluster as a Ray job.

The job's entrypoint is the same ``egotune search`` command line, built from the flags given here
(quoted with :func:`shlex.join`, so no value is interpreted by the job's shell). A space given as a
local YAML file travels in the job's ``working_dir``; a bundled space name is passed as is. Paths
(``--data``, ``--storage``) are paths on the cluster. The job runs with ``RAY_AUTH_MODE=token``
when the client authenticates with a token; the token itself never goes into the runtime
environment (the dashboard shows it): the cluster's nodes already have it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tuner.cli._help import plain_help
from tuner.cli._names import NOT_PATHS, PATH_KEYS, check_experiment_name
from tuner.cli.search import add_search_arguments
from tuner.errors import EgotuneError, UsageError

JOB_ID_PREFIX = "egotune-"
_FINAL_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}


def register(subparsers: Any) -> None:
    submit = subparsers.add_parser(
        "submit",
        help="submit a search to a Ray cluster as a Ray job",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("space", help="bundled space name or local YAML file")
    submit.add_argument(
        "--address",
        required=True,
        help="the cluster's dashboard (Jobs API) URL, e.g. http://127.0.0.1:8265",
    )
    submit.add_argument("--data", type=Path, required=True, help="GTEA61 root on the cluster")
    submit.add_argument("--submission-id", help="job id (default: egotune-<experiment name>)")
    submit.add_argument(
        "--runtime-env-json",
        metavar="JSON",
        help='extra runtime environment, e.g. \'{"pip": ["optuna-dashboard"]}\'',
    )
    submit.add_argument(
        "--entrypoint-num-cpus",
        type=float,
        default=0.0,
        metavar="F",
        help="CPUs reserved for the search driver (default 0: trials get them all)",
    )
    submit.add_argument(
        "--no-wait", action="store_true", help="return after submitting instead of following logs"
    )
    submit.add_argument(
        "--json",
        action="store_true",
        help="print the job (id, entrypoint, status) as JSON on stdout; its log goes to stderr",
    )
    add_search_arguments(submit)
    submit.set_defaults(handler=run_submit_command)


def run_submit_command(args: argparse.Namespace) -> int:
    address = _dashboard_address(args.address)
    if args.name is not None:
        check_experiment_name(args.name, "--name")
    _check_cluster_paths(args)
    name = args.name or f"{Path(args.space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    runtime_env = _runtime_env(args.runtime_env_json)
    with tempfile.TemporaryDirectory(prefix="egotune-submit-") as folder:
        space_arg = _space_argument(args.space, Path(folder), runtime_env)
        _check_overrides(args)
        debug = ["--debug"] if args.debug else []
        entrypoint = shlex.join(["egotune", *debug, "search", space_arg, *search_flags(args, name)])
        from tuner.tune.session import job_client

        client = job_client(address)
        job_id = args.submission_id or f"{JOB_ID_PREFIX}{name}"
        submit_with_retry(
            client,
            address=args.address,
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=runtime_env,
            entrypoint_num_cpus=args.entrypoint_num_cpus,
            metadata={"egotune_experiment": name, "egotune_space": args.space},
        )
    report = {
        "job_id": job_id,
        "address": address,
        "experiment": name,
        "entrypoint": entrypoint,
        "follow": f"ray job logs --address {address} --follow {job_id}",
        "status": "SUBMITTED",
    }
    console = sys.stderr if args.json else sys.stdout
    print(f"submitted job {job_id}: {entrypoint}", file=console, flush=True)
    print(f"follow it: {report['follow']}", file=console, flush=True)
    if not args.no_wait:
        report["status"] = follow_job(client, job_id, out=console)
        print(f"job {job_id}: {report['status']}", file=console, flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0 if report["status"] in ("SUBMITTED", "SUCCEEDED") else 1


def submit_with_retry(client: Any, *, address: str, patience_s: float = 90.0, **job: Any) -> None:
    """Submit, waiting while a freshly started head has no job agent registered yet."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as exc:  # the Jobs API answers errors as RuntimeError
            if "No available agent" in str(exc) and time.monotonic() < deadline:
                time.sleep(3)
                continue
            raise EgotuneError(f"--address {address}: job not submitted: {exc}") from None


def search_flags(args: argparse.Namespace, name: str) -> list[str]:
    """The ``egotune search`` flags that reproduce ``args`` (everything but the space)."""
    flags = ["--data", str(args.data), "--name", name]
    if args.storage is not None:
        flags += ["--storage", str(args.storage)]
    if args.max_failures is not None:
        flags += ["--max-failures", str(args.max_failures)]
    for option, value in (
        ("--scheduler", args.scheduler),
        ("--num-samples", args.num_samples),
        ("--max-concurrent", args.max_concurrent),
        ("--cpus-per-trial", args.cpus_per_trial),
        ("--gpus-per-trial", args.gpus_per_trial),
    ):
        if value is not None:
            flags += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    for assignment in args.set_values:
        flags += ["--set", assignment]
    return flags


def follow_job(client: Any, job_id: str, poll_s: float = 2.0, out: Any = None) -> str:
    """Print the job's log as it grows (on ``out``, default stdout); return its final status."""
    out = out or sys.stdout
    shown = 0
    while True:
        status = str(client.get_job_status(job_id))
        status = status.rsplit(".", 1)[-1]  # JobStatus.SUCCEEDED -> SUCCEEDED
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            out.write(logs[shown:])
            out.flush()
            shown = len(logs)
        if status in _FINAL_STATES:
            return status
        time.sleep(poll_s)


def _dashboard_address(address: str) -> str:
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise UsageError(
            f"--address {address}: expected the dashboard URL, e.g. http://127.0.0.1:8265"
        )
    return address.rstrip("/")


def _runtime_env(extra_json: str | None) -> dict[str, Any]:
    env_vars = {"PYTHONUNBUFFERED": "1"}
    if os.environ.get("RAY_AUTH_MODE") == "token":
        env_vars["RAY_AUTH_MODE"] = "token"
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    if extra_json:
        try:
            extra = json.loads(extra_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--runtime-env-json: not valid JSON ({exc})") from None
        if not isinstance(extra, dict):
            raise UsageError("--runtime-env-json: expected a JSON object")
        env_vars.update(extra.pop("env_vars", {}) or {})
        runtime_env.update(extra)
    return runtime_env


def _space_argument(space: str, folder: Path, runtime_env: dict[str, Any]) -> str:
    """Bundled names pass through; a local file is shipped in the job's working_dir."""
    from tuner.spaces import load_space

    load_space(space)  # a malformed file or an unknown name is refused here, not in the job
    path = Path(space)
    if not path.is_file():
        return space
    if "working_dir" in runtime_env:
        raise UsageError(
            f"--runtime-env-json: sets working_dir, but SPACE {space} is a local file that "
            "egotune ships in its own working_dir; put the file in that folder and pass its name"
        )
    shipped = folder / "space"
    shipped.mkdir()
    shutil.copy2(path, shipped / path.name)
    runtime_env["working_dir"] = str(shipped)
    return path.name


def _check_cluster_paths(args: argparse.Namespace) -> None:
    """``--data``, ``--storage`` and ``--set`` paths are paths on the cluster, where this
    machine's working folder means nothing (the job runs in a folder Ray unpacks and may
    delete): relative ones are refused rather than guessed."""
    paths = [("--data", args.data), ("--storage", args.storage)]
    for item in args.set_values:
        key, _, value = item.partition("=")
        if key.strip() in PATH_KEYS and value.strip().lower() not in NOT_PATHS:
            paths.append((f"--set {key.strip()}", Path(value.strip())))
    for flag, path in paths:
        if isinstance(path, str):
            continue  # a bucket URI
        if path is not None and not (path.is_absolute() or str(path).startswith("~")):
            raise UsageError(
                f"{flag} {path}: a relative path; pass the absolute path the cluster's nodes see "
                "(e.g. /mnt/egotune/GTEA61)"
            )


def _check_overrides(args: argparse.Namespace) -> None:
    """``--set`` and the other override flags are checked here, not in the job minutes later."""
    from tuner.cli.spaces import apply_override_arguments
    from tuner.spaces import load_space

    apply_override_arguments(load_space(args.space), args)
