"""Every image the local platform runs, built here and loaded into the nodes (nothing is pulled).

- the platform's Airflow image, from ``render``'s image context (the token refresher is in it);
- the database image (PostgreSQL and PgBouncer from Debian), as the chart's PgBouncer and as the
  database stand-in;
- Azurite (npm), the Azure Storage emulator: the task logs' storage account (``standins``);
- PgBouncer's metrics exporter: the chart's sidecar is upstream's ``pgbouncer_exporter``, which no
  registry or module proxy reachable here serves. A stand-in with its command answers the sidecar's
  probes (``pgbouncer_exporter health`` asks PgBouncer's console) and serves no metrics.

Each is loaded with one layer on top: the cluster CA appended to the system CA bundle, as a company
adds its own CA, so the pods trust the Azure stand-ins' certificates (``standins``). The node knows
the image under its own tag; the Docker engine keeps the image as built.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ariel_airflow.cluster.image import airflow_image, build_platform_image
from ariel_airflow.cluster.render import VALUES_FILE, read_values
from ariel_airflow.localdev.docker_tools import docker_client
from ariel_airflow.localdev.images import ensure_azurite_image, ensure_db_image
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localkube.components import LOCAL_REGISTRY
from ariel_airflow.localkube.images import load_images
from ariel_airflow.localkube.layout import Node

DB_IMAGE = f"{LOCAL_REGISTRY}/ariel-db:local"  # platform/helm/values-local.yaml names these two
EXPORTER_IMAGE = f"{LOCAL_REGISTRY}/ariel-pgbouncer-exporter:local"
AZURITE_IMAGE = f"{LOCAL_REGISTRY}/ariel-azurite:local"  # the Blob Storage stand-in (standins)
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's, which the images' SSL_CERT_FILE names
EXPORTER_SCRIPT = """\
#!/bin/sh
# A stand-in for pgbouncer_exporter (its image is not reachable here): `health` asks PgBouncer's
# admin console over DATABASE_URL, as the exporter's own health check does; no metrics are served.
if [ "${1:-}" = health ]; then
    exec psql "$DATABASE_URL" --no-psqlrc --quiet --tuples-only --command "SHOW VERSION" >/dev/null
fi
exec sleep infinity
"""
TRUST_SUFFIX = "-trusting-cluster-ca"


def build(rendered: Path, progress: Progress) -> list[str]:
    """Build the platform's images for the local cluster; their tags."""
    client = docker_client()
    airflow = build_platform_image(
        rendered / "image", airflow_image(read_values(rendered / VALUES_FILE)), progress
    )
    build_dir = rendered.parent / f".{rendered.name}-build"
    db = ensure_db_image(client, build_dir, progress)
    client.images.get(db).tag(DB_IMAGE)
    client.images.get(ensure_azurite_image(client, build_dir, progress)).tag(AZURITE_IMAGE)
    with tempfile.TemporaryDirectory(prefix="ariel-image-") as context:
        (Path(context) / "pgbouncer_exporter").write_text(EXPORTER_SCRIPT)
        (Path(context) / "Dockerfile").write_text(
            f"FROM {DB_IMAGE}\nUSER 0\nCOPY pgbouncer_exporter /usr/local/bin/pgbouncer_exporter\n"
            "RUN chmod 0755 /usr/local/bin/pgbouncer_exporter\nUSER postgres\n"
            'ENTRYPOINT ["pgbouncer_exporter"]\nCMD []\n'  # the chart's sidecar passes no command
        )
        with progress.step(f"building {EXPORTER_IMAGE}", f"{EXPORTER_IMAGE} built"):
            client.images.build(path=context, tag=EXPORTER_IMAGE, rm=True)
    return [airflow, DB_IMAGE, EXPORTER_IMAGE, AZURITE_IMAGE]


def trusting(tag: str, ca_cert: Path) -> str:
    """``tag`` with ``ca_cert`` appended to its CA bundle, as a new image; its tag."""
    client = docker_client()
    derived = f"{tag}{TRUST_SUFFIX}"
    user = client.images.get(tag).attrs["Config"].get("User") or "0"
    with tempfile.TemporaryDirectory(prefix="ariel-image-") as context:
        (Path(context) / "cluster-ca.crt").write_bytes(ca_cert.read_bytes())
        (Path(context) / "Dockerfile").write_text(
            f"FROM {tag}\nUSER 0\nCOPY cluster-ca.crt /usr/local/share/ca-certificates/ariel-cluster-ca.crt\n"
            f"RUN cat /usr/local/share/ca-certificates/ariel-cluster-ca.crt >> {CA_BUNDLE}\nUSER {user}\n"
        )
        client.images.build(path=context, tag=derived, rm=True)
    return derived


def load(tags: list[str], ca_cert: Path, nodes: tuple[Node, ...], workdir: Path, progress: Progress) -> None:
    """Load each image, trusting the cluster CA, into every node under its own tag."""
    with progress.step(f"loading {len(tags)} images into {len(nodes)} nodes", "images loaded"):
        derived = {trusting(tag, ca_cert): tag for tag in tags}
        load_images(list(derived), nodes, workdir, replace=True, names=derived)
