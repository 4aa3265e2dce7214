"""The check's worker process: loads the team's DAGs with DagBag, as the dag-processor does, with the
platform rules plugged in as cluster policies, and prints the findings as JSON.

Run by ``runner.run_check`` in a separate process (Airflow's own per-file import timeout applies,
and the runner kills the whole process on an overall timeout).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from airflow.policies import hookimpl

from ariel_airflow.rules.base import Finding, TeamContext
from ariel_airflow.rules.dags import check_dag, check_task
from ariel_airflow.rules.pods import check_pod, schema_errors
from ariel_airflow.rules.secrets import Use, check_declared, uses_in_source, uses_on_task
from ariel_airflow.team import SECRETS_FILE, TeamConfig

BASE_TEMPLATE = "pod_templates/base-prod.yaml"  # the environment whose placement CI checks


def check_repo(team: TeamConfig) -> list[Finding]:
    ctx = TeamContext(
        team=team.team,
        namespace=team.namespace,
        service_account=team.service_account,
        profiles=frozenset(team.profiles),
    )
    findings = list(_check_pod_templates(team.root, ctx))
    collector = _Collector(ctx)
    from airflow import settings

    settings.get_policy_plugin_manager().register(collector)
    from airflow.dag_processing.dagbag import DagBag

    dags = team.root / "dags"
    bag = DagBag(dag_folder=dags, bundle_path=dags, bundle_name=team.team)
    findings += collector.findings
    for relative, error in bag.import_errors.items():
        path = dags / relative
        findings.append(Finding("ARL001", _last_line(error), file=str(path), line=_error_line(error, path)))
    uses: list[Use] = []
    for path in sorted(dags.rglob("*.py")):
        uses += uses_in_source(path.read_text(errors="replace"), str(path))
    base_pod = _base_pod(team.root)
    pod_checks = _EffectivePodChecks(base_pod, ctx)
    for dag in bag.dags.values():
        for task in dag.tasks:
            uses += uses_on_task(task, dag.fileloc)
            if base_pod is not None:
                findings += pod_checks.check(task)
    declared = {"connections": set(team.secrets.connections), "variables": set(team.secrets.variables)}
    findings += check_declared(uses, declared, str(team.root / SECRETS_FILE))
    return [_with_line(f) for f in findings]


class _Collector:
    """The rules as cluster policies that collect instead of refusing, so CI sees every finding."""

    def __init__(self, ctx: TeamContext) -> None:
        self.ctx = ctx
        self.findings: list[Finding] = []

    @hookimpl
    def dag_policy(self, dag: Any) -> None:
        self.findings += check_dag(dag, self.ctx)

    @hookimpl
    def task_policy(self, task: Any) -> None:
        self.findings += check_task(task, self.ctx)


def _check_pod_templates(root: Path, ctx: TeamContext) -> list[Finding]:
    """Every pod template against the strict schema; the base templates also for placement."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    findings = []
    for path in sorted((root / "pod_templates").glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            findings.append(Finding("ARL301", f"not valid YAML: {exc}", file=str(path)))
            continue
        errors = list(schema_errors(data))
        for error in errors:
            field = error.split(":")[0].lstrip(".")
            findings.append(Finding("ARL301", error, file=str(path), line=_key_line(path, field)))
        if not errors and path.name.startswith("base-"):
            findings += check_pod(PodGenerator.deserialize_model_file(str(path)), ctx, file=str(path))
    return findings


def _base_pod(root: Path) -> Any:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    path = root / BASE_TEMPLATE
    return PodGenerator.deserialize_model_file(str(path)) if path.exists() else None


class _EffectivePodChecks:
    """The pod the KubernetesExecutor would build for each task (the `generate-dag-yaml` path).

    Resources and placement depend only on the base template and the task's pod_override, not on
    the dag_id/task_id labels the executor adds, so tasks sharing an override (every task of a
    profile) share one merge: building a pod deep-copies the Kubernetes models and is slow.
    """

    def __init__(self, base_pod: Any, ctx: TeamContext) -> None:
        self.base_pod = base_pod
        self.ctx = ctx
        self._by_override: dict[int, tuple[Any, list[Finding]]] = {}

    def check(self, task: Any) -> list[Finding]:
        where = {"dag_id": task.dag_id, "task_id": task.task_id, "file": task.dag.fileloc}
        config = task.executor_config
        override = config.get("pod_override") if isinstance(config, dict) else config
        key = id(override)
        if key not in self._by_override:  # the override is kept alive with its result: ids stay unique
            self._by_override[key] = (override, self._merge_and_check(task))
        return [Finding(**{**f.__dict__, **where}) for f in self._by_override[key][1]]

    def _merge_and_check(self, task: Any) -> list[Finding]:
        from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

        try:
            pod = PodGenerator.construct_pod(
                dag_id=task.dag_id,
                task_id=task.task_id,
                pod_id=f"{task.dag_id}-{task.task_id}"[:63],
                try_number=1,
                kube_image="ariel-check",
                date=None,
                args=[],
                pod_override_object=PodGenerator.from_obj(task.executor_config),
                base_worker_pod=self.base_pod,
                namespace=self.ctx.namespace or "default",
                scheduler_job_id="ariel-check",
            )
        except Exception as exc:  # a malformed executor_config is a finding, not a crash
            return [Finding("ARL301", f"executor_config does not make a pod: {exc}")]
        return list(check_pod(pod, self.ctx))


def _with_line(finding: Finding) -> Finding:
    """Point DAG and task findings at the line that defines them."""
    if finding.line is not None or not finding.file or not (finding.task_id or finding.dag_id):
        return finding
    needle = finding.task_id or finding.dag_id
    patterns = [f'"{needle}"', f"'{needle}'", f"def {needle}("]
    for number, text in enumerate(_source_lines(finding.file), 1):
        if any(p in text for p in patterns):
            return Finding(**{**finding.__dict__, "line": number})
    return finding


@functools.lru_cache(maxsize=1024)
def _source_lines(file: str) -> tuple[str, ...]:
    """A file's lines, read once however many findings point into it."""
    try:
        return tuple(Path(file).read_text(errors="replace").splitlines())
    except OSError:
        return ()


def _key_line(path: Path, dotted: str) -> int | None:
    key = re.split(r"[.\[]", dotted)[-1]
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if re.match(rf"\s*-?\s*{re.escape(key)}\s*:", text):
            return number
    return None


def _error_line(error: str, path: Path) -> int | None:
    found = re.findall(rf'File "{re.escape(str(path))}", line (\d+)', error)
    found = found or re.findall(r"line (\d+)", error)
    return int(found[-1]) if found else None


def _last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else error


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # Airflow's own output goes to stderr
    team = TeamConfig.load(Path(sys.argv[1]))
    findings = check_repo(team)
    replies.write(json.dumps([f.to_dict() for f in findings]))
    replies.flush()


if __name__ == "__main__":
    main()
