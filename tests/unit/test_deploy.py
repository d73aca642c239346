"""deploy/: the files parse, and their images, ports, paths and JetStream settings agree with
each other and with the code. No container engine runs here, so nothing is built or started:
these checks are what stands between a typo and a broken deployment."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import NotFoundError

from saga.admin.openapi import OPENAPI
from saga.admin.server import OPEN_PATHS
from saga.cli.config import ENV, RunConfig
from saga.definition import load_definitions
from saga.engine.settings import EngineSettings
from saga.nats.connection import AUTH_ENV, settings_from_env
from saga.nats.membership import Membership
from saga.nats.provision import StreamSettings, provision_engine, provision_partitions
from saga.nats.topology import Topology
from saga.participant import App
from saga.protocol import (
    DLQ_PREFIX,
    EFFECTS_BUCKET,
    INDEX_PREFIX,
    SEARCH_PREFIX,
    STATUS_PREFIX,
    TIMER_FIRE_PREFIX,
    TIMER_SCHEDULE_PREFIX,
    WORK_PREFIX,
)
from tests.conftest import DEFINITIONS, ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "kubernetes"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
MIN_NATS = (2, 12)  # message schedules (pinned consumers need 2.11)
MIN_GRACE = 20
"""Seconds an engine gets after SIGTERM: its partitions' handover takes about 1 s, but
in-flight work and an unpin request (5 s at most) may wait on a slow server."""
OTHER_VARIABLES = {
    "SAGA_LOG_FORMAT": ROOT / "saga" / "logs.py",
    "SAGA_HEALTH_ADDR": ROOT / "saga" / "participant" / "health.py",
}
"""``SAGA_*`` variables read outside ``saga run``'s settings (saga/cli/config.py ENV), and where."""


# -- helpers -------------------------------------------------------------------


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # a JSON array is YAML too
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(v) for v in value]


def healthcheck_command() -> list[str]:
    (args,) = instructions("HEALTHCHECK")
    return exec_form(args[args.index("CMD") + len("CMD") :].strip())


def admin_port() -> int:
    return port_of(dockerfile_env()["SAGA_ADMIN_ADDR"])


def go_duration(text: str) -> float:
    """Seconds of a Go duration such as ``168h``, ``2m`` or ``1m30s`` (what NACK parses)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts, f"not a Go duration: {text}"
    assert "".join(n + u for n, u in parts) == text, f"not a Go duration: {text}"
    return sum(float(n) * units[u] for n, u in parts)


def version_of(image: str) -> tuple[int, int]:
    match = re.search(r":(\d+)\.(\d+)", image)
    assert match, f"image {image} has no version tag"
    return int(match[1]), int(match[2])


def module_of(command: list[str]) -> str | None:
    """``services.X`` of ``python -m services.X ...``."""
    if command[:2] == ["python", "-m"] and len(command) > 2:
        return command[2]
    return None


def assert_module_exists(module: str) -> None:
    package, _, name = module.partition(".")
    assert package == "services", module
    assert (ROOT / "services" / f"{name}.py").is_file(), f"{module}: no services/{name}.py"


def example_apps() -> dict[str, App]:
    """The example participants: every module in services/ that holds an ``App`` named app."""
    apps = {}
    for path in sorted((ROOT / "services").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        app = getattr(importlib.import_module(f"services.{path.stem}"), "app", None)
        if isinstance(app, App):
            apps[path.stem] = app
    return apps


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interpolated(value: Any) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def assert_known_saga_variables(where: str, names: Any) -> None:
    for name in names:
        if name.startswith("SAGA_"):
            known = name in ENV.values() or name in OTHER_VARIABLES
            assert known, f"{where}: {name} is read by nothing (saga/cli/config.py ENV)"


def run_settings(env: dict[str, str]) -> RunConfig:
    """The engine's ``SAGA_*`` variables, validated as ``saga run`` validates them."""
    return RunConfig.model_validate(
        {key: env[variable] for key, variable in ENV.items() if variable in env}
    )


def example_subjects() -> tuple[list[str], list[str]]:
    sagas = load_definitions([DEFINITIONS]).values()
    listened = sorted({s for d in sagas for s in d.subjects.listened})
    published = sorted({s for d in sagas for s in d.subjects.published})
    return listened, published


# -- every file ----------------------------------------------------------------


def test_deploy_has_yaml_files() -> None:
    assert COMPOSE in YAML_FILES
    assert len(YAML_FILES) >= 10


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    loaded = docs(path)
    assert loaded, f"{path} holds no document"
    assert all(isinstance(d, dict) for d in loaded)


def test_every_directory_has_a_readme() -> None:
    folders = {DEPLOY, COMPOSE.parent, K8S, *(p for p in K8S.iterdir() if p.is_dir())}
    missing = [str(f.relative_to(ROOT)) for f in folders if not (f / "README.md").is_file()]
    assert not missing, f"no README.md in {missing}"


# -- Dockerfile ----------------------------------------------------------------


def test_dockerfile_base_is_slim_python_3_11() -> None:
    (default,) = [a for a in instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    assert default == "PYTHON_IMAGE=python:3.11-slim"
    assert all(a.split()[0] == "${PYTHON_IMAGE}" for a in instructions("FROM"))


def test_dockerfile_runs_as_numeric_non_root_user() -> None:
    user = instructions("USER")[-1]
    uid = user.partition(":")[0]
    assert uid.isdigit(), f"USER {user}: Kubernetes' runAsNonRoot needs a numeric uid"
    assert int(uid) >= 1000, f"USER {user}"
    assert dockerfile()[-1][0] in ("CMD", "ENTRYPOINT")
    last_user = max(i for i, (w, _) in enumerate(dockerfile()) if w == "USER")
    last_from = max(i for i, (w, _) in enumerate(dockerfile()) if w == "FROM")
    assert last_user > last_from, "USER must be set in the final stage"


def test_dockerfile_entrypoint_is_saga_run_with_baked_definitions() -> None:
    assert exec_form(instructions("ENTRYPOINT")[-1]) == ["saga"]
    assert exec_form(instructions("CMD")[-1]) == ["run"]
    env = dockerfile_env()
    assert env["SAGA_DEFINITIONS"] == "/app/definitions"
    assert "definitions/ /app/definitions/" in instructions("COPY")
    assert "saga validate /app/definitions" in instructions("RUN")


def test_dockerfile_puts_the_example_services_where_python_m_finds_them() -> None:
    """The wheel installs no ``services`` package: the image copies the folder into its
    working directory, which ``python -m services.X`` (compose, Kubernetes) searches."""
    final_stage = dockerfile()[
        max(i for i, (word, _) in enumerate(dockerfile()) if word == "FROM") :
    ]
    workdir = [args for word, args in final_stage if word == "WORKDIR"][-1]
    assert f"services/ {workdir}/services/" in [
        args for word, args in final_stage if word == "COPY"
    ]


def test_dockerfile_admin_address_expose_and_healthcheck_agree() -> None:
    address = dockerfile_env()["SAGA_ADMIN_ADDR"]
    assert address.startswith("0.0.0.0:"), "in a container the admin API must listen on all"
    assert instructions("EXPOSE") == [str(admin_port())]
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "slim has no curl: the healthcheck uses Python"
    assert "/healthz" in command[2]
    assert "SAGA_ADMIN_ADDR" in command[2]
    assert "/healthz" in OPENAPI["paths"]


def test_dockerfile_copies_only_what_the_context_keeps() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "the ignore file is an allow-list"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for args in instructions("COPY"):
        if args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert source.rstrip("/") in kept, f"COPY {source}: left out of the build context"


@pytest.fixture
def admin_stub() -> Iterator[tuple[int, dict[str, int]]]:
    """An HTTP server on loopback answering /healthz with the status in ``state``."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(address: str) -> int:
    command = [sys.executable, *healthcheck_command()[1:]]
    env = {**os.environ, "SAGA_ADMIN_ADDR": address}
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_dockerfile_healthcheck_command_follows_the_admin_api(
    admin_stub: tuple[int, dict[str, int]],
) -> None:
    port, state = admin_stub
    assert run_healthcheck(f"0.0.0.0:{port}") == 0
    assert run_healthcheck(f"127.0.0.1:{port}") == 0
    state["status"] = 503
    assert run_healthcheck(f"0.0.0.0:{port}") != 0


def test_dockerfile_healthcheck_fails_without_a_listener() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run_healthcheck(f"0.0.0.0:{port}") != 0


def test_dockerfile_parses_with_buildkit_parser() -> None:
    import dockerfile as parser  # the dev extra installs it

    commands = parser.parse_file(str(DEPLOY / "Dockerfile"))
    assert [c.cmd.upper() for c in commands] == [w for w, _ in dockerfile()]


# -- compose -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (loaded,) = docs(COMPOSE)
    return loaded


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def saga_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "nats-saga:local"}


def engines(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run ``saga run``: the engine and its extra replicas."""
    return {n: s for n, s in saga_services(compose).items() if s.get("command") == ["run"]}


def nats_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: s
        for n, s in compose["services"].items()
        if str(s.get("image", "")).rpartition(":-")[2].startswith("nats:")
    }


def default_image(image: str) -> str:
    """``${VAR:-default}`` -> ``default``."""
    match = re.fullmatch(r"\$\{\w+:-(.+)\}", image)
    return match[1] if match else image


def test_compose_engine_image_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    services = saga_services(compose)
    assert {"engine", "provision"} <= set(services)
    for name, service in services.items():
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, name
        assert build["dockerfile"] == "deploy/Dockerfile", name


def test_compose_engine_ports_agree(compose: dict[str, Any]) -> None:
    engine = compose["services"]["engine"]
    port = admin_port()
    assert port_of(engine["environment"]["SAGA_ADMIN_ADDR"]) == port
    assert engine["environment"]["SAGA_ADMIN_ADDR"].startswith("0.0.0.0:")
    probe = " ".join(engine["healthcheck"]["test"])
    url = re.search(r"http://[^'\" ]+", probe)
    assert url, probe
    parts = urlsplit(url[0])
    assert parts.hostname == "127.0.0.1"
    assert parts.port == port
    assert parts.path in OPENAPI["paths"]
    assert parts.path in OPEN_PATHS
    assert port in container_ports(engine)


def test_compose_otlp_endpoint_is_jaeger(compose: dict[str, Any]) -> None:
    jaeger = compose["services"]["jaeger"]
    assert "jaegertracing/" in default_image(jaeger["image"])
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {4317, 4318, 16686} <= container_ports(jaeger)
    for name, service in saga_services(compose).items():
        endpoint = urlsplit(service["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert endpoint.hostname == "jaeger", name
        assert endpoint.port in container_ports(jaeger), name
        # http/protobuf (the default) is 4318; gRPC would need OTEL_EXPORTER_OTLP_PROTOCOL.
        protocol = service["environment"].get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        assert endpoint.port == (4317 if protocol == "grpc" else 4318), name


def test_compose_nats_url_lists_every_node(compose: dict[str, Any]) -> None:
    nodes = nats_nodes(compose)
    assert len(nodes) == 3
    for name, service in saga_services(compose).items():
        urls = [urlsplit(u) for u in service["environment"]["SAGA_NATS_URL"].split(",")]
        assert {u.hostname for u in urls} == set(nodes), name
        assert {u.port for u in urls} == {4222}, name


def test_compose_nats_nodes_form_one_cluster(compose: dict[str, Any]) -> None:
    nodes = nats_nodes(compose)
    names = set()
    for name, service in nodes.items():
        assert version_of(default_image(service["image"])) >= MIN_NATS
        (config_mount,) = [
            v for v in service["volumes"] if v.endswith(":/etc/nats/nats-server.conf:ro")
        ]
        config = (COMPOSE.parent / config_mount.split(":")[0]).read_text(encoding="utf-8")
        assert re.search(rf"^server_name: {name}$", config, re.M), name
        names.add(name)
        assert re.search(r"^port: 4222$", config, re.M)
        assert re.search(r"^\s*store_dir: /data$", config, re.M)
        assert any(v.endswith(":/data") and not v.startswith(".") for v in service["volumes"])
        routes = set(re.findall(r"nats-route://([\w-]+):6222", config))
        assert routes == set(nodes), f"{name}: routes {routes}"
        assert "jetstream {" in config
        assert "cluster {" in config
    assert names == set(nodes)


@pytest.mark.parametrize("index", [1, 2, 3])
def test_compose_nats_configs_pass_nats_server_check(index: int) -> None:
    from saga.nats.server import find_server_binary

    binary = find_server_binary()  # the dev extra installs it
    path = DEPLOY / "compose" / "nats" / f"nats-{index}.conf"
    result = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def test_compose_runs_every_example_service(compose: dict[str, Any]) -> None:
    modules = set()
    for service in compose["services"].values():
        for key in ("entrypoint", "command"):
            module = module_of(list(service.get(key) or []))
            if module:
                assert_module_exists(module)
                modules.add(module)
    participants = {f"services.{name}" for name in example_apps()}
    assert participants <= modules, f"not in compose: {participants - modules}"
    assert {"services.orders", "services.trips"} <= modules


def test_compose_services_probe_their_own_readiness(compose: dict[str, Any]) -> None:
    """Not the image's default healthcheck (the engine's admin API): a participant asks its
    own /readyz on the address it serves; one-shots have none."""
    for name, service in saga_services(compose).items():
        if name in engines(compose):
            continue
        if service.get("restart") == "no" or name == "provision":
            assert service["healthcheck"] == {"disable": True}, name
            continue
        address = service["environment"]["SAGA_HEALTH_ADDR"]
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://{address}/readyz" in probe, name


def test_compose_engine_replicas_share_partitions(compose: dict[str, Any]) -> None:
    replicas = engines(compose)
    assert set(replicas) == {"engine", "engine-2"}
    settings = {
        name: run_settings({k: interpolated(v) for k, v in s["environment"].items()})
        for name, s in replicas.items()
    }
    # The same partition count everywhere, or replicas route to different partitions.
    assert {s.partitions for s in settings.values()} == {settings["engine"].partitions}
    assert settings["engine"].partitions >= len(replicas)
    assert {s.stream_replicas for s in settings.values()} == {len(nats_nodes(compose))}
    provision = compose["services"]["provision"]["environment"]
    assert int(provision["SAGA_PARTITIONS"]) == settings["engine"].partitions
    assert int(provision["SAGA_STREAM_REPLICAS"]) == settings["engine"].stream_replicas
    # Only one replica may publish the admin port; the others can be scaled.
    assert [n for n, s in replicas.items() if s.get("ports")] == ["engine"]
    assert replicas["engine-2"]["profiles"], "a second replica is opt-in"
    for name, service in replicas.items():
        assert service["healthcheck"] == replicas["engine"]["healthcheck"], name
        assert go_duration(service["stop_grace_period"]) >= MIN_GRACE, name


def test_compose_sets_only_known_saga_variables(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert_known_saga_variables(f"compose {name}", service.get("environment") or {})


def test_compose_dependencies_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
    provision = services["provision"]
    assert provision["entrypoint"] == ["python", "/app/provision.py"]
    assert "deploy/provision.py /app/provision.py" in instructions("COPY")
    hotel = importlib.import_module("services.hotel")
    assert provision["command"] == ["--bucket", hotel.TRIPS_BUCKET]
    assert int(provision["environment"]["SAGA_STREAM_REPLICAS"]) == len(nats_nodes(compose))


def test_provision_script_calls_the_engines_provisioning(monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script(DEPLOY / "provision.py")
    inspect.signature(provision_engine).bind(
        None, Topology(), StreamSettings(replicas=3), listened=[], published=[]
    )
    inspect.signature(provision_partitions).bind(
        None, Topology(), StreamSettings(replicas=3), 12, EngineSettings().pin_timeout
    )
    assert script.settings_from_env is settings_from_env  # the engine's SAGA_NATS_* variables
    assert set(AUTH_ENV.values()) <= set(ENV.values())
    read = re.findall(r"os\.environ\.get\(\"(SAGA_\w+)\"", (DEPLOY / "provision.py").read_text())
    assert set(read) == {
        "SAGA_NATS_URL",
        "SAGA_DEFINITIONS",
        "SAGA_STREAM_REPLICAS",
        "SAGA_PARTITIONS",
    }
    assert_known_saga_variables("provision.py", read)
    assert script.arguments().parse_args([]).partitions == 0
    monkeypatch.setenv("SAGA_PARTITIONS", "12")
    monkeypatch.setenv("SAGA_STREAM_REPLICAS", "3")
    args = script.arguments().parse_args([])
    assert (args.partitions, args.replicas) == (12, 3)
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0


# -- kubernetes ----------------------------------------------------------------


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in YAML_FILES if K8S in p.parents for d in docs(p)]


def k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [d for _, d in k8s_objects() if d.get("kind") == kind]
    return [d for d in found if name is None or d["metadata"]["name"] == name]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s("Deployment")}


def engine_container() -> dict[str, Any]:
    (container,) = deployments()["saga-engine"]["spec"]["template"]["spec"]["containers"]
    return container


def saga_config() -> dict[str, str]:
    (config,) = k8s("ConfigMap", "saga-config")
    return config["data"]


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(found)


def test_kustomizations_reference_existing_files() -> None:
    referenced = set()
    for path in K8S.rglob("kustomization.yaml"):
        (kustomization,) = docs(path)
        for resource in kustomization["resources"]:
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: {resource} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").is_file(), f"{target}: no kustomization"
            referenced.add(target)
    manifests = {
        p.resolve()
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml" and p.parent.name != "nats"  # Helm values
    }
    assert manifests <= referenced, f"in no kustomization: {manifests - referenced}"


def test_k8s_objects_have_kind_and_name() -> None:
    for path, doc in k8s_objects():
        if doc.get("kind") == "Kustomization" or path.parent.name == "nats":
            continue
        assert doc["apiVersion"], path
        assert doc["kind"], path
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), path


def test_k8s_engine_probes_hit_the_admin_api() -> None:
    container = engine_container()
    port = admin_port()
    assert port_of(saga_config()["SAGA_ADMIN_ADDR"]) == port
    assert saga_config()["SAGA_ADMIN_ADDR"].startswith("0.0.0.0:")
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert path in OPENAPI["paths"], f"{path} is not served by the admin API"
        assert path in OPEN_PATHS, f"{path} needs the token, which a probe does not send"
        assert resolve_port(container, get["port"]) == port, probe


def test_k8s_admin_service_and_network_policy_use_the_admin_port() -> None:
    container = engine_container()
    (service,) = k8s("Service", "saga-engine-admin")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    labels = deployments()["saga-engine"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (svc_port,) = service["spec"]["ports"]
    assert resolve_port(container, svc_port["targetPort"]) == admin_port()
    (policy,) = k8s("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    for rule in policy["spec"]["ingress"]:
        assert [resolve_port(container, p["port"]) for p in rule["ports"]] == [admin_port()]


def engine_env() -> dict[str, str]:
    """The engine pod's plain environment: the ConfigMap, then the container's values."""
    env = dict(saga_config())
    env.update({e["name"]: e["value"] for e in engine_container()["env"] if "value" in e})
    return env


def test_k8s_engine_runs_partitioned_with_replicated_streams() -> None:
    settings = run_settings(engine_env())
    engine = deployments()["saga-engine"]
    assert settings.partitions >= engine["spec"]["replicas"] > 1, "every replica owns some"
    (values,) = docs(K8S / "nats" / "values.yaml")
    assert settings.stream_replicas == values["config"]["cluster"]["replicas"]
    (compose,) = docs(COMPOSE)
    compose_env = compose["services"]["engine"]["environment"]
    assert settings.partitions == int(compose_env["SAGA_PARTITIONS"]), "compose and k8s differ"
    assert settings.stream_replicas == int(compose_env["SAGA_STREAM_REPLICAS"])
    pod = engine["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= MIN_GRACE
    assert engine["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_k8s_sets_only_known_saga_variables() -> None:
    assert_known_saga_variables("saga-config", saga_config())
    for name, deployment in deployments().items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert_known_saga_variables(name, [e["name"] for e in container.get("env", [])])
    assert_known_saga_variables("Dockerfile", dockerfile_env())
    for variable, reader in OTHER_VARIABLES.items():
        assert f'"{variable}"' in reader.read_text(encoding="utf-8"), f"{reader} no longer reads it"


def test_k8s_engine_deployment_settings() -> None:
    engine = deployments()["saga-engine"]
    assert engine["spec"]["replicas"] == 2
    container = engine_container()
    assert container["args"] == ["run"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SAGA_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "saga-admin"
    assert [r["configMapRef"]["name"] for r in container["envFrom"]] == ["saga-config"]
    assert saga_config()["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
    assert urlsplit(saga_config()["SAGA_NATS_URL"]).scheme == "nats"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["definitions"]["mountPath"] == saga_config()["SAGA_DEFINITIONS"]
    assert saga_config()["SAGA_DEFINITIONS"] == dockerfile_env()["SAGA_DEFINITIONS"]
    volumes = {v["name"]: v for v in engine["spec"]["template"]["spec"]["volumes"]}
    assert volumes["definitions"]["configMap"]["name"] == "saga-definitions"


def test_k8s_pods_are_non_root_read_only_with_resources() -> None:
    uid = int(instructions("USER")[-1].partition(":")[0])
    (kustomization,) = docs(K8S / "kustomization.yaml")
    (image,) = kustomization["images"]
    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            assert container["image"] == image["name"], name
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"], name
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name


def test_k8s_participants_run_every_example_service() -> None:
    modules = set()
    for name, deployment in deployments().items():
        if name == "saga-engine":
            continue
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        module = module_of(container["command"])
        assert module, f"{name}: not a `python -m services.X` command"
        assert_module_exists(module)
        assert name == f"saga-{module.partition('.')[2]}"
        modules.add(module)
    assert modules == {f"services.{name}" for name in example_apps()}


def test_k8s_definitions_configmap_equals_definitions_folder() -> None:
    (configmap,) = k8s("ConfigMap", "saga-definitions")
    files = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(DEFINITIONS.iterdir())
        if p.suffix in (".yaml", ".yml")
    }
    hint = "run: python deploy/kubernetes/render_definitions.py"
    assert configmap["data"] == files, f"the ConfigMap is out of date; {hint}"
    script = load_script(K8S / "render_definitions.py")
    rendered = (K8S / "engine" / "definitions.yaml").read_text(encoding="utf-8")
    assert script.render() == rendered, hint


def test_k8s_manifests_validate_against_kubernetes_schemas() -> None:
    import kubernetes_validate as validator  # the dev extra installs it

    checked = 0
    for path, doc in k8s_objects():
        if doc.get("kind") == "Kustomization" or path.parent.name == "nats":
            continue
        if doc["apiVersion"].startswith("jetstream.nats.io/"):
            continue  # NACK's CRDs are not in the schema set; see the NACK tests below
        validator.validate(doc, validator.latest_version(), strict=True)
        checked += 1
    assert checked >= 10


# -- NATS Helm values ----------------------------------------------------------


def test_helm_values_make_a_3_node_jetstream_cluster_on_file_storage() -> None:
    (values,) = docs(K8S / "nats" / "values.yaml")
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] == 3
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", jetstream["fileStore"]["pvc"]["size"])
    assert jetstream["memoryStore"]["enabled"] is False
    assert version_of("nats:" + values["container"]["image"]["tag"]) >= MIN_NATS
    host = urlsplit(saga_config()["SAGA_NATS_URL"]).hostname or ""
    assert host.startswith("nats.nats.svc"), "release `nats` in namespace `nats`"


# -- NACK ----------------------------------------------------------------------


def nack(kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (K8S / "nack").glob("*.yaml"):
        for doc in docs(path):
            if doc.get("kind") == kind:
                assert doc["apiVersion"] == "jetstream.nats.io/v1beta2"
                spec = doc["spec"]
                found[spec.get("name") or spec.get("durableName") or spec["bucket"]] = spec
    return found


def test_nack_streams_match_engine_provisioning() -> None:
    topology, settings = Topology(), StreamSettings()
    streams = nack("Stream")
    assert set(streams) == {
        topology.events_stream,
        topology.timers_stream,
        topology.dlq_stream,
        topology.work_stream,
        topology.index_stream,
    }
    index = streams[topology.index_stream]
    assert index["subjects"] == [f"{INDEX_PREFIX}.>", f"{SEARCH_PREFIX}.>"]
    assert (index["maxMsgsPerSubject"], index["allowDirect"], index["allowMsgTtl"]) == (
        1,
        True,
        True,
    )
    listened, published = example_subjects()
    events = streams[topology.events_stream]
    wanted = sorted({*listened, *published, f"{STATUS_PREFIX}.>"})
    missing, extra = (
        sorted(set(wanted) - set(events["subjects"])),
        sorted(set(events["subjects"]) - set(wanted)),
    )
    assert events["subjects"] == wanted, f"nack/streams.yaml: add {missing}, remove {extra}"
    assert go_duration(events["maxAge"]) == settings.events_max_age
    assert events["allowDirect"] is True
    timers = streams[topology.timers_stream]
    assert timers["subjects"] == [f"{TIMER_SCHEDULE_PREFIX}.>", f"{TIMER_FIRE_PREFIX}.>"]
    assert timers["allowMsgSchedules"] is True
    assert timers["maxMsgsPerSubject"] == 1
    assert "maxAge" not in timers
    dlq = streams[topology.dlq_stream]
    assert dlq["subjects"] == [f"{DLQ_PREFIX}.>"]
    assert go_duration(dlq["maxAge"]) == settings.dlq_max_age
    for name, spec in streams.items():
        if name != topology.work_stream:
            assert spec["retention"] == "limits", name
        assert spec["storage"] == settings.storage.value, name
        assert go_duration(spec["duplicateWindow"]) == settings.duplicate_window, name
        assert spec["replicas"] == 3, name


def assert_delivery_settings(name: str, spec: dict[str, Any], settings: StreamSettings) -> None:
    assert spec["deliverPolicy"] == "all", name
    assert spec["ackPolicy"] == "explicit", name
    assert [go_duration(b) for b in spec["backoff"]] == list(settings.ack_wait_backoff), name
    # With a backoff the server takes its first value as the ack wait; say so explicitly,
    # as NACK's schema defaults ackWait to 1ns.
    assert go_duration(spec["ackWait"]) == settings.ack_wait_backoff[0], name
    assert spec["maxAckPending"] == settings.max_ack_pending, name
    assert "replicas" not in spec, f"{name}: a consumer inherits its stream's replicas"


def filters(spec: dict[str, Any]) -> list[str]:
    assert not ("filterSubject" in spec and "filterSubjects" in spec)
    return [spec["filterSubject"]] if "filterSubject" in spec else spec["filterSubjects"]


def test_nack_engine_consumers_match_engine_provisioning() -> None:
    topology, settings = Topology(), StreamSettings()
    consumers = nack("Consumer")
    listened, _ = example_subjects()
    engine = consumers[topology.engine_consumer]
    assert engine["streamName"] == topology.events_stream
    missing = sorted(set(listened) - set(filters(engine)))
    assert filters(engine) == listened, f"nack/consumers.yaml saga-engine: add {missing}"
    assert engine["maxDeliver"] == settings.max_deliver
    assert_delivery_settings(topology.engine_consumer, engine, settings)
    timers = consumers[topology.timer_consumer]
    assert timers["streamName"] == topology.timers_stream
    assert filters(timers) == [f"{TIMER_FIRE_PREFIX}.>"]
    assert timers["maxDeliver"] == -1
    assert_delivery_settings(topology.timer_consumer, timers, settings)


def test_nack_participant_consumers_match_the_example_apps() -> None:
    topology = Topology()
    consumers = nack("Consumer")
    apps = example_apps()
    partitions = {topology.partition_consumer(p) for p in range(configured_partitions())}
    assert set(consumers) == {topology.engine_consumer, topology.timer_consumer, *apps, *partitions}
    events = nack("Stream")[topology.events_stream]["subjects"]
    for name, app in apps.items():
        spec = consumers[app.name]
        assert spec["streamName"] == app.settings.topology.events_stream, name
        assert filters(spec) == sorted(app.routes), name
        assert set(app.routes) <= set(events), f"{name} consumes subjects the stream lacks"
        assert spec["maxDeliver"] == app.settings.stream.max_deliver, name
        assert_delivery_settings(name, spec, app.settings.stream)


def test_nack_buckets_match_engine_and_participants() -> None:
    topology, settings = Topology(), StreamSettings()
    hotel = importlib.import_module("services.hotel")
    buckets = nack("KeyValue")
    participant_buckets = {topology.replies_bucket, EFFECTS_BUCKET, hotel.TRIPS_BUCKET}
    engine_buckets = {topology.instances_bucket, topology.members_bucket}
    assert set(buckets) == {*engine_buckets, *participant_buckets}
    for name, spec in buckets.items():
        assert spec["history"] == 1, name
        assert spec["storage"] == settings.storage.value, name
        assert spec["replicas"] == 3, name
        if name in participant_buckets:  # saga.participant.buckets: entries age out
            assert go_duration(spec["ttl"]) == settings.events_max_age, name
        elif name != topology.members_bucket:  # compared with the engine's below
            assert "ttl" not in spec, name


# -- NACK, partitioned mode: compared with what the engine itself sends --------


class Recorder:
    """Stands in for the nats client and JetStream context: answers ``provision_partitions``
    and ``Membership`` as if nothing existed yet, and keeps what they ask to create."""

    def __init__(self) -> None:
        self.streams: list[StreamConfig] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.buckets: list[KeyValueConfig] = []

    def jetstream(self) -> Recorder:
        return self

    async def stream_info(self, name: str) -> Any:
        raise NotFoundError(description=f"no stream {name}")

    async def add_stream(self, config: StreamConfig) -> Any:
        self.streams.append(config)
        return SimpleNamespace(config=config)

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:
        self.requests.append((subject, json.loads(payload)))
        return SimpleNamespace(data=b"{}")

    async def key_value(self, bucket: str) -> Any:
        raise NotFoundError(description=f"no bucket {bucket}")

    async def create_key_value(self, config: KeyValueConfig) -> Any:
        self.buckets.append(config)

        async def put(key: str, value: bytes) -> int:
            return 1

        async def keys() -> list[str]:
            return []

        return SimpleNamespace(put=put, keys=keys)


def configured_partitions() -> int:
    return int(saga_config()["SAGA_PARTITIONS"])


async def engine_partitioned_resources() -> Recorder:
    """What a partitioned `saga run` creates, with the Kubernetes settings."""
    topology, engine = Topology(), EngineSettings()
    streams = StreamSettings(replicas=int(saga_config()["SAGA_STREAM_REPLICAS"]))
    recorder = Recorder()
    nc: Any = recorder
    await provision_partitions(nc, topology, streams, configured_partitions(), engine.pin_timeout)
    members = Membership(nc, topology.members_bucket, "test", engine.member_ttl, streams.replicas)
    await members.beat([])
    return recorder


def nanoseconds(duration: str) -> int:
    return round(go_duration(duration) * 1e9)


async def test_nack_work_stream_matches_the_engines() -> None:
    (wanted,) = (await engine_partitioned_resources()).streams
    spec = nack("Stream")[Topology().work_stream]
    assert spec["subjects"] == wanted.subjects == [f"{WORK_PREFIX}.>"]
    assert spec["retention"] == "workqueue" == wanted.retention.value
    assert spec["storage"] == wanted.storage.value
    assert go_duration(spec["maxAge"]) == wanted.max_age
    assert go_duration(spec["duplicateWindow"]) == wanted.duplicate_window
    assert spec["replicas"] == wanted.num_replicas == 3
    assert "allowDirect" not in spec


async def test_nack_partition_consumers_match_the_engines() -> None:
    topology = Topology()
    requests = (await engine_partitioned_resources()).requests
    consumers = nack("Consumer")
    assert len(requests) == configured_partitions()
    for subject, body in requests:
        config = body["config"]
        name = config["durable_name"]
        assert subject == f"$JS.API.CONSUMER.CREATE.{topology.work_stream}.{name}"
        spec = consumers.get(name)
        assert spec, f"nack/partitions.yaml lacks consumer {name} (SAGA_PARTITIONS changed?)"
        assert spec["streamName"] == body["stream_name"] == topology.work_stream
        assert filters(spec) == [config["filter_subject"]]
        assert spec["deliverPolicy"] == config["deliver_policy"]
        assert spec["ackPolicy"] == config["ack_policy"]
        assert [nanoseconds(b) for b in spec["backoff"]] == config["backoff"]
        assert nanoseconds(spec["ackWait"]) == config["backoff"][0]
        assert spec["maxDeliver"] == config["max_deliver"]
        assert spec["maxAckPending"] == config["max_ack_pending"]
        # NACK applies pinned_client only with a pinnedTtl (its priority_timeout).
        assert spec["priorityPolicy"] == config["priority_policy"] == "pinned_client"
        assert spec["priorityGroups"] == config["priority_groups"]
        assert nanoseconds(spec["pinnedTtl"]) == config["priority_timeout"]
        assert "replicas" not in spec, f"{name}: a consumer inherits its stream's replicas"
    pinned = {n for n, s in consumers.items() if s["streamName"] == topology.work_stream}
    assert pinned == {b["config"]["durable_name"] for _, b in requests}, "one per partition"


async def test_nack_heartbeat_bucket_matches_the_engines() -> None:
    (wanted,) = (await engine_partitioned_resources()).buckets
    spec = nack("KeyValue")[wanted.bucket]
    assert spec["history"] == wanted.history
    assert go_duration(spec["ttl"]) == wanted.ttl == EngineSettings().member_ttl
    assert spec["storage"] == wanted.storage.value
    assert spec["replicas"] == wanted.replicas
