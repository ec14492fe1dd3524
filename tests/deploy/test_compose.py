"""docker-compose.yml: validated by `docker-compose config` when installed, and structurally in
pure Python — services and profiles, images, health-ordered start-up, and the wiring between
service, emulator, collector and Langfuse (endpoints and keys that must agree)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.conftest import COMPOSE_FILE, DEPLOY, REPO, load_yaml, require_binary

CORE = {
    "voicetrace",
    "emulator",
    "otel-collector",
    "otelcol-init",
    "langfuse-web",
    "langfuse-worker",
    "postgres",
    "clickhouse",
    "redis",
    "minio",
}
OBSERVABILITY = {"prometheus", "grafana", "tempo"}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose's `${VAR:-default}` / `${VAR}` / `$$` with `env` (default: nothing set)."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1)) or (m.group(2) or "")

    return _VAR.sub(sub, value)


def env_of(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in interpolate(env).items()}


def command_args(compose: dict[str, Any], service: str) -> list[str]:
    return [str(a) for a in interpolate(compose["services"][service]["command"])]


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# -- docker-compose itself ---------------------------------------------------------------------


def _docker_compose() -> str:
    """The real binary: skipped when absent on a developer machine, a failure under CI=true."""
    return require_binary("docker-compose")


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [([], {}), (["--profile", "observability"], {"OTELCOL_OVERLAY": "tempo"})],
)
def test_docker_compose_accepts_the_file(args: list[str], extra_env: dict[str, str]) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "VOICETRACE_JWT_SECRET": "0" * 64,
        **extra_env,
    }
    result = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), *args, "config", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# -- services and profiles ------------------------------------------------------------------------


def test_core_services_run_by_default_and_observability_is_a_profile(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == CORE | OBSERVABILITY
    for name in CORE:
        assert "profiles" not in services[name], name
    for name in OBSERVABILITY:
        assert services[name]["profiles"] == ["observability"], name


def test_images_are_pinned_to_the_versions_the_stack_needs(compose: dict[str, Any]) -> None:
    images = {n: s["image"] for n, s in compose["services"].items() if "image" in s}
    for name, image in images.items():
        if image == "cgr.dev/chainguard/minio:latest":  # upstream's; Chainguard tags only latest
            continue
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin a tag ({image})"
    collector = images["otel-collector"]
    assert re.fullmatch(r"otel/opentelemetry-collector-contrib:\d+\.\d+\.\d+", collector)
    assert images["langfuse-web"] == "langfuse/langfuse:4"
    assert images["langfuse-worker"] == "langfuse/langfuse-worker:4"
    assert images["postgres"] == "postgres:17"
    assert images["redis"] == "redis:7"
    assert images["minio"] == "cgr.dev/chainguard/minio:latest"
    major, minor = (int(x) for x in images["clickhouse"].split(":")[1].split(".")[:2])
    assert (major, minor) >= (25, 12), "Langfuse v4 needs ClickHouse >= 25.12"


def test_redis_never_evicts_langfuse_queues_and_keeps_them_on_a_volume(
    compose: dict[str, Any],
) -> None:
    args = command_args(compose, "redis")
    assert arg_after(args, "--maxmemory-policy") == "noeviction"
    mounts = dict(v.split(":")[:2] for v in compose["services"]["redis"]["volumes"])
    assert "/data" in mounts.values() and set(mounts) <= set(compose["volumes"])


def test_postgres_and_clickhouse_run_in_utc(compose: dict[str, Any]) -> None:
    postgres = env_of(compose, "postgres")
    assert (postgres["TZ"], postgres["PGTZ"]) == ("UTC", "UTC")
    assert env_of(compose, "clickhouse").get("TZ", "UTC") == "UTC"  # the image's default


def test_every_deliberate_difference_from_upstream_is_named_in_a_comment() -> None:
    text = COMPOSE_FILE.read_text()
    header = text.split("services:", 1)[0]
    assert "official v4 docker-compose.yml" in header
    assert text.count("Differs from upstream") >= 4


def test_start_up_is_ordered_by_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s healthcheck"
            elif condition == "service_completed_successfully":
                assert "restart" not in services[dep], f"{dep} is a one-shot job"
            else:
                assert condition == "service_started"
    for name in ("langfuse-web", "langfuse-worker"):
        deps = services[name]["depends_on"]
        assert {d for d, s in deps.items() if s["condition"] == "service_healthy"} == {
            "postgres",
            "clickhouse",
            "redis",
            "minio",
        }
    assert services["voicetrace"]["depends_on"]["emulator"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_bind_mounted_files_exist_in_the_repository(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} is missing"
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()
    named = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes") or []}
    assert {n for n in named if not n.startswith(".")} <= set(compose["volumes"])


# -- wiring ---------------------------------------------------------------------------------------


def test_service_exports_to_the_collector_and_not_directly_to_langfuse(
    compose: dict[str, Any],
) -> None:
    env = env_of(compose, "voicetrace")
    assert env["VOICETRACE_HOST"] == "0.0.0.0"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "otel-collector", 4318)
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_TRACES_EXPORTER"] == "otlp" and env["OTEL_METRICS_EXPORTER"] == "otlp"
    # with Langfuse keys the service would export a second copy of every span itself
    assert not {"LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"} & set(env)
    collector = load_yaml(REPO / "otel-collector.yaml")
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(f":{endpoint.port}")


def test_collector_auth_matches_the_keys_langfuse_is_initialised_with(
    compose: dict[str, Any],
) -> None:
    web = env_of(compose, "langfuse-web")
    collector = env_of(compose, "otel-collector")
    assert web["LANGFUSE_INIT_ORG_ID"], "without it Langfuse initialises nothing"
    assert web["LANGFUSE_INIT_PROJECT_ID"]
    public, secret = (
        web["LANGFUSE_INIT_PROJECT_PUBLIC_KEY"],
        web["LANGFUSE_INIT_PROJECT_SECRET_KEY"],
    )
    assert public.startswith("pk-lf-") and secret.startswith("sk-lf-")
    decoded = base64.b64decode(collector["LANGFUSE_AUTH_B64"], validate=True).decode()
    assert decoded == f"{public}:{secret}"
    host = urlsplit(collector["LANGFUSE_HOST"])
    assert host.hostname == "langfuse-web" and host.port == 3000 and host.path in ("", "/")


def test_collector_mounts_its_config_and_the_overlay_it_is_told_to_merge(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["otel-collector"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts["./otel-collector.yaml"] == "/etc/otelcol-contrib/config.yaml"
    overlays_dir = mounts["./deploy/collector"]
    for env in ({}, {"OTELCOL_OVERLAY": "tempo"}):
        configs = [a.split("=", 1)[1] for a in interpolate(service["command"], env)]
        assert configs[0] == "/etc/otelcol-contrib/config.yaml"
        overlay = configs[1].removeprefix(overlays_dir + "/")
        assert (DEPLOY / "collector" / overlay).is_file(), overlay


def test_langfuse_web_and_worker_share_storage_settings(compose: dict[str, Any]) -> None:
    web, worker = env_of(compose, "langfuse-web"), env_of(compose, "langfuse-worker")
    shared = {
        "DATABASE_URL",
        "SALT",
        "ENCRYPTION_KEY",
        "CLICKHOUSE_MIGRATION_URL",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_USER",
        "CLICKHOUSE_PASSWORD",
        "CLICKHOUSE_CLUSTER_ENABLED",
        "LANGFUSE_S3_EVENT_UPLOAD_BUCKET",
        "LANGFUSE_S3_EVENT_UPLOAD_ENDPOINT",
        "LANGFUSE_S3_EVENT_UPLOAD_ACCESS_KEY_ID",
        "LANGFUSE_S3_EVENT_UPLOAD_SECRET_ACCESS_KEY",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_AUTH",
        "NEXTAUTH_URL",  # the worker needs it too (upstream sets it on both)
    }
    for key in shared:
        assert web[key] == worker[key], key
    assert re.fullmatch(r"[0-9a-f]{64}", web["ENCRYPTION_KEY"])
    assert web["NEXTAUTH_URL"] and web["NEXTAUTH_SECRET"]
    assert not any(k.startswith("LANGFUSE_INIT_") for k in worker)


def test_langfuse_credentials_match_its_datastores(compose: dict[str, Any]) -> None:
    web = env_of(compose, "langfuse-web")
    db = urlsplit(web["DATABASE_URL"])
    postgres = env_of(compose, "postgres")
    assert (db.hostname, db.username, db.password) == (
        "postgres",
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    clickhouse = env_of(compose, "clickhouse")
    assert urlsplit(web["CLICKHOUSE_URL"]).hostname == "clickhouse"
    assert web["CLICKHOUSE_USER"] == clickhouse["CLICKHOUSE_USER"]
    assert web["CLICKHOUSE_PASSWORD"] == clickhouse["CLICKHOUSE_PASSWORD"]
    assert web["REDIS_HOST"] == "redis"
    assert web["REDIS_AUTH"] == arg_after(command_args(compose, "redis"), "--requirepass")
    minio = env_of(compose, "minio")
    assert web["LANGFUSE_S3_EVENT_UPLOAD_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert web["LANGFUSE_S3_EVENT_UPLOAD_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert urlsplit(web["LANGFUSE_S3_EVENT_UPLOAD_ENDPOINT"]).hostname == "minio"
    # MinIO creates the bucket as a directory before it serves (as upstream).
    start = str(interpolate(compose["services"]["minio"]["command"]))
    assert f"mkdir -p /data/{web['LANGFUSE_S3_EVENT_UPLOAD_BUCKET']} && minio server" in start


def test_service_without_gemini_key_is_wired_to_the_emulator(compose: dict[str, Any]) -> None:
    service = env_of(compose, "voicetrace")
    assert service["GEMINI_API_KEY"] == "", "empty by default: the emulator is the default"
    emulator_args = command_args(compose, "emulator")
    url = urlsplit(service["VOICETRACE_EMULATOR_URL"])
    assert url.scheme == "https"
    # the emulator's certificate is issued for the host name it binds
    assert url.hostname == arg_after(emulator_args, "--host") == "emulator"
    assert url.port == int(arg_after(emulator_args, "--port"))
    bundle = service["VOICETRACE_EMULATOR_CA_BUNDLE"]
    assert bundle == arg_after(emulator_args, "--bundle")
    volumes = {
        name: dict(v.split(":")[:2] for v in compose["services"][name]["volumes"])
        for name in ("voicetrace", "emulator")
    }
    shared = {vol for vol, path in volumes["emulator"].items() if bundle.startswith(path + "/")}
    assert shared and all(bundle.startswith(volumes["voicetrace"][vol] + "/") for vol in shared), (
        "the CA bundle must be on a volume both containers mount"
    )
    assert service["EMULATOR_API_KEY"] == env_of(compose, "emulator")["EMULATOR_API_KEY"]


def test_prometheus_scrapes_the_ports_the_collector_serves(compose: dict[str, Any]) -> None:
    collector = load_yaml(REPO / "otel-collector.yaml")
    exporter_port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    readers = collector["service"]["telemetry"]["metrics"]["readers"]
    self_port = str(readers[0]["pull"]["exporter"]["prometheus"]["port"])
    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    assert {f"otel-collector:{exporter_port}", f"otel-collector:{self_port}"} <= targets
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    flag = next(a for a in command_args(compose, "prometheus") if a.startswith("--config.file="))
    assert flag.split("=", 1)[1] == mounts["./deploy/prometheus/prometheus.yml"]


def test_grafana_is_provisioned_with_datasources_and_the_dashboard(
    compose: dict[str, Any],
) -> None:
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yaml")["providers"]
    dashboards_path = providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == dashboards_path
    assert list((DEPLOY / "grafana/dashboards").glob("*.json"))
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/datasources.yaml")
    urls = {d["type"]: urlsplit(d["url"]) for d in datasources["datasources"]}
    assert (urls["prometheus"].hostname, urls["prometheus"].port) == ("prometheus", 9090)
    assert urls["tempo"].hostname == "tempo"
    tempo = load_yaml(DEPLOY / "tempo" / "tempo.yaml")
    assert urls["tempo"].port == tempo["server"]["http_listen_port"]
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc.endswith(":" + env_of(compose, "otel-collector")["TEMPO_ENDPOINT"].split(":")[1])


# What each service cannot start without (Langfuse: its self-hosting docs; the datastores: their
# images' entry points; voicetrace: Settings). Checked on `docker-compose config`'s output, so it
# is the file as compose resolves it (anchors merged, defaults applied).
REQUIRED: dict[str, set[str]] = {
    "voicetrace": {"VOICETRACE_JWT_SECRET", "OTEL_EXPORTER_OTLP_ENDPOINT"},
    "langfuse-worker": {
        "DATABASE_URL",
        "SALT",
        "ENCRYPTION_KEY",
        "NEXTAUTH_URL",
        "CLICKHOUSE_MIGRATION_URL",
        "CLICKHOUSE_URL",
        "CLICKHOUSE_USER",
        "CLICKHOUSE_PASSWORD",
        "LANGFUSE_S3_EVENT_UPLOAD_BUCKET",
        "LANGFUSE_S3_EVENT_UPLOAD_ENDPOINT",
        "LANGFUSE_S3_EVENT_UPLOAD_ACCESS_KEY_ID",
        "LANGFUSE_S3_EVENT_UPLOAD_SECRET_ACCESS_KEY",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_AUTH",
    },
    "postgres": {"POSTGRES_PASSWORD", "TZ", "PGTZ"},
    "clickhouse": {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"},
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
    "otel-collector": {"LANGFUSE_HOST", "LANGFUSE_AUTH_B64", "OTELCOL_STORAGE_DIR"},
}
REQUIRED["langfuse-web"] = REQUIRED["langfuse-worker"] | {"NEXTAUTH_SECRET"}
DEV_ENV = {"VOICETRACE_JWT_SECRET": "0" * 64}


def resolved(compose_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of `compose_file` (relative paths from the repository)."""
    return subprocess.run(
        [_docker_compose(), "--project-directory", str(REPO), "-f", str(compose_file), "config"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def missing_required(config: dict[str, Any]) -> dict[str, set[str]]:
    missing = {}
    for service, names in REQUIRED.items():
        env = config["services"].get(service, {}).get("environment") or {}
        absent = {n for n in names if not str(env.get(n) or "")}
        if absent:
            missing[service] = absent
    return missing


def test_every_service_gets_the_variables_it_requires() -> None:
    result = resolved(COMPOSE_FILE, DEV_ENV)
    assert result.returncode == 0, result.stderr
    assert missing_required(yaml.safe_load(result.stdout)) == {}


def test_the_check_fails_when_a_required_variable_is_dropped(tmp_path: Path) -> None:
    """Drop NEXTAUTH_URL from the shared Langfuse block (the worker's only source of it)."""
    text = COMPOSE_FILE.read_text()
    line = "  NEXTAUTH_URL: ${LANGFUSE_NEXTAUTH_URL:-http://localhost:3000}\n"
    assert text.count(line) == 1
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(line, ""))
    result = resolved(broken, DEV_ENV)
    assert result.returncode == 0, result.stderr
    missing = missing_required(yaml.safe_load(result.stdout))
    assert missing == {"langfuse-worker": {"NEXTAUTH_URL"}, "langfuse-web": {"NEXTAUTH_URL"}}


def test_docker_compose_refuses_to_start_without_a_jwt_secret_and_the_hint_works() -> None:
    result = resolved(COMPOSE_FILE, {})
    assert result.returncode != 0
    assert "VOICETRACE_JWT_SECRET" in result.stderr
    # The hint is copy-pastable: run in bash it sets a 256-bit hex secret (not a PID).
    hint = result.stderr.strip().rsplit("e.g. ", 1)[1]
    assert hint.startswith("export VOICETRACE_JWT_SECRET=")
    shell = subprocess.run(
        ["bash", "-c", f'{hint} && printf %s "$VOICETRACE_JWT_SECRET"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shell.returncode == 0, shell.stderr
    assert re.fullmatch(r"[0-9a-f]{64}", shell.stdout), shell.stdout
