"""infra/ files parse, carry the keys their tools require, and agree with the package."""

import re
import subprocess
import tomllib
from pathlib import Path

import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
IMAGE = "ghcr.io/vae-study/vae-study:0.1.0"


def _yaml(name):
    return yaml.safe_load((INFRA / name).read_text())


def _dockerfile():
    return (INFRA / "Dockerfile").read_text()


def test_worker_image_is_pinned_to_the_installed_ray_and_installs_this_package():
    text = _dockerfile()
    assert re.search(rf"^ARG RAY_VERSION={re.escape(ray.__version__)}$", text, re.M)
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-cu\d+$", text, re.M)
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_pin = next(p for p in pins if p.startswith("ray"))
    assert ray.__version__.rsplit(".", 1)[0] in ray_pin  # the image and the package agree
    for folder in ("study", "trainers", "analysis", "examples"):
        assert f"COPY --chown=ray:users {folder} ./{folder}" in text
        assert (ROOT / folder).is_dir()
    assert 'pip install --no-cache-dir "torch==${TORCH_VERSION}"' in text  # before the package: no CPU/CUDA surprise
    assert text.index("torch==") < text.index('".[postgres]"')


def test_entrypoints_name_the_installed_command_and_existing_specs():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    job = _yaml("rayjob.yaml")
    cluster = _yaml("cluster-aws.yaml")
    commands = [
        job["spec"]["entrypoint"],
        *re.findall(r'ray exec \S+ "([^"]+)"', (INFRA / "cluster-aws.yaml").read_text()),
    ]
    assert len(commands) == 2
    for command in commands:
        program, verb, spec, *_ = command.split()
        assert program in scripts and verb == "run"
        assert (ROOT / spec.removeprefix("/opt/vae-study/")).is_file(), spec
    assert cluster["docker"]["image"] == IMAGE


def test_cluster_launcher_yaml():
    cluster = _yaml("cluster-aws.yaml")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "docker",
                "head_start_ray_commands", "worker_start_ray_commands"):  # fmt: skip
        assert key in cluster, key
    assert cluster["head_node_type"] in cluster["available_node_types"]
    gpu = [t for t in cluster["available_node_types"].values() if t.get("resources", {}).get("GPU")]
    assert gpu and all(t["max_workers"] >= t["min_workers"] for t in gpu)
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "-e RAY_AUTH_TOKEN" in cluster["docker"]["run_options"]


def test_rayjob_manifest():
    job = _yaml("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__ and spec["authOptions"] == {"mode": "token"}
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"]]
    assert {c["image"] for c in containers} == {IMAGE}
    assert any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers)
    assert "--address auto" in job["spec"]["entrypoint"]


def test_mlflow_compose_takes_every_secret_from_the_env_file():
    compose = _yaml("mlflow/compose.yaml")
    services = compose["services"]
    assert {"postgres", "s3", "mlflow"} <= set(services)
    assert "minio" not in (INFRA / "mlflow" / "compose.yaml").read_text().split("#")[0].lower()
    for service in services.values():
        if "image" in service:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), service["image"]
        for name, value in (service.get("environment") or {}).items():
            secret = any(word in name for word in ("PASSWORD", "SECRET", "ACCESS_KEY"))
            assert not secret or value == f"${{{name}}}", f"{name} must come from .env"
    script = (INFRA / "mlflow" / "start-mlflow.sh").read_text()
    assert "--app-name basic-auth" in script and "--backend-store-uri" in script and "s3://" in script
    needed = set(re.findall(r"\$\{(\w+)\}", (INFRA / "mlflow" / "compose.yaml").read_text()))
    example = {line.split("=")[0] for line in (INFRA / "mlflow" / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}  # fmt: skip
    assert needed <= example, needed - example
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/mlflow/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "infra/mlflow/.env must be ignored by git"


def test_infra_readme_documents_each_file():
    readme = (INFRA / "README.md").read_text()
    for name in ("Dockerfile", "cluster-aws.yaml", "rayjob.yaml", "mlflow/compose.yaml", ".env.example"):
        assert name in readme, name
