"""cluster.yaml, checked offline: it passes the installed ray's cluster-launcher schema, and every
command it (and the cluster how-to, docs/cluster.md) runs names files, extras, flags and variables that
exist; the study commands of README.md and docs/study.md use existing flags too.

What this cannot check without a cloud account: that the image tag, the torch index, the AMI parameter
and the instance types exist in AWS / Docker Hub (cluster.yaml's comments say which were verified)."""

import copy
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import ray
import torch
import yaml

from ray_session import REPO_ROOT

CLUSTER_YAML = REPO_ROOT / "cluster.yaml"
REMOTE_REPO = "/home/ray/deepdiff-tune"
RAY_PROVIDED_ENV = {"RAY_HEAD_IP"}  # set by the cluster launcher in worker start commands
HOW_TO = REPO_ROOT / "docs" / "cluster.md"  # the cluster how-to
# every page that shows study commands: their flags must exist
STUDY_DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "study.md", HOW_TO]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(config) -> dict:
    """The config as `ray up` sees it: merged with the AWS defaults of the installed ray."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(config))


def all_commands(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    commands = [c for k in keys for c in config.get(k, [])]
    for node_type in config["available_node_types"].values():
        commands += node_type.get("initialization_commands", []) + node_type.get("worker_setup_commands", [])
    return commands


def docker_env(config: dict) -> dict[str, str]:
    options = config["docker"].get("run_options", []) + config["docker"].get("head_run_options", [])
    return dict(o.split(" ", 1)[1].split("=", 1) for o in options if o.startswith("--env "))


def words(command: str) -> list[str]:
    return shlex.split(command, comments=False)


def test_validates_against_the_installed_ray_schema(prepared):
    from ray.autoscaler._private.util import validate_config

    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    head, workers = prepared["available_node_types"]["head.cpu"], prepared["available_node_types"]["worker.gpu"]
    assert head["resources"] == {"CPU": 0}, "no trial on the head: it runs the driver and MLflow"
    assert workers["node_config"]["InstanceType"].startswith("g")  # a GPU instance family
    assert 0 <= workers["min_workers"] <= workers["max_workers"] <= prepared["max_workers"]


def test_image_is_ray_of_the_tested_version_with_cuda_and_the_project_s_python(config):
    image = config["docker"]["image"]
    name, tag = image.split(":")
    version, python, platform = tag.split("-")
    assert name == "rayproject/ray" and version == ray.__version__
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == "py311" and requires == ">=3.11"
    assert re.fullmatch(r"cu\d{3}", platform), platform
    # the torch CUDA build comes from the index of the same CUDA version as the image
    assert docker_env(config)["TORCH_INDEX"].endswith(f"/whl/{platform}")


def test_setup_installs_this_project_with_existing_extras_and_the_tested_torch(config):
    assert config["file_mounts"] == {REMOTE_REPO: "."}, "the repository, mounted on every node"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    installs = [words(c) for c in config["setup_commands"] if c.startswith("pip install")]
    project = [w for ws in installs for w in ws if w.startswith(REMOTE_REPO)]
    assert len(project) == 1, installs
    path, wanted = re.fullmatch(r"(.*)\[(.*)\]", project[0]).groups()
    assert (REPO_ROOT / Path(path).relative_to(REMOTE_REPO) / "pyproject.toml").is_file()
    assert set(wanted.split(",")) <= set(extras), (wanted, list(extras))
    assert "tune" in wanted.split(",")
    torch_pin = [w for ws in installs for w in ws if w.startswith("torch==")]
    assert torch_pin == [f"torch=={torch.__version__.split('+')[0]}"]  # the version the tests run with
    for needed in ("pyproject.toml", "deepdiff", "deepdiff_study", "ablations", "tune"):
        assert needed not in config["rsync_exclude"]  # nothing the project needs is left out of the mount


def test_every_environment_variable_used_is_defined(config):
    defined = set(docker_env(config)) | RAY_PROVIDED_ENV
    used = {m for c in all_commands(config) for m in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", c)}
    assert used <= defined, used - defined
    assert docker_env(config)["DEEPDIFF_BUCKET"].startswith("s3://")


@pytest.mark.slow
def test_mlflow_server_on_loopback_with_a_lasting_store_and_artifacts_in_the_bucket(config):
    from mlflow.cli import server

    (command,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    argv = words(command.split("; ")[-1].split(">", 1)[0])
    assert argv[:3] == ["nohup", "mlflow", "server"]
    known = {opt for p in server.params for opt in p.opts}
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert set(flags) <= known, set(flags) - known
    assert flags["--host"] == "127.0.0.1", "never bound to every interface"
    assert "--backend-store-uri" not in flags, "the store's URI holds a password: never on a command line"
    (option,) = [p for p in server.params if "--backend-store-uri" in p.opts]
    assert option.envvar == "MLFLOW_BACKEND_STORE_URI"  # the server reads it from its environment
    assert "export MLFLOW_BACKEND_STORE_URI;" in command
    assert flags["--artifacts-destination"].startswith("$DEEPDIFF_BUCKET/")
    assert "psycopg2-binary>=2.9" in words(config["head_setup_commands"][0])  # MLflow's Postgres driver
    # no inbound rule beyond Ray's defaults (SSH + intra-cluster): port 5000 is not open to anyone
    assert config["provider"]["security_group"]["IpPermissions"] == []


def test_ray_start_flags_exist_in_the_installed_ray(config):
    from ray.scripts.scripts import start

    known = {opt for p in start.params for opt in p.opts}
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" not in command:
            continue
        argv = words(command.split(";")[-1])
        flags = {a.split("=")[0] for a in argv if a.startswith("--")}
        assert flags <= known, flags - known


def test_the_head_s_data_copy_is_valid_python(config):
    (command,) = [c for c in config["head_setup_commands"] if c.startswith("python -c")]
    argv = words(command)
    compile(argv[2], "head_setup_commands", "exec")
    assert argv[3] == "$DEEPDIFF_BUCKET/deepdiffchrome"


def study_commands(text: str) -> list[list[str]]:
    """Every `run_ablation.py` / `deepdiff-ablation` command line in a document (continuations joined)."""
    text = text.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for marker in ("tune/run_ablation.py", "deepdiff-ablation "):
            if marker in line.replace("--experiment deepdiff-ablation", "") and not line.lstrip().startswith(("#", "|", "-", "*")):
                tail = line.split(marker, 1)[1]
                for end in ("#", "`", "'"):  # a comment, the end of inline code, the end of `bash -c '...'`
                    tail = tail.split(end, 1)[0]
                found.append(shlex.split(tail))
    return found


def known_study_flags() -> set[str]:
    from deepdiff_study import driver

    return {opt for action in driver.build_parser()._actions for opt in action.option_strings}


def test_every_study_command_in_the_how_to_uses_existing_flags():
    known = known_study_flags()
    commands = study_commands(HOW_TO.read_text())
    assert any("--address" in c and "--dry-run" in c for c in commands), "the how-to shows the cluster dry run"
    assert any("--storage" in c and "--resume" in c for c in commands), "and the resume"
    assert all("--address" in c for c in commands if "--storage" in c), "a study on the cluster joins it"
    for argv in commands:
        flags = {a.split("=")[0] for a in argv if a.startswith("--")}
        assert flags <= known, (argv, flags - known)


@pytest.mark.parametrize("page", STUDY_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_study_command_in_the_docs_uses_existing_flags(page):
    known = known_study_flags()
    commands = study_commands(page.read_text())
    assert commands, f"{page} shows no study command"
    for argv in commands:
        flags = {a.split("=")[0] for a in argv if a.startswith("--")}
        assert flags <= known, (page, argv, flags - known)


# ---- secrets and permissions ------------------------------------------------------------------------

def test_no_database_password_in_cluster_yaml_only_the_name_of_a_secret_on_the_head(config):
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"://[^/\s:@'\"]+:[^@\s'\"]+@", text), "a user:password@ URI"
    assert ":password@" not in text.lower() and "CHANGE_ME" not in text
    head_env = dict(o.split(" ", 1)[1].split("=", 1) for o in config["docker"]["head_run_options"] if o.startswith("--env "))
    every_node_env = dict(o.split(" ", 1)[1].split("=", 1) for o in config["docker"]["run_options"] if o.startswith("--env "))
    assert "MLFLOW_BACKEND_STORE_URI" not in head_env | every_node_env
    assert "MLFLOW_DB_SECRET" in head_env and "MLFLOW_DB_SECRET" not in every_node_env  # the name, on the head only
    worker_commands = config["worker_start_ray_commands"] + config.get("worker_setup_commands", [])
    assert not any("MLFLOW_DB_SECRET" in c or "MLFLOW_BACKEND_STORE_URI" in c for c in worker_commands)


def test_the_head_fetches_the_store_uri_from_the_secret_in_the_shell_that_starts_mlflow(config):
    (command,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    fetch, rest = command.split(" || exit 1; ", 1)
    assert fetch.startswith('MLFLOW_BACKEND_STORE_URI="$(python -c ') and fetch.endswith(' "$MLFLOW_DB_SECRET")"')
    argv = words(fetch.removeprefix('MLFLOW_BACKEND_STORE_URI="$(').removesuffix(')"'))
    assert argv[:2] == ["python", "-c"] and argv[3:] == ["$MLFLOW_DB_SECRET"]
    code = compile(argv[2], "the secret's fetch", "exec")
    assert {"get_secret_value", "get_parameter"} <= set(code.co_names)
    assert rest.startswith("export MLFLOW_BACKEND_STORE_URI; nohup mlflow server ")
    ray_start = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert ray_start and not any("MLFLOW_BACKEND_STORE_URI" in c for c in ray_start)  # another shell: Ray never sees it
    assert "boto3>=1.26" in words(config["head_setup_commands"][0])


def test_workers_have_their_own_instance_profile_not_the_head_s(config):
    head = config["available_node_types"]["head.cpu"]["node_config"].get("IamInstanceProfile", {})
    head_profile = head.get("Arn", head.get("Name", "instance-profile/ray-head-v1"))  # Ray's default for the head
    worker = config["available_node_types"]["worker.gpu"]["node_config"]["IamInstanceProfile"]["Arn"]
    assert worker.rsplit("/", 1)[1] != head_profile.rsplit("/", 1)[1]
    assert worker.rsplit("/", 1)[1] == "deepdiff-tune-worker"
    assert "deepdiff-tune-worker" in HOW_TO.read_text()  # its bucket-only policy is documented there
