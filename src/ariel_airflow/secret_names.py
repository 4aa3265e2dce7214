"""The Key Vault secret names of a team's connections and variables: one function, both secrets modes.

A task pod reads its team's secrets with the Azure provider's ``AzureKeyVaultBackend``, configured by
the team's pod template (``Team.worker_secrets_backend_kwargs``). The backend strips the separator off
the end of its prefix, joins prefix and id with the separator and maps every "_" to it
(``AzureKeyVaultBackend.__init__``, ``build_path``); that is the rule written here, so the CLI
needs no Airflow import. ``tests/test_secret_names.py`` proves it equal to the names the installed
provider looks up, in prefix mode and in Airflow's native multi-team mode
(``{prefix}-{team}--{id}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ariel_airflow.errors import UserError
from ariel_airflow.team import ANSWERS_FILE, SecretKind, Team, TeamRepo

SecretType = Literal["connection", "variable"]
SEP = "-"  # AzureKeyVaultBackend's default ``sep``: joins prefix and id, replaces "_"
TEAM_SEP = "--"  # the provider's TEAM_SEP: separates team and id in multi-team names
MAX_NAME_LENGTH = 127  # Key Vault's limit on secret names
NAME_CHARACTERS = re.compile(r"[0-9a-zA-Z-]+")  # all Key Vault accepts (and what the provider checks)
KINDS: dict[str, SecretKind] = {"connection": "connections", "variable": "variables"}


@dataclass(frozen=True)
class DeclaredSecret:
    kind: SecretType
    id: str  # conn_id or variable key, as declared in secrets.yaml
    local_key: str  # its key in the .local/ file
    vault_names: dict[str, str]  # environment -> Key Vault secret name


def vault_secret_name(team: Team, kind: str, id: str) -> str:
    """The Key Vault secret name the team's task pods look ``id`` up under.

    ``kind`` is "connection" or "variable" (the plural forms are accepted too).
    """
    prefix = team.secrets_prefix(_kind(kind)).rstrip(SEP)
    return f"{prefix}{SEP}{id}".replace("_", SEP)


def declared_secrets(repo: TeamRepo) -> list[DeclaredSecret]:
    """Every connection and variable declared in the repository's secrets.yaml, in declaration order,
    with its secret name in each environment the team has a Key Vault for."""
    declared = repo.secrets
    team = repo.team
    return [
        DeclaredSecret(
            kind=kind,
            id=id,
            local_key=id,  # LocalFilesystemBackend keys its files by conn_id / variable key
            vault_names={env: vault_secret_name(team, kind, id) for env in team.vault_urls},
        )
        for kind, ids in (("connection", declared.connections), ("variable", declared.variables))
        for id in ids
    ]


def name_problem(name: str) -> str | None:
    """Why Key Vault would refuse ``name`` as a secret name, or None when it accepts it."""
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; Key Vault allows at most {MAX_NAME_LENGTH}"
    bad = sorted(set(NAME_CHARACTERS.sub("", name)))
    if bad:
        return f"holds {', '.join(repr(c) for c in bad)}; Key Vault allows only 0-9, a-z, A-Z and -"
    return None


def _kind(kind: str) -> SecretKind:
    if kind in KINDS.values():
        return kind  # type: ignore[return-value]
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"kind must be 'connection' or 'variable', not {kind!r}") from None


def declared_secrets_in(repo: TeamRepo, environment: str | None) -> tuple[list[str], list[DeclaredSecret]]:
    """The environments shown and the declared secrets with the names there: one environment when
    given (it must have a Key Vault), else every environment the team has one for."""
    environments = list(repo.team.vault_urls)
    if environment is not None and environment not in environments:
        raise UserError(
            f"the team has no Key Vault for environment {environment!r}"
            f" (it has one for: {', '.join(environments) or 'none'})",
            where=f"{repo.root / ANSWERS_FILE}: keyvault_url_{environment}",
            fix=f"pass one of {', '.join(environments)}, or answer keyvault_url_{environment} with "
            "`copier update --trust`",
        )
    shown = [environment] if environment else environments
    secrets = [
        DeclaredSecret(s.kind, s.id, s.local_key, {e: s.vault_names[e] for e in shown})
        for s in declared_secrets(repo)
    ]
    return shown, secrets
