"""The local environment's Azure, inside the local cluster: what the platform reaches on AKS.

- **Workload identity.** AKS's webhook gives each pod labelled ``azure.workload.identity/use`` a
  service-account token for Entra and the ``AZURE_*`` variables azure-identity reads, with the client
  id of the service account's annotation. Here a MutatingAdmissionPolicy (CEL, in the API server)
  makes the same change, so the chart's pods run unchanged.
- **Entra ID** (``login.microsoftonline.com``): ``entra_standin``, in the platform image. The cluster
  DNS answers Azure's name with its Service; its certificate is the cluster CA's, which the images
  loaded into the nodes trust (``cluster_images``).
- **Azure Database for PostgreSQL**: Postgres over TLS at the environment's database host (a
  Service name of this cluster), whose principals' passwords are the Entra tokens issued for them.
- **Azure Key Vault** (``keyvault_standin``): the environment's vault, holding each team's git
  connection, readable by the platform identity; and each team's vault, holding what its repository
  declares (stand-in values), readable by the team's identity only.
- **Azure DevOps Repos** (each registered repository's host: ``git_standin``): each team's
  repository, generated from the kit's template, cloned only with the team's token.
- **Azure Blob Storage** (the task logs' storage account): Azurite, Microsoft's emulator, at the
  account's own host name, with the task logs' container.
- **The sign-in app registration's client secret**, in the Secret the environment's ``sign_in``
  names (on Azure, the platform team copies it there from the app registration).
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ariel_airflow.cluster.environments import Environment
from ariel_airflow.cluster.platform_secrets import METADATA_USER
from ariel_airflow.cluster.registry import RegistryEntry
from ariel_airflow.errors import UserError
from ariel_airflow.localkube import blob_standin, entra_signin, entra_standin, git_standin, keyvault_standin
from ariel_airflow.localkube.layout import CLUSTER_DOMAIN
from ariel_airflow.localkube.pki import Pki
from ariel_airflow.secret_names import vault_secret_name
from ariel_airflow.team import Team, TeamRepo

NAMESPACE = "azure-standins"
ENTRA_HOST = "login.microsoftonline.com"
ENTRA_SERVICE, KEYVAULT_SERVICE, GIT_SERVICE, BLOB_SERVICE = "entra", "keyvault", "git", "blob"
ENTRA_PORT, KEYVAULT_PORT, GIT_PORT, BLOB_PORT = 8443, 8444, 8445, 10000
VAULT_HOSTS = "*.vault.azure.net"  # one certificate serves every vault, as Azure's own does
BLOB_HOSTS = "*.blob.core.windows.net"
# Their files in the cluster's PKI.
ENTRA_CERT, POSTGRES_CERT, KEYVAULT_CERT, GIT_CERT, BLOB_CERT = (
    "standin-entra",
    "standin-postgres",
    "standin-keyvault",
    "standin-git",
    "standin-blob",
)
# A token lives a minute past azure-identity's and the refresher's 5-minute refresh margin: the
# database password rotates every minute or so, where Azure's would rotate hourly.
TOKEN_SECONDS = 360
# Where AKS's webhook mounts the token, and the variables it sets (azure-workload-identity's
# pkg/webhook): azure-identity's WorkloadIdentityCredential reads exactly these.
TOKEN_DIR = "/var/run/secrets/azure/tokens"
# People: Entra accounts of the local tenant; and the sign-in app registration, as Entra knows it.
PEOPLE_DOMAIN = "ariel.example"
ADMIN_LOGIN = f"platform-admin@{PEOPLE_DOMAIN}"
SIGN_IN_APP_SECRET = "sign-in-app"
TOKEN_FILE = "azure-identity-token"
USE_LABEL = "azure.workload.identity/use"
PROBE_TIMING = {"periodSeconds": 2, "timeoutSeconds": 5, "failureThreshold": 5}  # patient on a busy node
POLICY = "azure-workload-identity"


@dataclass(frozen=True)
class DatabaseService:
    """The environment's database host as a Service of this cluster: <name>.<namespace>.svc.<domain>."""

    name: str
    namespace: str
    host: str

    @classmethod
    def of(cls, env: Environment) -> DatabaseService:
        host = env.database.host
        parts = host.split(".")
        if len(parts) != 5 or ".".join(parts[2:]) != f"svc.{CLUSTER_DOMAIN}":
            raise UserError(
                f"database host {host!r} is not a Service of the local cluster",
                where=f"platform/environments/{env.name}.yaml: database.host",
                fix=f"write <name>.<namespace>.svc.{CLUSTER_DOMAIN}",
            )
        return cls(parts[0], parts[1], host)


def service_host(name: str) -> str:
    return f"{name}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"


def vault_host(env: Environment) -> str:
    return urlsplit(env.key_vault.url).hostname or ""


def storage_host(env: Environment) -> str:
    return urlsplit(env.task_logs.account_url).hostname or ""


def repository_hosts(registry: dict[str, RegistryEntry]) -> list[str]:
    return sorted({urlsplit(entry.repository.url).hostname or "" for entry in registry.values()})


def dns_rewrites(env: Environment, registry: dict[str, RegistryEntry]) -> dict[str, str]:
    """Azure's host names the cluster DNS answers with a stand-in's Service."""
    return {
        ENTRA_HOST: service_host(ENTRA_SERVICE),
        vault_host(env): service_host(KEYVAULT_SERVICE),
        **dict.fromkeys(team_vaults(env, registry).values(), service_host(KEYVAULT_SERVICE)),
        **dict.fromkeys(repository_hosts(registry), service_host(GIT_SERVICE)),
        storage_host(env): service_host(BLOB_SERVICE),
    }


def server_certificates(env: Environment, registry: dict[str, RegistryEntry]) -> dict[str, tuple[str, ...]]:
    """The stand-ins' serving certificates the cluster's CA issues (file stem: host names)."""
    return {
        ENTRA_CERT: (ENTRA_HOST,),
        POSTGRES_CERT: (DatabaseService.of(env).host,),
        KEYVAULT_CERT: (VAULT_HOSTS,),
        GIT_CERT: tuple(repository_hosts(registry)),
        BLOB_CERT: (BLOB_HOSTS,),
    }


def git_token(state: Path, team: str) -> str:
    """The team's personal access token of its repository (the git stand-in's): made once, kept."""
    return kept_secret(state / "standins" / f"git-token-{team}")


def git_connection(entry: RegistryEntry, token: str) -> str:
    """The team's git connection, as the platform keeps it in its Key Vault (Airflow's JSON form)."""
    return json.dumps(
        {"conn_type": "git", "host": entry.repository.url, "login": entry.team.name, "password": token}
    )


def team_repository(entry: RegistryEntry, workdir: Path) -> Path:
    """The team's repository, generated from the kit's template as ``copier copy`` makes it, one
    commit on its registered ref."""
    from ariel_airflow.template import generate_team_repo

    try:
        repo = generate_team_repo(workdir / entry.team.name, entry.team.name)
    except (ImportError, FileNotFoundError) as exc:
        raise UserError(
            f"cannot generate team {entry.team.name}'s repository for the git stand-in: {exc}",
            fix="run from a checkout of the kit with copier installed (pip install copier)",
        ) from None
    git = ["git", "-C", str(repo), "-c", "user.name=ariel", "-c", "user.email=ariel@localhost"]
    for args in (["init", "-q", "-b", entry.repository.ref], ["add", "-A"], ["commit", "-qm", "generated"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


def repository_bundle(repo: Path, workdir: Path) -> bytes:
    """``repo`` with all its refs, as a git bundle (what the git stand-in serves)."""
    bundle = workdir / f"{repo.name}.bundle"
    subprocess.run(["git", "-C", str(repo), "bundle", "create", "-q", str(bundle), "--all"], check=True)
    return bundle.read_bytes()


def standin_secrets(repo: TeamRepo, team: Team) -> dict[str, str]:
    """What the team's vault holds here: each connection and variable its repository declares, by
    its Key Vault name, with a stand-in value (a connection of the declared type to a host that
    names it)."""
    declared = repo.secrets
    connections = {
        vault_secret_name(
            team, "connection", id
        ): f"{spec.type or 'generic'}://standin:{id}-password@{id}.standin/{id}"
        for id, spec in declared.connections.items()
    }
    variables = {vault_secret_name(team, "variable", id): f"standin-{id}" for id in declared.variables}
    return {**connections, **variables}


def admin_password(state: Path) -> str:
    """The database stand-in's superuser password: made once, kept with the cluster's state."""
    return kept_secret(state / "standins" / "postgres-admin-password")


def storage_account_key(state: Path) -> str:
    """The storage account's shared key in Azurite (base64, as Azure's are): made once, kept."""
    path = state / "standins" / "storage-account-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.b64encode(secrets.token_bytes(64)).decode())
        path.chmod(0o600)
    return path.read_text()


def sign_in_secret(state: Path) -> str:
    """The sign-in app registration's client secret in the local Entra: made once, kept."""
    return kept_secret(state / "standins" / "sign-in-client-secret")


def people(registry: dict[str, RegistryEntry]) -> dict[str, dict[str, Any]]:
    """Who signs in to the local platform (by login): a platform administrator, and one member of
    each team."""
    return {
        ADMIN_LOGIN: {"name": "Platform administrator", "roles": ["Airflow.Admin"]},
        **{
            member_login(name): {"name": f"A member of {name}", "roles": ["Airflow.User"]}
            for name in registry
        },
    }


def member_login(team: str) -> str:
    return f"{team}-member@{PEOPLE_DOMAIN}"


def kept_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text()


def objects(
    env: Environment,
    registry: dict[str, RegistryEntry],
    pki: Pki,
    state: Path,
    airflow_image: str,
    db_image: str,
    azurite_image: str,
    release_namespace: str,
) -> list[dict[str, Any]]:
    """Everything the stand-ins are, in the order ``kubectl apply`` takes them."""
    database = DatabaseService.of(env)
    if database.namespace != NAMESPACE:
        raise UserError(
            f"database host {database.host!r} is not in the stand-ins' namespace {NAMESPACE!r}",
            where=f"platform/environments/{env.name}.yaml: database.host",
            fix=f"write <name>.{NAMESPACE}.svc.{CLUSTER_DOMAIN}",
        )
    principals = {env.platform_identity.client_id: METADATA_USER}
    bundles, vault_secrets = team_repositories(registry)
    return [
        *workload_identity_policy(env),
        namespace(release_namespace),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": env.sign_in.client_secret_secret, "namespace": release_namespace},
            "stringData": {"client-secret": sign_in_secret(state)},
        },
        namespace(NAMESPACE),
        *token_review_rights(),
        tls_secret(f"{ENTRA_SERVICE}-tls", pki, ENTRA_CERT),
        tls_secret(f"{database.name}-tls", pki, POSTGRES_CERT),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SIGN_IN_APP_SECRET, "namespace": NAMESPACE},
            "stringData": {
                "app": json.dumps(
                    {"client_id": env.sign_in.client_id, "client_secret": sign_in_secret(state)}
                )
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "database-admin", "namespace": NAMESPACE},
            "stringData": {"password": admin_password(state)},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "database-pam", "namespace": NAMESPACE},
            "data": {"postgresql": PAM_SERVICE, "entra-token-check": TOKEN_CHECK},
        },
        tls_secret(f"{KEYVAULT_SERVICE}-tls", pki, KEYVAULT_CERT),
        tls_secret(f"{GIT_SERVICE}-tls", pki, GIT_CERT),
        tls_secret(f"{BLOB_SERVICE}-tls", pki, BLOB_CERT),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "storage-account", "namespace": NAMESPACE},
            "stringData": {"accounts": f"{env.task_logs.storage_account}:{storage_account_key(state)}"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "platform-vault", "namespace": NAMESPACE},
            "stringData": {
                f"airflow-connections-{entry.team.git_conn_id.replace('_', '-')}": git_connection(
                    entry, git_token(state, name)
                )
                for name, entry in registry.items()
            },
        },
        *(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"team-vault-{name}", "namespace": NAMESPACE},
                "stringData": vault_secrets[name],
            }
            for name in team_vaults(env, registry)
        ),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "team-repositories", "namespace": NAMESPACE},
            "binaryData": bundles,
        },
        service(ENTRA_SERVICE, 443, ENTRA_PORT),
        service(KEYVAULT_SERVICE, 443, KEYVAULT_PORT),
        service(GIT_SERVICE, 443, GIT_PORT),
        service(BLOB_SERVICE, 443, BLOB_PORT),
        service(database.name, 5432, 5432),
        azure_pod(env, registry, state, database, principals, airflow_image, db_image, azurite_image),
    ]


def team_repositories(registry: dict[str, RegistryEntry]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Each team's repository as a git bundle (base64, by file name), and its vault's secrets."""
    bundles, vaults = {}, {}
    with tempfile.TemporaryDirectory(prefix="ariel-repos-") as workdir:
        for name, entry in registry.items():
            repo = team_repository(entry, Path(workdir))
            bundles[f"{name}.bundle"] = base64.b64encode(repository_bundle(repo, Path(workdir))).decode()
            vaults[name] = standin_secrets(TeamRepo.load(repo), entry.team)
    return bundles, vaults


def team_vaults(env: Environment, registry: dict[str, RegistryEntry]) -> dict[str, str]:
    """The vault host of each team that has a vault in ``env``, by team."""
    return {
        name: urlsplit(entry.key_vaults[env.name]).hostname or ""
        for name, entry in registry.items()
        if env.name in entry.key_vaults
    }


# Postgres asks PAM for the principals' passwords; pam_exec runs TOKEN_CHECK with the password on
# its standard input (its first bytes, then a NUL).
PAM_SERVICE = """\
auth required pam_exec.so quiet expose_authtok /etc/entra/entra-token-check
account required pam_permit.so
"""
TOKEN_CHECK = f"""\
#!/bin/bash
# Is the password a token Entra issued to PAM_USER and not yet expired? entra_standin writes one
# file per token, named by the SHA-256 of its first {entra_standin.PAM_PASSWORD_BYTES} bytes
# (all that pam_exec passes on).
PATH=/usr/bin:/bin
IFS= read -r -d '' token || true
hash=$(printf '%s' "$token" | head -c {entra_standin.PAM_PASSWORD_BYTES} | sha256sum | cut -d' ' -f1)
file="${{ENTRA_TOKENS:-/run/entra-tokens}}/$PAM_USER/$hash"
[ -f "$file" ] && [ "$(cat "$file")" -gt "$(date +%s)" ]
"""


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def tls_secret(name: str, pki: Pki, stem: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {
            "tls.crt": base64.b64encode(pki.cert(stem).read_bytes()).decode(),
            "tls.key": base64.b64encode(pki.key(stem).read_bytes()).decode(),
        },
    }


def service(name: str, port: int, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"app": NAMESPACE},
            "ports": [{"port": port, "targetPort": target}],
            # Endpoints even while a probe of the pod fails under load: without one, a connection to
            # the Service leaves the cluster for the machine's egress proxy (found with a burst of
            # task pods: "certificate subject name (sandboxing-tproxy-egress)").
            "publishNotReadyAddresses": True,
        },
    }


def token_review_rights() -> list[dict[str, Any]]:
    """The Entra stand-in's service account: it asks the API server who a token is (TokenReview)
    and reads the service account's client-id annotation."""
    name = f"{NAMESPACE}-{ENTRA_SERVICE}"
    rules = [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ENTRA_SERVICE, "namespace": NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": ENTRA_SERVICE, "namespace": NAMESPACE}],
        },
    ]


def azure_pod(
    env: Environment,
    registry: dict[str, RegistryEntry],
    state: Path,
    database: DatabaseService,
    principals: dict[str, str],
    airflow_image: str,
    db_image: str,
    azurite_image: str,
) -> dict[str, Any]:
    """One pod, Entra and what checks its tokens: the database (PAM reads the tokens Entra issued),
    Key Vault; and the git host."""
    run = "/var/run/postgresql"  # the image's postgres user owns it: the key must be the server's own
    hba = '"$PGDATA/pg_hba.conf"'
    pam_logins = "".join(
        f" && sed -i '1i hostssl all {role} all pam pamservice=postgresql' {hba}"
        for role in principals.values()
    )
    start = (
        f"install -m 0600 /tls/tls.key {run}/server.key && install -m 0644 /tls/tls.crt {run}/server.crt"
        # the first start makes the cluster (then exits); the principals log in with Entra tokens
        f' && if [ ! -s "$PGDATA/PG_VERSION" ]; then db-entrypoint.sh postgres --version{pam_logins}; fi'
        f" && exec postgres -c listen_addresses=* -c ssl=on"
        f" -c ssl_cert_file={run}/server.crt -c ssl_key_file={run}/server.key"
    )
    admin_password = {"secretKeyRef": {"name": "database-admin", "key": "password"}}
    tokens = {"name": "entra-tokens", "mountPath": "/run/entra-tokens"}
    database_container = {
        "name": "postgres",
        "image": db_image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", start],
        "env": [
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},  # initdb makes it
            {"name": "POSTGRES_PASSWORD", "valueFrom": admin_password},
        ],
        "ports": [{"containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1"]}, **PROBE_TIMING},
        "volumeMounts": [
            {"name": "database-tls", "mountPath": "/tls", "readOnly": True},
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "pam", "mountPath": "/etc/pam.d/postgresql", "subPath": "postgresql"},
            {"name": "pam", "mountPath": "/etc/entra"},
            {**tokens, "readOnly": True},
        ],
    }
    entra_container = {
        "name": ENTRA_SERVICE,
        "image": airflow_image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", entra_standin.__name__],
        "args": [
            "--cert=/tls/tls.crt",
            "--key=/tls/tls.key",
            f"--port={ENTRA_PORT}",
            f"--tokens={tokens['mountPath']}",
        ],
        "env": [
            {"name": entra_standin.PRINCIPALS_SETTING, "value": json.dumps(principals)},
            {"name": entra_signin.PEOPLE_SETTING, "value": json.dumps(people(registry))},
            {
                "name": entra_signin.APP_SETTING,
                "valueFrom": {"secretKeyRef": {"name": SIGN_IN_APP_SECRET, "key": "app"}},
            },
            {"name": entra_standin.LIFETIME_SETTING, "value": str(TOKEN_SECONDS)},
            {"name": "PGPASSWORD", "valueFrom": admin_password},
            {
                "name": entra_standin.POSTGRES_ADMIN_SETTING,
                "value": "host=127.0.0.1 dbname=postgres user=postgres sslmode=require",
            },
        ],
        "ports": [{"containerPort": ENTRA_PORT}],
        "readinessProbe": {"tcpSocket": {"port": ENTRA_PORT}, **PROBE_TIMING},
        "volumeMounts": [{"name": "entra-tls", "mountPath": "/tls", "readOnly": True}, tokens],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAMESPACE, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": NAMESPACE}},
            "template": {
                "metadata": {"labels": {"app": NAMESPACE}},
                "spec": {
                    "serviceAccountName": ENTRA_SERVICE,
                    # Stand-ins run on any node: each local node is a tainted pool.
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        database_container,
                        entra_container,
                        keyvault_container(env, registry, airflow_image, tokens),
                        git_container(registry, state, airflow_image),
                        *blob_containers(env, airflow_image, azurite_image),
                    ],
                    "volumes": [
                        {"name": "entra-tls", "secret": {"secretName": f"{ENTRA_SERVICE}-tls"}},
                        {"name": "database-tls", "secret": {"secretName": f"{database.name}-tls"}},
                        {"name": "pam", "configMap": {"name": "database-pam", "defaultMode": 0o755}},
                        # The database and the tokens live as long as the pod: a local stand-in.
                        {"name": "data", "emptyDir": {}},
                        {"name": "entra-tokens", "emptyDir": {"medium": "Memory"}},
                        {"name": "keyvault-tls", "secret": {"secretName": f"{KEYVAULT_SERVICE}-tls"}},
                        {"name": "platform-vault", "secret": {"secretName": "platform-vault"}},
                        *(
                            {"name": f"team-vault-{name}", "secret": {"secretName": f"team-vault-{name}"}}
                            for name in team_vaults(env, registry)
                        ),
                        {"name": "git-tls", "secret": {"secretName": f"{GIT_SERVICE}-tls"}},
                        {"name": "team-repositories", "configMap": {"name": "team-repositories"}},
                        {"name": "blob-tls", "secret": {"secretName": f"{BLOB_SERVICE}-tls"}},
                        {"name": "blob-data", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def keyvault_container(
    env: Environment, registry: dict[str, RegistryEntry], image: str, tokens: dict[str, str]
) -> dict[str, Any]:
    host = vault_host(env)
    teams = team_vaults(env, registry)
    # The platform identity reads the platform's vault, each team's identity its own team's (their
    # role assignments on Azure).
    readers = {
        host: [env.platform_identity.client_id],
        **{team_host: [registry[name].managed_identity_client_id] for name, team_host in teams.items()},
    }
    return {
        "name": KEYVAULT_SERVICE,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", keyvault_standin.__name__],
        "args": [
            "--cert=/tls/tls.crt",
            "--key=/tls/tls.key",
            f"--port={KEYVAULT_PORT}",
            f"--tokens={tokens['mountPath']}",
            "--vaults=/vaults",
        ],
        "env": [
            {"name": keyvault_standin.READERS_SETTING, "value": json.dumps(readers)},
            {"name": keyvault_standin.TENANT_SETTING, "value": env.sign_in.tenant_id},
        ],
        "ports": [{"containerPort": KEYVAULT_PORT}],
        "readinessProbe": {"tcpSocket": {"port": KEYVAULT_PORT}, **PROBE_TIMING},
        "volumeMounts": [
            {"name": "keyvault-tls", "mountPath": "/tls", "readOnly": True},
            {**tokens, "readOnly": True},
            {"name": "platform-vault", "mountPath": f"/vaults/{host}", "readOnly": True},
            *(
                {"name": f"team-vault-{name}", "mountPath": f"/vaults/{team_host}", "readOnly": True}
                for name, team_host in teams.items()
            ),
        ],
    }


def blob_containers(env: Environment, airflow_image: str, azurite_image: str) -> list[dict[str, Any]]:
    """Azurite, Microsoft's Storage emulator, as the task logs' storage account: HTTPS, and bearer
    tokens checked as Azurite's "basic" OAuth does (Entra's issuer, Storage's audience, not
    expired); and the sidecar that creates the container."""
    accounts = {
        "name": "AZURITE_ACCOUNTS",
        "valueFrom": {"secretKeyRef": {"name": "storage-account", "key": "accounts"}},
    }
    azurite = {
        "name": BLOB_SERVICE,
        "image": azurite_image,
        "imagePullPolicy": "Never",
        "args": [
            "--blobHost=0.0.0.0",
            f"--blobPort={BLOB_PORT}",
            "--oauth=basic",
            "--cert=/tls/tls.crt",
            "--key=/tls/tls.key",
            "--location=/data",
            "--skipApiVersionCheck",  # the Python SDK may be newer than the emulator
            "--disableTelemetry",  # nothing outside the cluster is reachable
        ],
        "env": [accounts],
        "ports": [{"containerPort": BLOB_PORT}],
        "readinessProbe": {"tcpSocket": {"port": BLOB_PORT}, **PROBE_TIMING},
        "volumeMounts": [
            {"name": "blob-tls", "mountPath": "/tls", "readOnly": True},
            {"name": "blob-data", "mountPath": "/data"},
        ],
    }
    setup = {
        "name": f"{BLOB_SERVICE}-containers",
        "image": airflow_image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", blob_standin.__name__],
        "args": [f"--account-url={env.task_logs.account_url}", f"--container={env.task_logs.container}"],
        "env": [accounts],
    }
    return [azurite, setup]


def git_container(registry: dict[str, RegistryEntry], state: Path, image: str) -> dict[str, Any]:
    repos = {
        urlsplit(entry.repository.url).path: {
            "bundle": f"/bundles/{name}.bundle",
            "user": name,
            "token": git_token(state, name),
        }
        for name, entry in registry.items()
    }
    return {
        "name": GIT_SERVICE,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python", "-m", git_standin.__name__],
        "args": ["--cert=/tls/tls.crt", "--key=/tls/tls.key", f"--port={GIT_PORT}", "--root=/tmp/git"],
        "env": [{"name": git_standin.REPOS_SETTING, "value": json.dumps(repos)}],
        "ports": [{"containerPort": GIT_PORT}],
        "readinessProbe": {"tcpSocket": {"port": GIT_PORT}, **PROBE_TIMING},
        "volumeMounts": [
            {"name": "git-tls", "mountPath": "/tls", "readOnly": True},
            {"name": "team-repositories", "mountPath": "/bundles", "readOnly": True},
        ],
    }


def workload_identity_policy(env: Environment) -> list[dict[str, Any]]:
    """What AKS's workload identity webhook does to a labelled pod, as a MutatingAdmissionPolicy.

    It is evaluated once per service account of the pod's namespace (the param); only the pod's own
    account, with a client-id annotation, changes the pod: the projected token and, in every
    container, the variables azure-identity reads and the token's mount."""
    tenant = env.sign_in.tenant_id
    env_vars = {
        "AZURE_CLIENT_ID": "params.metadata.annotations['azure.workload.identity/client-id']",
        "AZURE_TENANT_ID": json.dumps(tenant),
        "AZURE_FEDERATED_TOKEN_FILE": json.dumps(f"{TOKEN_DIR}/{TOKEN_FILE}"),
        "AZURE_AUTHORITY_HOST": json.dumps(f"https://{ENTRA_HOST}/"),
    }
    env_list = ", ".join(
        f"Object.spec.containers.env{{name: {json.dumps(name)}, value: {value}}}"
        for name, value in env_vars.items()
    )
    token = (
        "Object.spec.volumes.projected.sources.serviceAccountToken{"
        f"audience: {json.dumps(entra_standin.FEDERATION_AUDIENCE)}, expirationSeconds: 3600,"
        f" path: {json.dumps(TOKEN_FILE)}}}"
    )
    account = "(has(object.spec.serviceAccountName) ? object.spec.serviceAccountName : 'default')"
    # The pod's own account, with a client id: only then does this evaluation change the pod.
    applies = (
        "has(params.metadata.annotations)"
        " && 'azure.workload.identity/client-id' in params.metadata.annotations"
        f" && params.metadata.name == {account}"
    )
    # A projected volume's sources are an atomic list, which an apply configuration may not set:
    # the volume is added with a JSON patch, the containers' variables and mounts merged by name.
    volume = (
        f"Object.spec.volumes{{name: {json.dumps(TOKEN_FILE)}, projected: Object.spec.volumes.projected{{"
        f"sources: [Object.spec.volumes.projected.sources{{serviceAccountToken: {token}}}]}}}}"
    )
    add_volume = f"""
        !variables.applies ? [] : has(object.spec.volumes)
          ? [JSONPatch{{op: "add", path: "/spec/volumes/-", value: {volume}}}]
          : [JSONPatch{{op: "add", path: "/spec/volumes", value: [{volume}]}}]
    """
    set_containers = f"""
        !variables.applies ? Object{{}} : Object{{
          spec: Object.spec{{
            containers: object.spec.containers.map(c, Object.spec.containers{{
              name: c.name,
              env: [{env_list}],
              volumeMounts: [Object.spec.containers.volumeMounts{{
                name: {json.dumps(TOKEN_FILE)}, mountPath: {json.dumps(TOKEN_DIR)}, readOnly: true}}]}})
          }}
        }}
    """
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1beta1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": POLICY},
            "spec": {
                "paramKind": {"apiVersion": "v1", "kind": "ServiceAccount"},
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ]
                },
                "matchConditions": [
                    {
                        "name": "uses-workload-identity",
                        "expression": f"has(object.metadata.labels) && '{USE_LABEL}' in"
                        f" object.metadata.labels && object.metadata.labels['{USE_LABEL}'] == 'true'",
                    }
                ],
                "variables": [{"name": "applies", "expression": applies}],
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "mutations": [
                    {"patchType": "JSONPatch", "jsonPatch": {"expression": add_volume}},
                    {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": set_containers}},
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1beta1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY},
            "spec": {
                "policyName": POLICY,
                "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
            },
        },
    ]
