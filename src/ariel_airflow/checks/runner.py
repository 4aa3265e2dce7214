"""Run the check in a worker process and shape its findings (select/ignore, exit code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ariel_airflow.errors import UserError
from ariel_airflow.rules.base import RULES, Finding
from ariel_airflow.team import TeamRepo

DEFAULT_TIMEOUT = 600.0  # seconds for the whole repository
FILE_IMPORT_TIMEOUT = 30  # seconds per DAG file, Airflow's dagbag_import_timeout


@dataclass
class CheckResult:
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0


def parse_rule_list(value: str | None, option: str) -> set[str] | None:
    if not value:
        return None
    by_name = {r.name: r.id for r in RULES.values()}
    chosen = set()
    for item in (part.strip() for part in value.split(",") if part.strip()):
        rule_id = item.upper() if item.upper() in RULES else by_name.get(item)
        if rule_id is None:
            raise UserError(
                f"unknown rule {item!r}",
                where=option,
                fix=f"use rule ids or names: {', '.join(sorted(RULES))}",
            )
        chosen.add(rule_id)
    return chosen


def run_check(
    path: Path,
    *,
    select: set[str] | None = None,
    ignore: set[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> CheckResult:
    repo = TeamRepo.load(path)
    repo.profiles, repo.secrets  # noqa: B018 - bad configuration: a clear error before anything runs
    root = repo.root
    with tempfile.TemporaryDirectory(prefix="ariel-check-") as airflow_home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": airflow_home,  # no user config, no local settings: only our policies
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(FILE_IMPORT_TIMEOUT),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
        try:
            done = subprocess.run(
                [sys.executable, "-m", "ariel_airflow.checks.worker", str(root)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise UserError(
                f"the check did not finish within {timeout:g}s", where=str(root), fix="raise --timeout"
            ) from None
    if done.returncode != 0:
        raise UserError(f"the check could not run:\n{done.stderr[-3000:]}", where=str(root))
    findings = [
        Finding(**{k: v for k, v in f.items() if k not in ("severity", "name")})
        for f in json.loads(done.stdout)
    ]
    findings = [
        f
        for f in findings
        if (select is None or f.rule in select) and (ignore is None or f.rule not in ignore)
    ]
    findings.sort(key=lambda f: (f.file or "", f.line or 0, f.rule))
    return CheckResult(findings)
