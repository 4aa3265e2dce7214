"""The platform's Airflow image: built from the context `ariel platform render` writes, from the same
Dockerfile, requirements and pins as the local Docker engine's image."""

from __future__ import annotations

from pathlib import Path

import pytest

from ariel_airflow.cluster.render import render
from ariel_airflow.localdev.images import BuildSettings, airflow_requirements
from ariel_airflow.pins import airflow_pin

from conftest import CHART, KIT_ROOT, require_docker_daemon

pytestmark = pytest.mark.skipif(not CHART.is_dir(), reason=f"the official Airflow chart is not at {CHART}")


@pytest.fixture(scope="module")
def image_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    render("prod", out, chart=CHART)
    return out / "image"


def test_the_image_context_has_the_local_images_dockerfile_and_pins(image_context: Path) -> None:
    assert (image_context / "airflow.Dockerfile").read_bytes() == (
        KIT_ROOT / "localdev" / "airflow.Dockerfile"
    ).read_bytes()
    assert (image_context / "constraints.txt").read_bytes() == (KIT_ROOT / "constraints.txt").read_bytes()
    # The local image of a team without its own requirements.txt installs exactly these.
    assert (image_context / "requirements.txt").read_bytes() == airflow_requirements(Path("/nonexistent"))
    assert (image_context / "kit" / "src" / "ariel_airflow" / "policies.py").is_file()
    assert not list(image_context.rglob("__pycache__"))


@pytest.mark.docker
@pytest.mark.slow
def test_the_platform_image_runs_airflow_with_the_kit_as_the_chart_expects(image_context: Path) -> None:
    client = require_docker_daemon()
    settings = BuildSettings.from_env()  # render put ARIEL_EXTRA_CA_CERTS into certs/
    tag = "ariel-test/platform-image:latest"
    client.images.build(
        path=str(image_context),
        dockerfile="airflow.Dockerfile",
        target="platform",
        buildargs={"BASE_IMAGE": settings.base_image, "PIP_INDEX_URL": settings.index_url},
        tag=tag,
        rm=True,
        forcerm=True,
    )
    script = (
        "import os, airflow, ariel_airflow.policies\n"
        "import airflow.providers.cncf.kubernetes, airflow.providers.microsoft.azure\n"
        "import airflow.providers.git, airflow.providers.postgres, airflow.providers.fab\n"
        "print(airflow.__version__, os.getuid(), os.getgid())\n"
    )
    # As the chart runs it: its args through the image's /entrypoint, as uid 50000, gid 0.
    output = client.containers.run(tag, ["python", "-c", script], remove=True).decode().split()
    assert output == [airflow_pin(), "50000", "0"]
    version = client.containers.run(tag, ["bash", "-c", "exec airflow version"], remove=True).decode()
    assert version.strip().endswith(airflow_pin())
    # The chart's log groomers run `bash /clean-logs`: one pass deletes an old log, keeps a new one.
    groom = (
        "mkdir -p $AIRFLOW_HOME/logs/x && touch -d '20 days ago' $AIRFLOW_HOME/logs/x/old.log"
        " && touch $AIRFLOW_HOME/logs/new.log && (timeout 3 bash /clean-logs || true)"
        " && find $AIRFLOW_HOME/logs -type f"
    )
    left = client.containers.run(tag, ["bash", "-c", groom], remove=True).decode().split()
    assert left == ["/opt/airflow/logs/new.log"]


def test_the_image_context_trusts_the_extra_ca_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = tmp_path / "proxy.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("ARIEL_EXTRA_CA_CERTS", str(cert))
    monkeypatch.setenv("ARIEL_BASE_IMAGE", "registry.example.com/debian:bookworm")
    rendered = render("prod", tmp_path / "out", chart=CHART)
    assert (tmp_path / "out" / "image" / "certs" / "0-proxy.pem.crt").read_bytes() == cert.read_bytes()
    assert "--build-arg BASE_IMAGE=registry.example.com/debian:bookworm" in rendered.image_build
