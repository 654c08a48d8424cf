"""docker-compose.yml and deploy/: valid against the Compose Specification's JSON schema, and
consistent with the repository (paths, Dockerfiles, settings, dashboards, Prometheus jobs) and
with the rules of this deployment (GPU for Triton, loopback ports, no secrets in the file)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from hfrisk import dashboards as dash
from hfrisk.core.config import KafkaSettings, Settings, StreamSettings, TritonSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
DEPLOY_README = (ROOT / "deploy" / "README.md").read_text()
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")
LONG_RUNNING = {"kafka", "redis", "triton", "worker", "prometheus", "grafana"}


def _default(value: str) -> str:
    """A compose value with every ${VAR:-default} replaced by its default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def test_compose_file_is_valid_against_the_compose_specification():
    from importlib import metadata

    import jsonschema

    # check-jsonschema (a test dependency) vendors the official compose-spec.json. Read the file
    # without importing the package: its CLI module breaks on some click releases.
    vendored = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(Path(metadata.distribution("check-jsonschema").locate_file(vendored)).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []
    # The schema is strict: a misspelled key would not pass.
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_the_stack_has_every_part():
    assert set(SERVICES) == {"kafka", "topics", "redis", "triton", "worker", "replay", "prometheus", "grafana"}


def test_build_contexts_and_dockerfiles_exist():
    built = {name: s["build"] for name, s in SERVICES.items() if "build" in s}
    assert set(built) >= {"triton", "worker", "topics", "replay"}
    for name, build in built.items():
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build["dockerfile"]).is_file(), name


def test_triton_runs_on_one_gpu_with_the_gpu_config():
    triton = SERVICES["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert triton["command"][0] == "tritonserver"
    assert set(triton["command"][1:]) >= {
        "--model-repository=/models", "--model-control-mode=explicit", "--load-model=hfrisk", "--model-config-name=gpu",
    }
    assert "./triton_models:/models:ro" in triton["volumes"]
    shm = triton["shm_size"]
    assert re.fullmatch(r"\d+(gb|g|mb|m)", str(shm).lower()) and not str(shm).lower().endswith(("mb", "m"))


def test_triton_image_adds_onnxruntime_gpu_and_numpy_below_2():
    text = (ROOT / "deploy" / "triton.Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\$\{TRITON_VERSION\}-py3$", text, flags=re.MULTILINE)
    install = " ".join(re.findall(r"pip install[^\n]*", text))
    assert '"onnxruntime-gpu' in install and '"numpy>=1.26,<2"' in install
    assert not re.search(r'"onnxruntime[<>=]', install), "the CPU onnxruntime package would shadow onnxruntime-gpu"


def test_hfrisk_image_copies_every_package_folder():
    text = (ROOT / "deploy" / "hfrisk.Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.MULTILINE))
    pyproject = (ROOT / "pyproject.toml").read_text()
    package_dirs = set(re.findall(r'"hfrisk(?:\.\w+)?" = "(\w+)"', pyproject))
    assert package_dirs and copied == package_dirs
    for folder in copied:
        assert (ROOT / folder).is_dir()
    lines = (ROOT / "deploy" / "hfrisk.Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**" and {f"!{d}/**" for d in package_dirs} <= set(ignore)


def test_bind_mounts_exist_in_the_repository():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = _default(volume.split(":")[0])
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, missing from the repository"
                assert volume.endswith(":ro"), f"{name}: {volume} should be read-only"


def test_published_ports_are_loopback_only():
    published = [(name, port) for name, s in SERVICES.items() for port in s.get("ports", [])]
    assert published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_no_secret_is_written_in_the_file():
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|CREDENTIAL", re.IGNORECASE)
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if secretish.search(key):
                assert key.endswith("__FILE") and str(value).startswith("/run/secrets/"), \
                    f"{name}: {key} must come from a secret file, not a value"
    grafana = SERVICES["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert COMPOSE["secrets"]["grafana_admin_password"] == {"environment": "GRAFANA_ADMIN_PASSWORD"}
    assert "grafana_admin_password" in grafana["secrets"]


def test_every_variable_the_file_reads_is_documented():
    used = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    used |= {s["environment"] for s in COMPOSE.get("secrets", {}).values() if "environment" in s}
    assert used
    missing = {var for var in used if f"`{var}`" not in DEPLOY_README}
    assert missing == set(), "document these in deploy/README.md"


def test_hfrisk_settings_in_the_file_are_real_settings():
    def known(env_name: str) -> bool:
        section, _, field = env_name.removeprefix("HFRISK_").lower().partition("__")
        model = Settings.model_fields.get(section)
        return model is not None and field in model.annotation.model_fields

    names = {key for s in SERVICES.values() for key in (s.get("environment") or {}) if key.startswith("HFRISK_")}
    names |= set(re.findall(r"\b(HFRISK_\w+__\w+)\b", (ROOT / "deploy" / "hfrisk.Dockerfile").read_text()))
    assert names
    assert {n for n in names if not known(n)} == set()


def test_long_running_services_have_healthchecks_and_start_in_order():
    for name in LONG_RUNNING:
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dependency == "topics" else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
    assert set(SERVICES["worker"]["depends_on"]) == {"topics", "redis", "triton"}
    assert SERVICES["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert "ensure_topics" in " ".join(SERVICES["topics"]["entrypoint"])


def test_workers_scale_and_the_replay_is_a_demo_profile():
    worker = SERVICES["worker"]
    assert worker["command"][0] == "worker"
    # Prometheus scrapes from another container: the metrics endpoint cannot stay on loopback.
    assert worker["command"][worker["command"].index("--metrics-host") + 1] == "0.0.0.0"
    assert worker["deploy"]["replicas"] >= 1
    assert "container_name" not in worker and "ports" not in worker  # both would block --scale
    assert SERVICES["replay"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in SERVICES.items() if n != "replay")


def test_prometheus_scrapes_the_workers_and_triton_as_the_dashboard_expects():
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    assert set(dash.PROMETHEUS_JOBS.values()) <= set(jobs)
    worker_sd = jobs[dash.PROMETHEUS_JOBS["worker"]]["dns_sd_configs"][0]
    metrics_port = int(SERVICES["worker"]["environment"]["HFRISK_STREAM__METRICS_PORT"])
    assert worker_sd["names"] == ["worker"] and worker_sd["port"] == metrics_port == StreamSettings().metrics_port
    triton_targets = jobs[dash.PROMETHEUS_JOBS["triton"]]["static_configs"][0]["targets"]
    assert triton_targets == [f"triton:{TritonSettings().metrics_port}"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in SERVICES["prometheus"]["volumes"]


def test_prometheus_loads_the_generated_monitoring_rules():
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["prometheus"]["volumes"]}
    assert PROMETHEUS["rule_files"] == ["/etc/prometheus/rules/hfrisk-rules.yml"]
    assert mounts["/etc/prometheus/rules/hfrisk-rules.yml"] == "./dashboards/" + dash.RULES_PATH
    assert (ROOT / "dashboards" / dash.RULES_PATH).is_file()


def test_grafana_gets_the_generated_provisioning_and_dashboards():
    grafana = SERVICES["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning/datasources"] == "./dashboards/provisioning/datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./dashboards/provisioning/dashboards"
    provider = yaml.safe_load(dash.provisioning_files()["provisioning/dashboards/hfrisk.yaml"])["providers"][0]
    assert mounts[provider["options"]["path"]] == "./dashboards"
    datasources = dash.provisioning_files()["provisioning/datasources/hfrisk.yaml"]
    for var in re.findall(r"\$\{(\w+)\}", datasources):
        assert var in grafana["environment"], f"provisioning reads {var}, which Grafana's environment lacks"
    assert grafana["environment"]["GF_PLUGINS_PREINSTALL"].startswith(f"{dash.REDIS_PLUGIN}@")


def test_kafka_and_redis_match_the_settings():
    kafka = SERVICES["kafka"]
    assert kafka["image"] == f"apache/kafka:{KafkaSettings().version}"
    assert int(kafka["environment"]["KAFKA_MESSAGE_MAX_BYTES"]) >= KafkaSettings().max_message_bytes
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert SERVICES["worker"]["environment"]["HFRISK_REDIS__URL"].startswith("redis://redis:6379")


def test_the_worker_has_room_in_dev_shm_for_its_windows():
    from hfrisk.core.config import StreamSettings
    from hfrisk.model.contract.card import default_card
    from hfrisk.stream.scoring.batch import shared_memory_for_batch

    shm = str(SERVICES["worker"]["shm_size"]).lower()
    size, unit = re.fullmatch(r"(\d+)(gb|g|mb|m)", shm).groups()
    mb = int(size) * (1024 if unit.startswith("g") else 1)
    # The blocks of a full budget, with room for the pool's semaphores and a second budget's worth:
    # as configured, and as docs/bench/sizing.md configures a worker that drains a backlog.
    for stream in (StreamSettings(), StreamSettings(batch_size=256, part_windows=32)):
        budget, _ = shared_memory_for_batch(default_card(), stream.batch_size, stream.prep_workers,
                                            stream.part_windows)
        assert mb >= 2 * budget, (stream.batch_size, budget)


# -- deploy/compose.server-preprocessing.yml: the front end on Triton's GPU, raw windows through shared memory --

SERVER_MODE = yaml.safe_load((ROOT / "deploy" / "compose.server-preprocessing.yml").read_text())
RAW_DOCKERFILE = (ROOT / "deploy" / "triton-raw.Dockerfile").read_text()


def _requirements(path: Path) -> dict[str, str]:
    """``name -> specifier`` of a requirements file (names normalised as packaging does)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = [line.strip() for line in path.read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(r.name): str(r.specifier) for r in reqs}


def test_the_server_mode_override_is_valid_and_merges_onto_the_file():
    from importlib import metadata

    import jsonschema

    vendored = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(Path(metadata.distribution("check-jsonschema").locate_file(vendored)).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(SERVER_MODE)] == []
    assert SERVER_MODE["name"] == COMPOSE["name"]  # the same project, so it overrides, not adds
    assert set(SERVER_MODE["services"]) <= set(SERVICES)


def test_server_mode_triton_serves_the_raw_model_and_shares_its_dev_shm_with_the_workers():
    triton, worker = SERVER_MODE["services"]["triton"], SERVER_MODE["services"]["worker"]
    assert triton["build"] == {"context": ".", "dockerfile": "deploy/triton-raw.Dockerfile",
                               "args": {"TRITON_VERSION": "${TRITON_VERSION:-24.10}"}}
    assert (ROOT / triton["build"]["dockerfile"]).is_file()
    assert triton["image"] != SERVICES["triton"]["image"]  # never mistaken for the default image
    # The whole command is replaced: it keeps every argument of the default one and adds the raw model.
    assert triton["command"] == [*SERVICES["triton"]["command"][:4], "--load-model=hfrisk_raw",
                                 *SERVICES["triton"]["command"][4:]]
    assert triton["ipc"] == "shareable" and worker["ipc"] == "service:triton"
    shm = re.fullmatch(r"(\d+)gb", str(triton["shm_size"]))
    assert shm and int(shm.group(1)) > int(str(SERVICES["triton"]["shm_size"]).removesuffix("gb"))
    env = worker["environment"]
    assert env == {"HFRISK_STREAM__PREPROCESS_ON": "server", "HFRISK_TRITON__SHARED_MEMORY": "system"}
    settings = Settings(stream=StreamSettings(preprocess_on=env["HFRISK_STREAM__PREPROCESS_ON"]),
                        triton=TritonSettings(shared_memory=env["HFRISK_TRITON__SHARED_MEMORY"]))
    assert (settings.stream.preprocess_on, settings.triton.shared_memory) == ("server", "system")
    # The worker waits for Triton at start-up, which is where it checks that Triton maps its regions.
    command = SERVICES["worker"]["command"]
    assert float(command[command.index("--wait-for-triton-s") + 1]) > 0
    assert "`deploy/compose.server-preprocessing.yml`" in DEPLOY_README


def test_the_raw_triton_image_installs_hfrisk_without_its_dependencies():
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\$\{TRITON_VERSION\}-py3$", RAW_DOCKERFILE, flags=re.MULTILINE)
    base_install = re.findall(r"pip install --no-cache-dir (\"[^\n]*)", (ROOT / "deploy" / "triton.Dockerfile").read_text())
    assert base_install and base_install[0] in RAW_DOCKERFILE  # the same numpy and onnxruntime-gpu
    assert "pip install --no-cache-dir --no-deps ." in RAW_DOCKERFILE
    assert "-r /tmp/triton-raw-requirements.txt" in RAW_DOCKERFILE
    copied = set(re.findall(r"^COPY (\w+) \./\1$", RAW_DOCKERFILE, flags=re.MULTILINE))
    package_dirs = set(re.findall(r'"hfrisk(?:\.\w+)?" = "(\w+)"', (ROOT / "pyproject.toml").read_text()))
    assert package_dirs and copied == package_dirs
    lines = (ROOT / "deploy" / "triton-raw.Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**" and {f"!{d}/**" for d in package_dirs} | {"!deploy/triton-raw-requirements.txt"} <= set(ignore)


def test_the_raw_triton_image_gets_what_the_raw_model_imports_as_pyproject_pins_it():
    """Score two windows with the raw model in a fresh interpreter and list the distributions it
    imported: each that is one of hfrisk's own dependencies must be in the image's requirements
    (but onnxruntime, which the image has as onnxruntime-gpu), pinned as pyproject.toml pins it."""
    import subprocess
    import sys

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from importlib import metadata

    # The installed package's requirements are pyproject.toml's dependencies (its extras aside).
    pyproject = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier)
                 for r in metadata.requires("hfrisk") if "extra ==" not in r}
    wanted = _requirements(ROOT / "deploy" / "triton-raw-requirements.txt")
    assert {name: pyproject.get(name) for name in wanted} == wanted
    script = """
import json, sys
from pathlib import Path
import numpy as np
before = set(sys.modules)
from hfrisk.model.contract.card import default_card
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.serving.raw_windows import RawWindowModel
onnx = Path(sys.argv[1])
card = default_card()
model = RawWindowModel(card, onnx, backend=ArrayBackend("torch", "cpu"), intra_op_threads=1, batch_size=2)
model.score(np.zeros((2, 12, 5000), np.float32), np.ones((2, 12), bool), np.full((2, 1), 500.0, np.float32))
import importlib.metadata as md
dists = md.packages_distributions()
print(json.dumps(sorted({d for m in set(sys.modules) - before for d in dists.get(m.split(".")[0], [])})))
"""
    onnx = ROOT / "triton_models" / "hfrisk" / "1" / "model.onnx"
    run = subprocess.run([sys.executable, "-c", script, str(onnx)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {canonicalize_name(d) for d in json.loads(run.stdout.strip().splitlines()[-1])}
    assert {"torch", "scipy", "onnxruntime"} <= imported
    direct = (imported & set(pyproject)) - {"onnxruntime"}
    assert direct <= set(wanted), f"add to deploy/triton-raw-requirements.txt: {sorted(direct - set(wanted))}"
