"""Microsoft Entra's token service for the local cluster: workload identity federation, as AKS uses it.

A pod with workload identity holds a service-account token for the audience
``api://AzureADTokenExchange`` and trades it here for an access token (azure-identity's
WorkloadIdentityCredential: a client-credentials grant with the token as ``client_assertion``).
Entra accepts the trade when the app ``client_id`` has a federated credential for the token's
issuer and subject; here that is the service account's ``azure.workload.identity/client-id``
annotation, read from the API server after a TokenReview has vouched for the token. Anything else
gets Entra's error (``invalid_client``), and the pod's credential fails as it would on Azure.

Azure Database for PostgreSQL accepts an Entra token of a principal as that role's password, each
token until it expires. The database stand-in is Postgres checking those roles' passwords with PAM
(``pam_exec``, ``standins.TOKEN_CHECK``): this service, in the same pod, writes each token issued
for the database's scope into the shared ``--tokens`` folder (``<role>/<sha256 of the token>``,
holding its expiry), which the check reads. The roles and their databases are made at start, as
``pgaadauth_create_principal_with_oid`` and an admin make them on Azure.

People sign in to the api-server here too (``entra_signin``: OpenID Connect's authorization code).

Clients reach it as ``login.microsoftonline.com``: the cluster DNS answers that name with this
Service, whose certificate the cluster's CA issued (trusted in the images loaded into the nodes).

    python -m ariel_airflow.localkube.entra_standin --cert FILE --key FILE [--port 8443] [--tokens DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ariel_airflow.entra import POSTGRES_SCOPE
from ariel_airflow.localkube.entra_signin import (
    APP_SETTING,
    PEOPLE_SETTING,
    SignIn,
    SigningKey,
    SignInRefused,
    object_id,
)
from ariel_airflow.localkube.standin_server import StandInHandler, tls_server

log = logging.getLogger("entra-standin")

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_AUDIENCE = "https://storage.azure.com"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
# The database principals: {client id: role}, in ARIEL_STANDIN_PRINCIPALS (JSON); the admin login
# in ARIEL_STANDIN_POSTGRES_ADMIN (a libpq connection string).
PRINCIPALS_SETTING = "ARIEL_STANDIN_PRINCIPALS"
POSTGRES_ADMIN_SETTING = "ARIEL_STANDIN_POSTGRES_ADMIN"
LIFETIME_SETTING = "ARIEL_STANDIN_TOKEN_SECONDS"
# Entra's tokens are JWTs of 1-3 kB; PgBouncer keeps 2047 bytes of a password.
TOKEN_BYTES = 900
# pam_exec hands a command the first 511 bytes of a password (a PAM_MAX_RESP_SIZE buffer of 512,
# NUL included; found on the cluster): what is hashed.
PAM_PASSWORD_BYTES = 511


ISSUED_DIR = "issued"  # every token issued: what the Key Vault stand-in checks a bearer token against


def token_file_name(token: str) -> str:
    return hashlib.sha256(token.encode()[:PAM_PASSWORD_BYTES]).hexdigest()


class Refused(Exception):
    """An Entra error answer: ``error`` and its description."""

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class Federation:
    """Who a client assertion is: a TokenReview, then the service account's client-id annotation."""

    def __init__(self) -> None:
        from kubernetes import client, config

        config.load_incluster_config()
        self.auth = client.AuthenticationV1Api()
        self.core = client.CoreV1Api()
        self.client = client

    def client_id_of(self, assertion: str) -> str:
        review = self.auth.create_token_review(
            self.client.V1TokenReview(
                spec=self.client.V1TokenReviewSpec(token=assertion, audiences=[FEDERATION_AUDIENCE])
            )
        )
        status = review.status
        if not status.authenticated:
            raise Refused("invalid_client", f"AADSTS700024: client assertion is not valid: {status.error}")
        # system:serviceaccount:<namespace>:<name>, the subject a federated credential names
        _, _, namespace, name = status.user.username.split(":", 3)
        account = self.core.read_namespaced_service_account(name, namespace)
        client_id = (account.metadata.annotations or {}).get(CLIENT_ID_ANNOTATION)
        if not client_id:
            raise Refused(
                "invalid_client",
                f"AADSTS70021: no federated credential for {status.user.username}"
                f" (no {CLIENT_ID_ANNOTATION})",
            )
        return client_id


class PostgresPrincipals:
    """The database's Entra principals: each token issued for one is valid as its password until
    it expires (a file the database's PAM check reads)."""

    def __init__(self, admin_dsn: str, principals: dict[str, str], tokens: Path, lifetime: int) -> None:
        self.admin_dsn, self.principals, self.tokens, self.lifetime = admin_dsn, principals, tokens, lifetime

    def create(self) -> None:
        """Each principal's role and a database it owns, once (retried until Postgres is up)."""
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + 300
        while True:
            try:
                with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5) as admin:
                    for role in self.principals.values():
                        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
                        if not exists:
                            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
                        found = admin.execute(
                            "SELECT 1 FROM pg_database WHERE datname = %s", [role]
                        ).fetchone()
                        if not found:
                            admin.execute(
                                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                                    sql.Identifier(role), sql.Identifier(role)
                                )
                            )
                        log.info("database principal %s ready", role)
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for the database: %s", str(exc).strip())
                time.sleep(2)

    def token_for(self, client_id: str) -> str:
        role = self.principals.get(client_id)
        if role is None:
            raise Refused("invalid_scope", f"AADSTS65001: {client_id} is no principal of the database", 400)
        token = secrets.token_urlsafe(TOKEN_BYTES)[:TOKEN_BYTES]
        folder = self.tokens / role
        folder.mkdir(parents=True, exist_ok=True)
        now = int(time.time())
        for old in folder.iterdir():  # expired ones go
            if int(old.read_text() or 0) < now:
                old.unlink(missing_ok=True)
        (folder / token_file_name(token)).write_text(str(now + self.lifetime))
        return token


class TokenService:
    def __init__(
        self,
        federation: Federation,
        postgres: PostgresPrincipals | None,
        lifetime: int,
        tokens: Path | None,
        key: SigningKey | None = None,
    ) -> None:
        self.federation, self.postgres, self.lifetime, self.tokens = federation, postgres, lifetime, tokens
        self.key = key or SigningKey()
        self.issued = 0

    def record(self, token: str, client_id: str, scope: str) -> None:
        """Write down who ``token`` was issued to, for what and until when (the resources' check)."""
        if self.tokens is None:
            return
        folder = self.tokens / ISSUED_DIR
        folder.mkdir(parents=True, exist_ok=True)
        entry = {"client_id": client_id, "scope": scope, "expires": time.time() + self.lifetime}
        (folder / token_file_name(token)).write_text(json.dumps(entry))

    def token(self, form: dict[str, str], tenant: str = "common") -> dict[str, object]:
        if form.get("grant_type") != "client_credentials" or "client_assertion" not in form:
            raise Refused("unsupported_grant_type", "only workload identity federation is served here", 400)
        client_id = self.federation.client_id_of(form["client_assertion"])
        if client_id != form.get("client_id"):
            raise Refused(
                "invalid_client",
                f"AADSTS700213: no matching federated identity record for client {form.get('client_id')}",
            )
        scope = form.get("scope", "")
        if scope == POSTGRES_SCOPE and self.postgres is not None:
            access_token = self.postgres.token_for(client_id)
        elif scope == STORAGE_SCOPE:  # Azure Storage (Azurite) reads the claims of its tokens
            access_token = self.storage_token(client_id, tenant)
        else:
            access_token = secrets.token_urlsafe(TOKEN_BYTES)[:TOKEN_BYTES]
        self.record(access_token, client_id, scope)
        self.issued += 1
        log.info("token %d issued to %s for %s, valid %ds", self.issued, client_id, scope, self.lifetime)
        return {"token_type": "Bearer", "expires_in": self.lifetime, "access_token": access_token}

    def storage_token(self, client_id: str, tenant: str) -> str:
        """An access token for Azure Storage, as Entra's v1 tokens for it are (a JWT)."""
        now = int(time.time())
        return self.key.sign(
            {
                "aud": STORAGE_AUDIENCE,
                "iss": f"https://sts.windows.net/{tenant}/",
                "appid": client_id,
                "oid": object_id(tenant, client_id),
                "tid": tenant,
                "iat": now,
                "nbf": now,
                "exp": now + self.lifetime,
            }
        )


def openid_configuration(host: str, tenant: str) -> dict[str, str]:
    base = f"https://{host}/{tenant}"
    return {
        "issuer": f"{base}/v2.0",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
    }


def handler(service: TokenService, sign_in: SignIn | None) -> type[BaseHTTPRequestHandler]:
    class Handler(StandInHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            url = urlsplit(self.path)
            if sign_in and url.path.endswith("/oauth2/v2.0/authorize"):
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                try:
                    back = sign_in.authorize(url.path.strip("/").split("/")[0], query)
                except SignInRefused as exc:
                    log.warning("sign-in refused: %s", exc.description)
                    self.answer_json({"error": exc.error, "error_description": exc.description}, exc.status)
                    return
                log.info("signed in %s", query.get("login_hint"))
                self.send_response(302)
                self.send_header("Location", back)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path.endswith(("/discovery/v2.0/keys", "/discovery/keys")):  # FAB reads the v1 path
                self.answer_json(service.key.keys())
            elif url.path.endswith("/discovery/instance"):  # MSAL's instance discovery
                endpoint = parse_qs(url.query)["authorization_endpoint"][0]
                discovery = endpoint.replace(
                    "/oauth2/v2.0/authorize", "/v2.0/.well-known/openid-configuration"
                )
                self.answer_json({"tenant_discovery_endpoint": discovery, "metadata": []})
            elif url.path.endswith("/v2.0/.well-known/openid-configuration"):
                self.answer_json(
                    openid_configuration(self.headers["Host"], url.path.strip("/").split("/")[0])
                )
            elif url.path == "/healthz":
                self.answer_json({"issued": service.issued})
            else:
                self.answer_json({"error": "not_found", "error_description": url.path}, 404)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {key: values[0] for key, values in parse_qs(body).items()}
            if not urlsplit(self.path).path.endswith("/oauth2/v2.0/token"):
                self.answer_json({"error": "not_found", "error_description": self.path}, 404)
                return
            try:
                if form.get("grant_type") == "authorization_code" and sign_in:
                    self.answer_json(sign_in.redeem(form, self.headers.get("Authorization")))
                else:
                    self.answer_json(service.token(form, urlsplit(self.path).path.strip("/").split("/")[0]))
            except (Refused, SignInRefused) as exc:
                log.warning("refused: %s", exc.description)
                self.answer_json({"error": exc.error, "error_description": exc.description}, exc.status)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ariel_airflow.localkube.entra_standin", description=__doc__
    )
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--tokens", type=Path, help="where the database's PAM check finds the tokens")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    lifetime = int(os.environ.get(LIFETIME_SETTING, "3600"))
    postgres = None
    if args.tokens and (admin := os.environ.get(POSTGRES_ADMIN_SETTING)):
        principals = json.loads(os.environ.get(PRINCIPALS_SETTING, "{}"))
        postgres = PostgresPrincipals(admin, principals, args.tokens, lifetime)
        postgres.create()
    service = TokenService(Federation(), postgres, lifetime, args.tokens)
    app = os.environ.get(APP_SETTING)
    people = json.loads(os.environ.get(PEOPLE_SETTING, "{}"))
    sign_in = SignIn(json.loads(app), people, service.key) if app else None
    server = tls_server(handler(service, sign_in), args.port, args.cert, args.key)
    log.info("serving on :%d", args.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
