"""The platform as one deployable unit: an umbrella Helm chart that ``render`` writes.

One ``helm upgrade --install`` of ``DIR/release`` installs everything ``validate`` checks: the
official chart (a copy of the pinned one, as its dependency) with the platform's values, and the
objects the kit computes beside it (each team's namespace objects, the per-team dag-processors),
copied verbatim from ``objects/`` by one template, never re-templated. Helm installs Namespaces
before the objects in them, so a team's namespace and its quota go in the same release.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow import __version__
from ariel_airflow.cluster.environments import Environment
from ariel_airflow.pins import airflow_pin

RELEASE_DIR = "release"
OBJECTS_DIR = "objects"
CHART_NAME = "ariel-platform"
SUBCHART_KEY = "airflow"  # the official chart's values sit under this key of the umbrella's values
OBJECTS_TEMPLATE = """\
{{- /* The platform's own objects, computed by `ariel platform render`: copied, not templated. */ -}}
{{- range $path, $_ := .Files.Glob "objects/*.yaml" }}
---
{{ $.Files.Get $path }}
{{- end }}
"""


def chart_metadata(chart: Path) -> dict[str, Any]:
    """The official chart's Chart.yaml, from its folder or its .tgz."""
    if chart.is_dir():
        return yaml.safe_load((chart / "Chart.yaml").read_text())
    with tarfile.open(chart) as archive:
        member = next(
            m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")
        )
        handle = archive.extractfile(member)
        assert handle is not None
        return yaml.safe_load(handle.read())


def write_release(
    out: Path, chart: Path, env: Environment, values: dict[str, Any], objects: list[dict[str, Any]]
) -> Path:
    """Write ``out/release``: the umbrella chart of ``chart`` with ``values``, and ``objects``."""
    from ariel_airflow.cluster.render import dump_yaml, object_file_name

    release = out / RELEASE_DIR
    shutil.rmtree(release, ignore_errors=True)
    (release / "charts").mkdir(parents=True)
    (release / "templates").mkdir()
    (release / OBJECTS_DIR).mkdir()
    official = chart_metadata(chart)
    if chart.is_dir():
        shutil.copytree(chart, release / "charts" / official["name"])
    else:
        shutil.copy(chart, release / "charts" / chart.name)
    metadata = {
        "apiVersion": "v2",
        "name": f"{CHART_NAME}-{env.name}",
        "description": f"The ARIEL Airflow platform, environment {env.name}: rendered by `ariel platform "
        f"render {env.name}`; do not edit.",
        "type": "application",
        "version": __version__,
        "appVersion": airflow_pin(),
        "dependencies": [
            {"name": official["name"], "version": official["version"], "repository": env.chart.repository}
        ],
    }
    (release / "Chart.yaml").write_text(dump_yaml(metadata))
    (release / "values.yaml").write_text(dump_yaml({SUBCHART_KEY: values}))
    (release / "templates" / "platform-objects.yaml").write_text(OBJECTS_TEMPLATE)
    for index, obj in enumerate(objects):  # numbered: Helm reads them in this order
        (release / OBJECTS_DIR / f"{index:03d}-{object_file_name(obj)}").write_text(dump_yaml(obj))
    return release


def release_objects(release: Path, name: str, namespace: str) -> list[dict[str, Any]]:
    """What ``helm install`` of ``release`` creates (hooks included), rendered offline by Helm's SDK."""
    from ariel_airflow.cluster.render import load_chart, manifests_objects

    return manifests_objects(load_chart(release).render({}, name=name, namespace=namespace))
