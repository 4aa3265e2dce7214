"""The team's secrets in its Azure Key Vault: verify them before a deployment, push them to dev/test.

Both read the declarations of ``secrets.yaml`` and name each secret with the one naming function
(``secret_names``). ``verify`` lists secret *properties* only: no value is ever fetched. ``push``
sends values, but never prints, logs or returns one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ariel_airflow.errors import UserError
from ariel_airflow.secret_names import KINDS, DeclaredSecret, declared_secrets, vault_secret_name
from ariel_airflow.team import ANSWERS_FILE, Team, TeamRepo, known_environment

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient

PushSource = Literal["local", "env"]
# Airflow's CONN_ENV_PREFIX and VAR_ENV_PREFIX (airflow.secrets.environment_variables), written here so
# that the CLI needs no Airflow import; tests/test_keyvault.py proves them equal.
ENV_PREFIXES = {"connections": "AIRFLOW_CONN_", "variables": "AIRFLOW_VAR_"}


def secret_client(vault_url: str) -> SecretClient:
    """A client of the vault, authenticated as azure-identity's DefaultAzureCredential finds: workload
    identity in a pod, the pipeline's service connection or `az login` in CI, `az login` locally.
    A new credential per command, not the task code's per-process one: each command signs in as
    its environment says at that moment."""
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())


def vault_url(team: Team, environment: str) -> str:
    """The team's vault in ``environment``, as the copier answers give it."""
    known_environment(environment)
    url = team.vault_urls.get(environment)
    if not url:
        raise UserError(
            f"team {team.name!r} has no Key Vault for {environment}",
            where=f"{ANSWERS_FILE}: keyvault_url_{environment}",
            fix=f"answer keyvault_url_{environment} with `copier update --trust` "
            "(https://<vault-name>.vault.azure.net/)",
        )
    return url


def team_prefixes(team: Team) -> tuple[str, ...]:
    """The start of every Key Vault name of the team's secrets, one per kind (the naming function
    with an empty id: ``airflow-connections-recon-``)."""
    return tuple(vault_secret_name(team, kind, "") for kind in KINDS)


@dataclass
class Finding:
    name: str  # the Key Vault secret name
    kind: str = ""
    id: str = ""  # the connection or variable id; empty for a secret nobody declared


@dataclass
class VerifyReport:
    environment: str
    vault_url: str
    declared: int
    present: list[Finding] = field(default_factory=list)
    missing: list[Finding] = field(default_factory=list)
    disabled: list[Finding] = field(default_factory=list)
    unexpected: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """A deployment may go ahead: every declared secret exists and is enabled."""
        return not (self.missing or self.disabled)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def verify(repo: TeamRepo, environment: str) -> VerifyReport:
    """Compare the declared secrets with the vault's secret properties (names and enabled flags)."""
    declared = declared_secrets(repo)
    url = vault_url(repo.team, environment)
    client = secret_client(url)
    enabled = {props.name: bool(props.enabled) for props in _list_properties(client, url)}
    report = VerifyReport(environment=environment, vault_url=url, declared=len(declared))
    names = set()
    for secret in declared:
        name = secret.vault_names[environment]
        names.add(name)
        finding = Finding(name=name, kind=secret.kind, id=secret.id)
        if name not in enabled:
            report.missing.append(finding)
        elif not enabled[name]:
            report.disabled.append(finding)
        else:
            report.present.append(finding)
    prefixes = team_prefixes(repo.team)
    report.unexpected = [
        Finding(name=name) for name in sorted(enabled) if name.startswith(prefixes) and name not in names
    ]
    return report


def _list_properties(client: SecretClient, url: str) -> list:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    try:
        return list(client.list_properties_of_secrets())
    except ClientAuthenticationError as exc:
        raise UserError(
            f"cannot authenticate to Key Vault: {_first_line(exc)}",
            where=url,
            fix="sign in with `az login` (locally) or give the pipeline an Azure service connection",
        ) from None
    except HttpResponseError as exc:
        raise UserError(
            f"Key Vault refused to list secrets ({exc.status_code}): {_first_line(exc)}",
            where=url,
            fix="grant your identity the 'Key Vault Secrets User' role (list and get) on this vault",
        ) from None
    except ServiceRequestError as exc:
        raise UserError(
            f"cannot reach Key Vault: {_first_line(exc)}",
            where=url,
            fix="check the vault URL and the network",
        ) from None


@dataclass
class PushReport:
    environment: str
    vault_url: str
    source: str
    written: list[Finding] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # secret name -> why it was not written
    no_value: list[Finding] = field(default_factory=list)  # declared, but the source holds no value

    @property
    def ok(self) -> bool:
        return not (self.failed or self.no_value)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def env_var_name(kind: str, secret_id: str) -> str:
    """The environment variable Airflow itself reads a connection or variable from (AIRFLOW_CONN_ID)."""
    return ENV_PREFIXES[KINDS[kind]] + secret_id.upper()


def source_values(
    repo: TeamRepo, declared: list[DeclaredSecret], source: PushSource, environ: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """The value of each declared secret the source holds, by (kind, id)."""
    values: dict[tuple[str, str], str] = {}
    if source == "env":
        for secret in declared:
            value = environ.get(env_var_name(secret.kind, secret.id))
            if value is not None:
                values[secret.kind, secret.id] = value
        return values
    from ariel_airflow.localdev.local_secrets import read_local_values

    local = read_local_values(repo.connections_file, repo.variables_file)
    for secret in declared:
        value = local[KINDS[secret.kind]].get(secret.local_key)
        if value is not None:
            values[secret.kind, secret.id] = value
    return values


def push_allowed(environment: str, platform_dir: Path) -> None:
    """Refuse, naming the setting and its file, unless the platform lets teams push to ``environment``."""
    from ariel_airflow.cluster.environments import environment_file, load_environment

    if not load_environment(environment, platform_dir).allow_secret_push:
        raise UserError(
            f"the platform does not allow pushing secrets to {environment} (allow_secret_push is false)",
            where=f"{environment_file(environment, platform_dir)}: allow_secret_push",
            fix=f"push to an environment whose allow_secret_push is true; {environment}'s secrets are "
            "written by the platform's own pipeline",
        )


def push(
    repo: TeamRepo,
    environment: str,
    platform_dir: Path,
    source: PushSource = "local",
    environ: Mapping[str, str] | None = None,
) -> PushReport:
    """Write each declared secret's value from ``source`` into the team's vault for ``environment``."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    push_allowed(environment, platform_dir)
    declared = declared_secrets(repo)
    url = vault_url(repo.team, environment)
    values = source_values(repo, declared, source, os.environ if environ is None else environ)
    report = PushReport(environment=environment, vault_url=url, source=source)
    client = secret_client(url)
    for secret in declared:
        finding = Finding(name=secret.vault_names[environment], kind=secret.kind, id=secret.id)
        if (secret.kind, secret.id) not in values:
            report.no_value.append(finding)
            continue
        try:
            client.set_secret(finding.name, values[secret.kind, secret.id])
        except (HttpResponseError, ServiceRequestError) as exc:
            # The service's message names the secret and the reason, never the value sent.
            status = getattr(exc, "status_code", None)
            report.failed[finding.name] = f"{status} {_first_line(exc)}" if status else _first_line(exc)
        else:
            report.written.append(finding)
    return report


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def to_json(report: VerifyReport | PushReport) -> str:
    return json.dumps(report.as_dict(), indent=2)
