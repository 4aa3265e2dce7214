"""Putting validation together: render (or read the rendered files), run every check, report."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow.cluster.charts import find_chart
from ariel_airflow.cluster.environments import (
    environment_file,
    load_environment,
)
from ariel_airflow.cluster.registry import load_registry
from ariel_airflow.cluster.render import (
    PLATFORM_DIR,
    RENDERED_CHART_DIR,
    RENDERED_TEAMS_DIR,
    VALUES_FILE,
    effective_values,
    load_chart,
    read_values,
    render_in_memory,
    values_files,
)
from ariel_airflow.cluster.validate.cross_checks import CROSS_CHECKS
from ariel_airflow.cluster.validate.findings import Report, Subject
from ariel_airflow.cluster.validate.objects import embedded_pod_templates, kubernetes_findings, schema_version
from ariel_airflow.cluster.validate.values import helm_schema_findings, unknown_key_findings
from ariel_airflow.errors import UserError
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.team import TeamRepo

# ---------------------------------------------------------------- putting it together


def _read_object(path: Path) -> dict[str, Any]:
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path), fix="render it again") from None
    if not isinstance(obj, dict):
        raise UserError("is not a Kubernetes object", where=str(path), fix="render it again")
    return obj


def read_rendered(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The values and objects a previous ``render --out folder`` wrote."""
    values_path = folder / VALUES_FILE
    if not values_path.is_file():
        raise UserError(
            f"no {VALUES_FILE} here: not the output of `ariel platform render`",
            where=str(folder),
            fix="pass --rendered the folder `ariel platform render ENV --out DIR` wrote",
        )
    paths = sorted((folder / RENDERED_CHART_DIR).glob("*.yaml")) + sorted(
        (folder / RENDERED_TEAMS_DIR).glob("*/*.yaml")
    )
    return read_values(values_path), {str(path): _read_object(path) for path in paths}


def team_pod_templates(repo: TeamRepo) -> dict[str, dict[str, Any]]:
    return {str(path): _read_object(path) for path in sorted(repo.pod_templates.glob("*.yaml"))}


def validate(
    env_name: str,
    *,
    rendered: Path | None = None,
    team_repos: Iterable[Path] = (),
    chart: str | Path | None = None,
    platform_dir: Path = PLATFORM_DIR,
    progress: Progress | None = None,
) -> Report:
    """Validate ENV as ``render`` makes it (in memory), or the files in ``rendered``."""
    progress = progress or Progress()
    repos = [TeamRepo.load(path) for path in team_repos]
    env = load_environment(env_name, platform_dir)
    chart_path = find_chart(chart, env, environment_file(env_name, platform_dir), progress)
    registry = load_registry(platform_dir)
    loaded = load_chart(chart_path)
    version, note = schema_version(env.kubernetes_version)
    report = Report(env_name, version.rsplit(".", 1)[0], str(rendered) if rendered else "rendered in memory")
    if note:
        report.notes.append(note)
        progress.info(note)

    if rendered is not None:
        values, objects = read_rendered(rendered)
        sources = [(rendered / VALUES_FILE, values)]
    else:
        values = effective_values(env, registry, platform_dir)
        sources = [(path, read_values(path)) for path in values_files(env_name, platform_dir)]
        objects = {}

    with progress.step("checking the values against the chart's schema", "values checked"):
        report.findings += helm_schema_findings(loaded, values, sources)
        refused = bool(report.findings)
        report.findings += unknown_key_findings(loaded.schema or {}, sources)
    if refused:
        report.notes.append(
            "the objects were not checked: the chart renders nothing from values its schema refuses"
        )
        return report

    if rendered is None:
        result = render_in_memory(env_name, chart=chart_path, platform_dir=platform_dir, progress=progress)
        objects = {f"{name} (rendered in memory)": obj for name, obj in result.files().items()}
    subject = Subject(
        env=env,
        registry=registry,
        platform_dir=platform_dir,
        values=values,
        chart_values=loaded.merge_values(values),
        values_sources=sources,
        objects=objects,
        team_pod_templates={repo.team.name: (repo, team_pod_templates(repo)) for repo in repos},
        rendered=rendered,
    )
    checked = {**objects, **embedded_pod_templates(objects)}
    for _, templates in subject.team_pod_templates.values():
        checked.update(templates)
    report.objects = len(checked)
    with progress.step(
        f"checking {len(checked)} objects against Kubernetes {report.kubernetes_version}", "objects checked"
    ):
        report.findings += kubernetes_findings(checked, version)
    with progress.step(f"{len(CROSS_CHECKS)} cross-checks", "cross-checks done"):
        for check in CROSS_CHECKS:
            report.findings += check(subject)
    return report
