"""Findings, the rule registry and the platform's limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity
    summary: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("ARL001", "import-error", "error", "a DAG file fails to import (or times out)"),
        Rule(
            "ARL101",
            "sensor-poke-timeout",
            "error",
            "poke-mode sensors hold a worker slot: short timeouts only",
        ),
        Rule("ARL102", "sensor-default-timeout", "warning", "a sensor keeps the 7-day default timeout"),
        Rule("ARL201", "catchup-explosion", "error", "the first deployment would create too many runs"),
        Rule("ARL301", "pod-schema", "error", "a pod template or override is not a valid Kubernetes pod"),
        Rule("ARL302", "pod-resources", "error", "requests and limits must be set, limit/request <= 1.5"),
        Rule("ARL401", "pod-placement", "error", "pods run in the team's namespace, labels, service account"),
        Rule(
            "ARL501",
            "secret-undeclared",
            "error",
            "a conn_id or Variable key is not declared in secrets.yaml",
        ),
        Rule("ARL502", "secret-unused", "warning", "a declared secret is not used by any DAG"),
        Rule("ARL601", "owner", "error", "every task has an owner other than the default 'airflow'"),
        Rule("ARL602", "team-tag", "error", "every DAG carries the tag team:<team>"),
        Rule("ARL603", "dag-id-prefix", "error", "dag_ids start with '<team>__'"),
        Rule("ARL604", "retries", "warning", "tasks should retry at least once"),
        Rule("ARL605", "execution-timeout", "error", "tasks need an execution_timeout"),
    )
}


@dataclass(frozen=True)
class Limits:
    """The platform's limits (one place; the README's rule sections quote them)."""

    poke_timeout_hours: float = 1.0
    max_first_deployment_runs: int = 10
    max_limit_ratio: float = 1.5


LIMITS = Limits()


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    file: str | None = None
    line: int | None = None
    dag_id: str | None = None
    task_id: str | None = None

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity

    def to_dict(self) -> dict:
        return {**asdict(self), "severity": self.severity, "name": RULES[self.rule].name}


@dataclass(frozen=True)
class TeamContext:
    """What the rules need to know of the team (CI has all of it; at runtime the DAG tells it)."""

    team: str
    namespace: str | None = None
    service_account: str | None = None
    profiles: frozenset[str] | None = None

    @classmethod
    def from_dag_id(cls, dag_id: str) -> TeamContext | None:
        team, sep, _ = dag_id.partition("__")
        return cls(team=team, service_account=f"{team}-tasks") if sep else None
