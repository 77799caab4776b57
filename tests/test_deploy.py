"""The deployment files and the cluster instructions stay in step with the project.

No network, no docker, no cloud: each file is parsed, Ray's own cluster-config schema checks the
launcher files, every ``egotune`` command they (and the README) show is parsed by egotune's real
argument parser with its search space loaded, and every project path, version pin and shared
name (token Secret, storage folder, image) agrees across the files. Renaming a space, a flag, a
Makefile target or a file they name fails here.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tuner.cli import build_parser
from tuner.cli.spaces import apply_override_arguments
from tuner.spaces import load_space

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
LAUNCHER_CONFIGS = ("cluster-aws.yaml", "cluster-gcp.yaml")
KUBERAY_FILES = ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml")
INSTRUCTIONS = ("README.md", "docs/cluster.md")
SHARED = "/mnt/egotune"  # the folder every node of every deployment mounts
AUTH_SECRET = "egotune-ray-auth"
AUTH_KEY = "auth_token"
AWS_GPU_FAMILIES = ("g5.", "g6.", "p4d.", "p5.")


# -- reading the files --------------------------------------------------------------------------


def read(name: str) -> str:
    return (ROOT / name).read_text()


def yaml_docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None]


def pyproject() -> dict[str, Any]:
    return tomllib.loads(read("pyproject.toml"))


def requirement(name: str) -> SpecifierSet:
    """The version range pyproject.toml gives ``name`` (extras ignored)."""
    for line in pyproject()["project"]["dependencies"]:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?(?P<spec>[^;]*)", line.strip())
        if match:
            return SpecifierSet(match["spec"])
    raise AssertionError(f"pyproject.toml: no dependency {name}")


def logical_lines(lines: list[str]) -> Iterator[str]:
    """Lines with shell continuations (trailing backslash) joined."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""


def yaml_comment_lines(text: str) -> list[str]:
    return [line.strip()[1:] for line in text.splitlines() if line.strip().startswith("#")]


def fenced_code_lines(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def egotune_commands(line: str) -> Iterator[list[str]]:
    """The argv (less ``egotune``) of each egotune command of a shell line (also after `--`)."""
    tokens = shlex.split(line, comments=True)
    for i, token in enumerate(tokens):
        if " " in token:  # a quoted command, e.g. ray exec CONFIG 'egotune results ...'
            yield from egotune_commands(token)
        if token == "egotune" and (i == 0 or tokens[i - 1] in ("--", "&&", ";", "||")):
            rest = tokens[i + 1 :]
            ends = [j for j, t in enumerate(rest) if t in ("&&", ";", "||", "|")]
            yield rest[: ends[0]] if ends else rest


def commands_in(name: str) -> list[list[str]]:
    text = read(name)
    if name.endswith(".md"):
        lines = list(logical_lines(fenced_code_lines(text)))
    else:
        # commands in comments are indented (`#   ray up ...`), prose is not
        shell = re.compile(r" {2,}(egotune|ray|kubectl|docker|RAY_[A-Z_]+=\S+) ")
        lines = [line for line in logical_lines(yaml_comment_lines(text)) if shell.match(line)]
        lines += re.findall(r"`(egotune [^`]* --[^`]+)`", "\n".join(yaml_comment_lines(text)))
        for doc in yaml_docs(Path(name).name):
            if doc.get("kind") == "RayJob":
                lines.append(doc["spec"]["entrypoint"])
    return [argv for line in lines for argv in egotune_commands(line)]


DOCUMENTED = [
    *(f"deploy/{name}" for name in (*LAUNCHER_CONFIGS, *KUBERAY_FILES)),
    *INSTRUCTIONS,
]
COMMANDS = [
    pytest.param(source, argv, id=f"{source}: egotune {' '.join(argv)}"[:120])
    for source in DOCUMENTED
    for argv in commands_in(source)
]


# -- egotune commands ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", DOCUMENTED)
def test_each_file_shows_egotune_commands(source):
    assert commands_in(source), f"{source}: no egotune command found"


def parse(source: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    """egotune's own parse of ``argv``; a test fails naming the file when it is refused."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        said = capsys.readouterr()
        if exc.code == 0 and {"--help", "-h"} & set(argv) and "usage: egotune" in said.out:
            return None  # a help page, as documented
        error = said.err
    if argv[0] == "submit" and "invalid choice: 'submit'" in error:
        pytest.skip("egotune submit is not part of this build")
    pytest.fail(f"{source}: `egotune {shlex.join(argv)}` does not parse: {error}")


@pytest.mark.parametrize(("source", "argv"), COMMANDS)
def test_documented_egotune_commands_parse_and_name_real_spaces(source, argv, capsys):
    args = parse(source, argv, capsys)
    if args is None:
        return
    assert getattr(args, "handler", None), f"{source}: `egotune {shlex.join(argv)}` is incomplete"
    if args.command in ("search", "submit") and args.space:
        apply_override_arguments(load_space(args.space), args)  # overrides valid for the space
    if args.command == "spaces" and getattr(args, "name", None):
        load_space(args.name)


@pytest.mark.parametrize(
    ("source", "argv"), [p for p in COMMANDS if str(p.values[0]).startswith("deploy/")]
)
def test_cluster_commands_keep_data_and_results_in_the_shared_folder(source, argv, capsys):
    args = parse(source, argv, capsys)
    for flag in ("data", "storage"):
        value = getattr(args, flag, None)
        if value is not None:
            assert str(value).startswith(f"{SHARED}/"), f"{source}: --{flag} {value}"


def test_make_targets_and_project_files_named_in_the_instructions_exist():
    targets = set(re.findall(r"^([\w-]+):", read("Makefile"), flags=re.MULTILINE))
    for source in (*INSTRUCTIONS, *(f"deploy/{n}" for n in (*LAUNCHER_CONFIGS, *KUBERAY_FILES))):
        text = read(source)
        code = "\n".join(fenced_code_lines(text)) if source.endswith(".md") else text
        for target in re.findall(r"^\s*make (\w[\w-]*)", code, flags=re.MULTILINE):
            assert target in targets, f"{source}: make {target}: no such Makefile target"
        for path in re.findall(
            r"\b((?:deploy|search_spaces|docs)/[\w.-]+\.(?:yaml|md)|deploy/Dockerfile)\b", text
        ):
            assert (ROOT / path).is_file(), f"{source}: {path} does not exist"


# -- the cluster launcher configurations --------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_ray_accepts_the_launcher_config(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(yaml_docs(name)[0]))


def is_spot(provider: str, node_config: dict[str, Any]) -> bool:
    if provider == "aws":
        return node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    scheduling = node_config.get("scheduling", {})
    return scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True


def has_gpu(provider: str, node_type: dict[str, Any]) -> bool:
    if provider == "aws":
        return node_type["node_config"]["InstanceType"].startswith(AWS_GPU_FAMILIES)
    return node_type.get("resources", {}).get("GPU", 0) >= 1


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_cpu_head_and_spot_gpu_workers_that_scale_from_zero(name):
    config = yaml_docs(name)[0]
    provider = config["provider"]["type"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert not has_gpu(provider, head)
    workers = {key: value for key, value in types.items() if key != config["head_node_type"]}
    assert len(workers) >= 2
    for key, node_type in workers.items():
        assert node_type["min_workers"] == 0, key
        assert is_spot(provider, node_type["node_config"]), key
        assert has_gpu(provider, node_type), key


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_dashboard_stays_on_loopback_and_every_node_uses_the_token(name):
    config = yaml_docs(name)[0]
    head_start = " ".join(config["head_start_ray_commands"])
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token ray start --head" in head_start
    assert "RAY_AUTH_MODE=token ray start --address=" in worker_start
    mounts = config["file_mounts"]
    (token,) = [remote for remote in mounts if remote.endswith("/.ray/auth_token")]
    assert mounts[token] == "~/.ray/auth_token"


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_head_exports_the_shared_folder_that_workers_mount(name):
    config = yaml_docs(name)[0]
    head_setup = " ".join(config["head_setup_commands"])
    worker_setup = " ".join(config["worker_setup_commands"])
    assert f'echo "{SHARED} *(rw' in head_setup and "exportfs -ra" in head_setup
    assert f'"$RAY_HEAD_IP:{SHARED}" {SHARED}' in worker_setup


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_ships_this_checkout(name):
    config = yaml_docs(name)[0]
    local_dirs = [local for local in config["file_mounts"].values() if not local.startswith("~")]
    assert local_dirs == ["."]
    for pattern_file in config["rsync_filter"]:
        assert (ROOT / pattern_file).is_file()
    setup = " ".join(config["setup_commands"])
    (remote,) = [r for r, local in config["file_mounts"].items() if local == "."]
    assert f"-e {remote.replace('/home/ubuntu', '~')} " in setup


# -- versions: one Ray, one torch, everywhere ---------------------------------------------------


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchvision|ray(?:\[[\w,]+\])?)==([\w.]+)", text))


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_starts_from_rays_gpu_image_of_the_projects_ray_and_python():
    (image,) = re.findall(r"^FROM\s+(\S+)", dockerfile(), flags=re.MULTILINE)
    match = re.fullmatch(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<py>\d)(?P<minor>\d+)-gpu", image)
    assert match, f"deploy/Dockerfile: FROM {image} is not Ray's GPU image"
    assert Version(match["ray"]) in requirement("ray")
    python = Version(f"{match['py']}.{match['minor']}")
    assert python in SpecifierSet(pyproject()["project"]["requires-python"])


def test_torch_and_ray_pins_agree_with_pyproject_and_across_deploy_files():
    (ray_version,) = re.findall(r"rayproject/ray:([\d.]+)-", dockerfile())
    docker_pins = pins(dockerfile())
    for name in ("torch", "torchvision"):
        assert Version(docker_pins[name]) in requirement(name), name
    for name in LAUNCHER_CONFIGS:
        setup = " ".join(yaml_docs(name)[0]["setup_commands"])
        found = pins(setup)
        assert {k: v for k, v in found.items() if k.startswith("torch")} == docker_pins, name
        assert found["ray[tune,default]"] == ray_version, name
        (index,) = re.findall(r"--index-url (\S+)", setup)
        assert f"TORCH_INDEX_URL={index}" in dockerfile(), name
    (cluster,) = [d for d in yaml_docs("kuberay-raycluster.yaml") if d["kind"] == "RayCluster"]
    assert cluster["spec"]["rayVersion"] == ray_version


def test_dockerfile_copies_only_files_that_exist():
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", dockerfile(), flags=re.MULTILINE)
    sources = [source for line in copies for source in line.split()]
    assert {"pyproject.toml", "tuner", "search_spaces"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"deploy/Dockerfile: COPY {source}: no such path"


# -- KubeRay ------------------------------------------------------------------------------------


def containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template["spec"]["containers"]


def kuberay_objects() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for name in KUBERAY_FILES for doc in yaml_docs(name)}


def assert_uses_the_token(env: list[dict[str, Any]], where: str) -> None:
    values = {item["name"]: item for item in env}
    assert values["RAY_AUTH_MODE"]["value"] == "token", where
    ref = values["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (AUTH_SECRET, AUTH_KEY), where


def test_every_ray_container_and_the_submitter_authenticate_with_the_secret():
    objects = kuberay_objects()
    spec = objects["RayCluster"]["spec"]
    assert spec["authOptions"] == {"mode": "token", "secretName": AUTH_SECRET}
    assert_uses_the_token(spec["autoscalerOptions"]["env"], "autoscaler")
    for container in containers(spec["headGroupSpec"]["template"]):
        assert_uses_the_token(container["env"], "head")
    for group in spec["workerGroupSpecs"]:
        for container in containers(group["template"]):
            assert_uses_the_token(container["env"], group["groupName"])
    for container in containers(objects["RayJob"]["spec"]["submitterPodTemplate"]):
        assert_uses_the_token(container["env"], "submitter")
    created = f"kubectl create secret generic {AUTH_SECRET} --from-file={AUTH_KEY}="
    assert created in read("deploy/kuberay-raycluster.yaml")


def test_gpu_workers_scale_from_zero_and_the_head_runs_no_trials():
    spec = kuberay_objects()["RayCluster"]["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        for container in containers(group["template"]):
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_kuberay_pods_share_one_claim_and_run_the_projects_image():
    objects = kuberay_objects()
    claim = objects["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    spec = objects["RayCluster"]["spec"]
    image = f"egotune:{pyproject()['project']['version']}"
    assert f"-t {image} " in dockerfile()
    templates = [
        spec["headGroupSpec"]["template"],
        *(g["template"] for g in spec["workerGroupSpecs"]),
    ]
    for template in templates:
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in template["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == [claim["metadata"]["name"]]
        for container in containers(template):
            assert container["image"] == image
            assert {"name": "shared", "mountPath": SHARED} in container["volumeMounts"]
    for container in containers(objects["RayJob"]["spec"]["submitterPodTemplate"]):
        assert container["image"] == image


def test_rayjob_runs_on_the_raycluster():
    objects = kuberay_objects()
    selector = objects["RayJob"]["spec"]["clusterSelector"]
    assert selector == {"ray.io/cluster": objects["RayCluster"]["metadata"]["name"]}
    assert objects["RayJob"]["spec"]["entrypoint"].startswith("egotune search ")
