"""Findings and the rule registry."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ariel_airflow.limits import MAX_LIMIT_REQUEST_RATIO
from ariel_airflow.team import DAG_ID_SEPARATOR, TAG_PREFIX

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
        Rule(
            "ARL103",
            "deferred-team-connection",
            "warning",
            "a deferrable task names a connection its trigger cannot read in the platform's triggerer",
        ),
        Rule("ARL201", "catchup-explosion", "error", "the first deployment would create too many runs"),
        Rule("ARL301", "pod-schema", "error", "a pod template or override is not a valid Kubernetes pod"),
        Rule(
            "ARL302",
            "pod-resources",
            "error",
            f"requests and limits must be set, limit/request <= {MAX_LIMIT_REQUEST_RATIO}",
        ),
        Rule("ARL401", "pod-placement", "error", "pods run in the team's namespace, labels, service account"),
        Rule("ARL402", "pool", "error", "tasks run in their team's pool (set by the platform), no other"),
        Rule(
            "ARL501",
            "secret-undeclared",
            "error",
            "a conn_id or Variable key is not declared in secrets.yaml",
        ),
        Rule("ARL502", "secret-unused", "warning", "a declared secret is not used by any DAG"),
        Rule(
            "ARL503",
            "secret-name-invalid",
            "error",
            "a declared id makes a Key Vault secret name that is too long or has refused characters",
        ),
        Rule("ARL504", "secret-id-separator", "error", "a declared id holds '--', the multi-team separator"),
        Rule("ARL505", "secret-name-clash", "error", "two declared ids map to the same Key Vault secret"),
        Rule("ARL601", "owner", "error", "every task has an owner other than the default 'airflow'"),
        Rule("ARL602", "team-tag", "error", f"every DAG carries the tag {TAG_PREFIX}<team>"),
        Rule("ARL603", "dag-id-prefix", "error", f"dag_ids start with '<team>{DAG_ID_SEPARATOR}'"),
        Rule("ARL604", "retries", "warning", "tasks should retry at least once"),
        Rule("ARL605", "execution-timeout", "error", "tasks need an execution_timeout"),
    )
}


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
