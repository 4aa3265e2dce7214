"""The team repository a local stack serves: where its DAGs and local secret files are."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ariel_airflow.errors import UserError
from ariel_airflow.team import ANSWERS_FILE, read_answers

STATE_DIR_NAME = ".ariel"
LOCAL_SECRETS_DIR = ".local"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class TeamRepo:
    root: Path
    team: str

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    @property
    def connections_file(self) -> Path:
        return self.root / LOCAL_SECRETS_DIR / "connections.yaml"

    @property
    def variables_file(self) -> Path:
        return self.root / LOCAL_SECRETS_DIR / "variables.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @classmethod
    def load(cls, root: Path) -> TeamRepo:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise UserError("team repository not found", where=str(root), fix="pass --team-repo PATH")
        if not (root / "dags").is_dir():
            raise UserError(
                "no dags/ folder: this does not look like a team DAG repository",
                where=str(root),
                fix="pass the root of a repository generated with `copier copy` (--team-repo PATH)",
            )
        return cls(root=root, team=_team_name(root))


def _team_name(root: Path) -> str:
    """The team name from the copier answers; the folder name for a repo without them."""
    answers = read_answers(root)
    if answers is not None:
        name = answers.get("team_name")
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            raise UserError(
                f"team_name is {name!r}, not a DNS-1123 label",
                where=f"{root / ANSWERS_FILE}: team_name",
                fix="set team_name to lower-case letters, digits and dashes (at most 40)",
            )
        return name
    name = re.sub(r"[^a-z0-9-]+", "-", root.name.lower()).strip("-")[:40] or "team"
    return name if DNS_LABEL.match(name) else f"team-{name}"[:40].rstrip("-")
