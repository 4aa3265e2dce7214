"""A team repository's configuration: copier answers, resource profiles, declared secrets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ariel_airflow.errors import UserError
from ariel_airflow.profiles import ResourceProfile, load_profiles

ANSWERS_FILE = ".copier-answers.yml"
SECRETS_FILE = "secrets.yaml"
PROFILES_FILE = "resource_profiles.yaml"


class Declared(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = None
    description: str = ""


class SecretsDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connections: dict[str, Declared] = {}
    variables: dict[str, Declared] = {}


@dataclass(frozen=True)
class TeamConfig:
    root: Path
    team: str
    namespace: str
    profiles: dict[str, ResourceProfile]
    secrets: SecretsDeclaration

    @property
    def service_account(self) -> str:
        return f"{self.team}-tasks"

    @property
    def dag_id_prefix(self) -> str:
        return f"{self.team}__"

    @classmethod
    def load(cls, root: Path) -> TeamConfig:
        answers = _yaml(root / ANSWERS_FILE, "run `copier copy` to create the team repository")
        team = answers.get("team_name")
        if not isinstance(team, str) or not team:
            raise UserError("team_name is missing", where=f"{root / ANSWERS_FILE}: team_name")
        declared = _yaml(root / SECRETS_FILE, f"declare connections and variables in {SECRETS_FILE}")
        try:
            secrets = SecretsDeclaration.model_validate({k: v or {} for k, v in declared.items()})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UserError(
                first["msg"],
                where=f"{root / SECRETS_FILE}: {'.'.join(str(p) for p in first['loc'])}",
                fix="each entry is `<id>: {type: ..., description: ...}` under connections or variables",
            ) from None
        return cls(
            root=root,
            team=team,
            namespace=answers.get("namespace") or f"airflow-{team}",
            profiles=load_profiles(root / PROFILES_FILE),
            secrets=secrets,
        )


def read_answers(root: Path) -> dict | None:
    """The copier answers of a team repository; None for a repository without them."""
    path = root / ANSWERS_FILE
    return _yaml(path, "run `copier update` to rewrite it") if path.is_file() else None


def _yaml(path: Path, fix: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError("file is missing", where=str(path), fix=fix) from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("must be a YAML mapping", where=str(path), fix=fix)
    return data
