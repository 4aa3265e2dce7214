"""Where the official Airflow chart comes from: ``--chart`` (a folder, a .tgz or an ``oci://``
reference), else ``$ARIEL_AIRFLOW_CHART``, else the environment file's pinned reference, pulled once
by Helm's own Go SDK into a cache (no ``helm`` binary, no ``helm repo add``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ariel_airflow.errors import UserError

if TYPE_CHECKING:
    from ariel_airflow.cluster.environments import Chart, Environment
    from ariel_airflow.localdev.progress import Progress

CHART_ENV_VAR = "ARIEL_AIRFLOW_CHART"
CACHE_ENV_VAR = "ARIEL_CHART_CACHE"
OCI = "oci://"


def cache_dir() -> Path:
    """``$ARIEL_CHART_CACHE``, else ``$XDG_CACHE_HOME/ariel/charts`` (``~/.cache/ariel/charts``)."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ariel" / "charts"


def find_chart(chart: str | Path | None, env: Environment, env_file: Path, progress: Progress) -> Path:
    """The chart to render: a local folder or .tgz, pulled into the cache when given by reference."""
    where = "--chart"
    if chart is None and os.environ.get(CHART_ENV_VAR):
        chart, where = os.environ[CHART_ENV_VAR], CHART_ENV_VAR
    if chart is None:
        return pull(env.chart, progress, where=f"{env_file}: chart")
    if str(chart).startswith(OCI):
        reference = str(chart)
        return pull_reference(reference, None, env.chart.version, progress, where=where)
    path = Path(chart)
    if not path.exists():
        raise UserError(
            "the Airflow chart is not there",
            where=f"{where}={path}",
            fix=f"point {where} at the official chart's folder or .tgz, an oci:// reference, or unset it "
            f"to pull {env.chart.name} {env.chart.version} from {env_file}",
        )
    return path


def pull(chart: Chart, progress: Progress, *, where: str) -> Path:
    """The environment's pinned chart (name, repository, version) from the cache, pulled if missing."""
    if chart.repository.startswith(OCI):
        return pull_reference(
            f"{chart.repository.rstrip('/')}/{chart.name}", None, chart.version, progress, where=where
        )
    return pull_reference(chart.name, chart.repository, chart.version, progress, where=where)


def pull_reference(name: str, repo_url: str | None, version: str, progress: Progress, *, where: str) -> Path:
    import helm_python

    cached = cache_dir() / f"{name.rsplit('/', 1)[-1]}-{version}.tgz"
    if cached.is_file():
        return cached
    source = f"{repo_url} {name}" if repo_url else name
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Into a private folder first, then one rename: a failed or interrupted pull leaves no half file.
    with (
        tempfile.TemporaryDirectory(dir=cached.parent, prefix=".pull-") as staging,
        progress.step(f"pulling chart {source} {version}", f"chart cached at {cached}"),
    ):
        try:
            helm_python.pull(name, repo_url=repo_url, version=version, destination=staging)
        except helm_python.HelmError as exc:
            raise UserError(
                f"cannot pull chart {source} {version}: {exc}",
                where=where,
                fix=f"check the chart's repository and version, or pass --chart PATH (or set "
                f"{CHART_ENV_VAR}) to a copy of the official chart",
            ) from None
        archives = list(Path(staging).glob("*.tgz"))
        if len(archives) != 1:
            raise UserError(
                f"pulling chart {source} {version} gave {len(archives)} archives",
                where=where,
                fix=f"pass --chart PATH (or set {CHART_ENV_VAR}) to a copy of the official chart",
            )
        shutil.move(archives[0], cached)
    return cached
