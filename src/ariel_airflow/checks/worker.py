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

from ariel_airflow.effective_pod import CHECKED_ENVIRONMENT, effective_pod
from ariel_airflow.rules.base import Finding
from ariel_airflow.rules.dags import check_dag, check_task
from ariel_airflow.rules.pods import check_pod, schema_errors
from ariel_airflow.rules.secrets import (
    Use,
    check_declared,
    check_vault_names,
    uses_in_source,
    uses_on_task,
)
from ariel_airflow.team import Team, TeamRepo


def check_repo(repo: TeamRepo) -> list[Finding]:
    findings = list(_check_pod_templates(repo.pod_templates, repo.team))
    collector = _Collector(repo.team)
    from airflow import settings

    settings.get_policy_plugin_manager().register(collector)
    from airflow.dag_processing.dagbag import DagBag

    dags = repo.dags
    bag = DagBag(dag_folder=dags, bundle_path=dags, bundle_name=repo.team.bundle_name)
    findings += collector.findings
    for relative, error in bag.import_errors.items():
        path = dags / relative
        findings.append(Finding("ARL001", _last_line(error), file=str(path), line=_error_line(error, path)))
    uses: list[Use] = []
    for path in sorted(dags.rglob("*.py")):
        uses += uses_in_source(path.read_text(errors="replace"), str(path))
    pod_checks = _EffectivePodChecks(repo)
    for dag in bag.dags.values():
        for task in dag.tasks:
            uses += uses_on_task(task, dag.fileloc)
            findings += pod_checks.check(task)
    declared = {"connections": set(repo.secrets.connections), "variables": set(repo.secrets.variables)}
    findings += check_declared(uses, declared, str(repo.secrets_file))
    findings += check_vault_names(repo)
    return [_with_line(f) for f in findings]


class _Collector:
    """The rules as cluster policies that collect instead of refusing, so CI sees every finding."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.findings: list[Finding] = []

    @hookimpl
    def dag_policy(self, dag: Any) -> None:
        self.findings += check_dag(dag, self.team)

    @hookimpl
    def task_policy(self, task: Any) -> None:
        self.findings += check_task(task, self.team)


def _check_pod_templates(folder: Path, team: Team) -> list[Finding]:
    """Every pod template against the strict schema; the base templates also for placement."""
    findings = []
    for path in sorted(folder.glob("*.yaml")):
        errors = _schema_findings(path)
        findings += errors
        if not errors and path.name.startswith("base-"):
            findings += check_pod(_read_pod(path), team, file=str(path))
    return findings


def _schema_findings(path: Path) -> list[Finding]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [Finding("ARL301", f"not valid YAML: {exc}", file=str(path))]
    findings = []
    for error in schema_errors(data):
        field = error.split(":")[0].lstrip(".")
        findings.append(Finding("ARL301", error, file=str(path), line=_key_line(path, field)))
    return findings


def _read_pod(path: Path) -> Any:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    return PodGenerator.deserialize_model_file(str(path))


class _EffectivePodChecks:
    """The pod the KubernetesExecutor would build for each task (the `generate-dag-yaml` path): the
    task's own ``pod_template_file`` or else the team's base template, merged with its pod_override.

    Resources and placement depend only on the base template and the task's pod_override, not on
    the dag_id/task_id labels the executor adds, so tasks sharing both (every task of a profile)
    share one merge: building a pod deep-copies the Kubernetes models and is slow.
    """

    def __init__(self, repo: TeamRepo) -> None:
        self.repo = repo
        self._default_base = repo.base_pod_template(CHECKED_ENVIRONMENT)
        self._by_override: dict[tuple[int, str], tuple[Any, list[Finding]]] = {}

    def check(self, task: Any) -> list[Finding]:
        where = {"dag_id": task.dag_id, "task_id": task.task_id, "file": task.dag.fileloc}
        config = task.executor_config
        override = config.get("pod_override") if isinstance(config, dict) else config
        own_template = config.get("pod_template_file") if isinstance(config, dict) else None
        key = (id(override), str(own_template))
        if key not in self._by_override:  # the override is kept alive with its result: ids stay unique
            self._by_override[key] = (override, self._merge_and_check(task, own_template))
        return [Finding(**{**f.__dict__, **where}) for f in self._by_override[key][1]]

    def _base(self, own_template: str | None) -> tuple[Path | None, list[Finding]]:
        """The base pod template the executor would read, and what is wrong with it."""
        if not own_template:
            return (self._default_base if self._default_base.is_file() else None), []
        path = Path(own_template)
        path = path if path.is_absolute() else self.repo.root / path
        if not path.is_file():
            return None, [Finding("ARL301", f"pod_template_file {own_template!r} does not exist")]
        inside = path.resolve().parent == self.repo.pod_templates.resolve()  # already checked there
        if inside:
            return path, []
        return path, [Finding("ARL301", f"{path}: {f.message}") for f in _schema_findings(path)]

    def _merge_and_check(self, task: Any, own_template: str | None) -> list[Finding]:
        base_path, problems = self._base(own_template)
        if base_path is None or problems:
            return problems
        try:
            pod = effective_pod(task, base_path)
        except Exception as exc:  # a malformed executor_config is a finding, not a crash
            return [Finding("ARL301", f"executor_config does not make a pod: {exc}")]
        return list(check_pod(pod, self.repo.team))


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
    findings = check_repo(TeamRepo.load(Path(sys.argv[1])))
    replies.write(json.dumps([f.to_dict() for f in findings]))
    replies.flush()


if __name__ == "__main__":
    main()
