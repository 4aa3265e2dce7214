"""What validation reports: findings (file, field, fix), the subject every check reads, the report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ariel_airflow.cluster.environments import (
    Environment,
    environment_file,
)
from ariel_airflow.cluster.registry import TEAMS_DIR, RegistryEntry
from ariel_airflow.team import TeamRepo


@dataclass(frozen=True)
class Finding:
    """One problem: what is wrong, in which file and field, and what to change."""

    check: str
    message: str
    where: str  # the file
    field: str  # the field path inside it ("" for the whole file)
    fix: str


@dataclass
class Subject:
    """What is validated: ``render``'s result (in memory or read back from its files) and the
    platform's description it came from. Cross-checks read only this."""

    env: Environment
    registry: dict[str, RegistryEntry]
    platform_dir: Path
    values: dict[str, Any]  # the effective values
    chart_values: dict[str, Any]  # the same, coalesced with the chart's defaults (what the chart uses)
    values_sources: list[tuple[Path, dict[str, Any]]]  # the files the values came from, in order
    objects: dict[str, dict[str, Any]]  # every rendered object, by its file
    team_pod_templates: dict[str, tuple[TeamRepo, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    rendered: Path | None = None  # --rendered DIR

    def registry_file(self, team: str) -> str:
        return str(self.platform_dir / TEAMS_DIR / f"{team}.yaml")

    @property
    def environment_file(self) -> str:
        return str(environment_file(self.env.name, self.platform_dir))


CrossCheck = Callable[[Subject], Iterable[Finding]]


@dataclass
class Report:
    environment: str
    kubernetes_version: str  # the schemas' version the objects were checked against
    source: str  # "in memory" or the --rendered folder
    objects: int = 0
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "kubernetes_version": self.kubernetes_version,
            "source": self.source,
            "objects": self.objects,
            "ok": self.ok,
            "notes": self.notes,
            "findings": [asdict(finding) for finding in self.findings],
        }

    def text(self) -> str:
        lines = [f"note: {note}" for note in self.notes]
        for finding in self.findings:
            where = f"{finding.where}: {finding.field}" if finding.field else finding.where
            lines += [f"✘ [{finding.check}] {where}", f"    {finding.message}", f"    fix: {finding.fix}"]
        checked = (
            f"{self.objects} objects against Kubernetes {self.kubernetes_version}"
            if self.objects
            else "objects not checked"
        )
        if self.ok:
            lines.append(f"✔ {self.environment} ({self.source}): valid; values, {checked}, cross-checks")
        else:
            lines.append(f"✘ {self.environment} ({self.source}): {len(self.findings)} finding(s); {checked}")
        return "\n".join(lines)
