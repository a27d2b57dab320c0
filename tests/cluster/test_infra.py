"""infra/ validates with the tools that run here.

No Docker engine or Kubernetes here, so: the compose file against the Compose
Specification's schema (check-jsonschema's vendored copy), every Kubernetes manifest
against the API's schemas (kubernetes-validate), the NATS configs with
``nats-server -t``, nginx's with ``nginx -t`` (Debian's nginx), and the images'
commands against the `videopick` CLI the tests run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock
from typer.testing import CliRunner

from common.cli import app
from common.nats_server import nats_server_binary
from tests.cluster.edge import check, nginx_binary, render

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
BIN = Path(sys.executable).parent
COMPONENTS = ("gateway", "ingest", "chat", "uploader", "transcoder")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((INFRA / "compose.yaml").read_text())
    return data


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_compose_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(INFRA / "compose.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_is_the_production_shape() -> None:
    services = compose()["services"]
    for component in COMPONENTS:
        replicas = [s for s in services.values() if s.get("command") == ["run", component]]
        assert len(replicas) == 2, f"{component}: {len(replicas)} replicas"
    assert {"nats-1", "nats-2", "nats-3", "postgres", "minio", "edge", "prometheus"} <= set(
        services
    )
    env = services["gateway-1"]["environment"]
    assert env["VIDEOPICK_NATS_REPLICAS"] == "3"
    assert env["VIDEOPICK_NATS_URL"].count("nats://") == 3
    # Every container command is one the `videopick` CLI accepts.
    commands = {tuple(s["command"]) for s in services.values() if "videopick" in s.get("image", "")}
    assert ("events", "init") in commands
    assert ("db", "upgrade") in commands
    for command in commands:
        shown = CliRunner().invoke(app, [*command, "--help"])
        assert shown.exit_code == 0, (command, shown.output)


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert "uv sync --frozen" in dockerfile
    assert re.search(r"^USER videopick$", dockerfile, re.M)
    assert 'ENTRYPOINT ["videopick"]' in dockerfile
    assert "https://" not in dockerfile  # packages come through the lock files only


def test_kubernetes_manifests_validate_against_the_api_schemas(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists(), resource
    for generator in kustomization["configMapGenerator"]:
        for name in generator.get("files", []) + generator.get("envs", []):
            assert (K8S / name).exists(), name
    docs = k8s_documents()
    bundle = tmp_path / "all.yaml"
    bundle.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(bundle)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for component in COMPONENTS:
        spec = deployments[component]["spec"]
        assert spec["replicas"] == 2
        container = spec["template"]["spec"]["containers"][0]
        assert container["args"] == ["run", component]
        assert container["securityContext"]["runAsNonRoot"] is True
    nats = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    assert nats["spec"]["replicas"] == 3
    if kubectl := shutil.which("kubectl"):  # kustomize itself, where it is installed
        built = subprocess.run(
            [kubectl, "kustomize", str(K8S)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert built.returncode == 0, built.stderr


@pytest.mark.parametrize("name", ["nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"])
def test_nats_configs_are_valid_and_durable(name: str) -> None:
    path = INFRA / name
    result = subprocess.run(
        [str(nats_server_binary()), "-c", str(path), "-t"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text()
    assert "sync_interval: always" in text
    assert text.count("nats-route://") == 3


def test_nats_config_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text(
        (INFRA / "nats" / "nats-1.conf").read_text().replace("jetstream {", "jetstream {{")
    )
    result = subprocess.run(
        [str(nats_server_binary()), "-c", str(broken), "-t"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0


def test_k8s_nats_config_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "nats.conf"
    config.write_text((K8S / "nats.conf").read_text())
    result = subprocess.run(
        [str(nats_server_binary()), "-c", str(config), "-t"],
        capture_output=True, text=True, timeout=30, check=False,
        env={"POD_NAME": "nats-0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_edge_site_template_passes_nginx_t(tmp_path: Path) -> None:
    config = render(tmp_path / "edge", ["127.0.0.1:18080", "127.0.0.1:18081"], 18443, 18079)
    result = check(config)
    assert result.returncode == 0, result.stderr


def test_edge_main_config_with_rtmp_passes_nginx_t(tmp_path: Path) -> None:
    """The compose edge's nginx.conf + rtmp.conf, with container paths moved to tmp."""
    site = render(tmp_path / "site", ["127.0.0.1:18080", "127.0.0.1:18081"], 18443, 18079)
    stream = tmp_path / "stream.d"
    stream.mkdir()
    (stream / "rtmp.conf").write_text(
        re.sub(
            r"ingest-(\d):1935", r"127.0.0.1:1936\1", (INFRA / "nginx" / "rtmp.conf").read_text()
        ).replace("listen 1935;", "listen 127.0.0.1:19350;")
    )
    module = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
    main = (INFRA / "nginx" / "nginx.conf").read_text()
    main = (
        main.replace("/etc/nginx/conf.d/*.conf", str(site.parent / "videopick.conf"))
        .replace("/etc/nginx/stream.d/*.conf", str(stream / "*.conf"))
        .replace("/var/log/nginx", str(tmp_path))
        .replace("/var/run/nginx.pid", str(tmp_path / "nginx.pid"))
        .replace("/etc/nginx/mime.types", str(_mime_types(tmp_path)))
    )
    if module.exists():  # Debian builds the stream module as a loadable one
        main = f"load_module {module};\n{main}"
    config = tmp_path / "nginx.conf"
    config.write_text(main)
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _mime_types(folder: Path) -> Path:
    debian = Path("/etc/nginx/mime.types")
    path = folder / "mime.types"
    path.write_text(debian.read_text() if debian.exists() else "types { text/html html; }\n")
    return path


def test_prometheus_scrapes_every_gateway_and_nats_node() -> None:
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target.split(":")[0]
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    services = set(compose()["services"])
    assert {"gateway-1", "gateway-2"} <= targets
    assert {f"nats-exporter-{i}" for i in (1, 2, 3)} <= targets
    assert targets - {"localhost"} <= services, targets - services


def test_every_non_http_component_serves_metrics_where_prometheus_looks() -> None:
    """Compose: VIDEOPICK_METRICS_PORT on every replica, listed in the scrape config;
    k8s: the same port in each pod's env and prometheus.io/port annotation."""
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target for job in config["scrape_configs"]
        for static in job.get("static_configs", []) for target in static["targets"]
    }  # fmt: skip
    services = compose()["services"]
    deployments = {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Deployment"}
    for component in ("ingest", "chat", "uploader", "transcoder"):
        for i in (1, 2):
            env = services[f"{component}-{i}"]["environment"]
            assert env["VIDEOPICK_METRICS_HOST"] == "0.0.0.0"
            assert f"{component}-{i}:{env['VIDEOPICK_METRICS_PORT']}" in targets
        template = deployments[component]["spec"]["template"]
        port = template["metadata"]["annotations"]["prometheus.io/port"]
        env_k8s = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        assert env_k8s["VIDEOPICK_METRICS_PORT"] == port
        assert env_k8s["VIDEOPICK_METRICS_HOST"] == "0.0.0.0"


def test_grafana_dashboard_has_the_operator_panels() -> None:
    dashboard = json.loads((INFRA / "grafana" / "dashboards" / "videopick.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Live streams", "Viewers", "Chat deliveries/s", "Upload queue", "Transcode queue",
        "Consumer lag (messages)", "Dead letters", "Consumer outcomes/s",
        "Handler p95 by consumer",
    ):  # fmt: skip
        assert wanted in titles, wanted
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert all(t["expr"] for t in panel["targets"])
    # Every videopick_* series the dashboard uses is one a component declares.
    sources = [
        REPO / "gateway" / "metrics.py",
        REPO / "gateway" / "ops_metrics.py",
        REPO / "events" / "metrics.py",
        REPO / "transcoder" / "__main__.py",
        REPO / "ingest" / "__main__.py",
    ]
    declared = {
        name.removesuffix("_total")
        for source in sources
        for name in re.findall(r'"(videopick_[a-z_]+)"', source.read_text())
    }
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"videopick_[a-z_]+", target["expr"])
    }
    assert {"videopick_live_streams", "videopick_live_viewers", "videopick_chat_deliveries"} <= used
    assert {"videopick_events_consumed", "videopick_event_handler_duration_seconds"} <= used
    assert used <= declared, used - declared
