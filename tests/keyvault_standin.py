"""A local HTTPS stand-in for Azure Key Vault: the REST calls azure-keyvault-secrets' SecretClient makes.

No Azure service is reachable from the tests, so this speaks the Key Vault protocol for what the kit
uses: the challenge-based authentication (an unauthenticated request gets 401 and a
``WWW-Authenticate: Bearer authorization=..., resource=...`` challenge naming the vault's tenant;
then a bearer token, accepted only if the Entra stand-in issued it for Key Vault's scope), listing
secret properties in pages linked by ``nextLink``, getting a secret, and setting one.

It joins the Entra stand-in's network (tests/standin_network.py): the proxy routes every
``*.vault.azure.net`` host to it, with a certificate for ``*.vault.azure.net`` from the same test
CA, so a client reaches it at a vault's real URL and the challenge's resource matches the vault's
domain, as azure-keyvault-secrets verifies by default. One stand-in serves every vault host; each
request records the host it named.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from entra_standin import ENTRA_HOST, EntraStandIn
from standin_network import https_server

VAULT_HOSTS = "*.vault.azure.net"  # Azure public cloud's vaults
RESOURCE = "https://vault.azure.net"
SCOPE = f"{RESOURCE}/.default"  # what a client asks Entra for, from the challenge's resource
# What Key Vault accepts as a secret name.
SECRET_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")


@dataclass
class VaultRequest:
    method: str
    host: str  # the vault's hostname the client named (Host header)
    path: str
    token: str | None  # the bearer token it presented, if any


@dataclass
class StoredSecret:
    value: str
    enabled: bool = True
    content_type: str | None = None
    version: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))


class KeyVaultStandin:
    """``with KeyVaultStandin(entra, tenant) as vault:`` every ``https://<name>.vault.azure.net/``.

    ``secrets`` holds what the vault stores (name -> StoredSecret); ``refuse`` maps names to the
    HTTP status a write of that name gets (a missing permission or a policy); ``page_size`` is how
    many secrets one list page holds, so that listing follows ``nextLink``. ``tenant`` is the
    vault's tenant, named in the challenge. ``reset()`` empties it between tests.
    """

    def __init__(self, entra: EntraStandIn, tenant: str, page_size: int = 2) -> None:
        self.entra = entra
        self.tenant = tenant
        self.page_size = page_size
        self.secrets: dict[str, StoredSecret] = {}
        self.refuse: dict[str, int] = {}
        self.requests: list[VaultRequest] = []

    @property
    def challenge(self) -> str:
        return f'Bearer authorization="https://{ENTRA_HOST}/{self.tenant}", resource="{RESOURCE}"'

    def authorized(self, token: str | None) -> bool:
        return token is not None and self.entra.issued(token, SCOPE)

    def add(self, name: str, value: str, enabled: bool = True) -> None:
        self.secrets[name] = StoredSecret(value=value, enabled=enabled)

    def reset(self) -> None:
        self.secrets.clear()
        self.refuse.clear()
        self.requests.clear()

    def __enter__(self) -> KeyVaultStandin:
        self._server = https_server(self.entra.ca.server_context(VAULT_HOSTS), _handler_for(self))
        self.entra.proxy.route(VAULT_HOSTS, self._server.server_address)
        return self

    def __exit__(self, *exc: object) -> None:
        self.entra.proxy.routes.pop(VAULT_HOSTS, None)
        self._server.shutdown()
        self._server.server_close()

    # The protocol, one method per call.

    def list_page(self, vault_url: str, skip: int) -> dict[str, Any]:
        names = sorted(self.secrets)
        page = names[skip : skip + self.page_size]
        body: dict[str, Any] = {
            "value": [self._properties(vault_url, name, with_version=False) for name in page]
        }
        more = skip + self.page_size < len(names)
        # Key Vault's nextLink is a full URL with a continuation token and the api-version.
        body["nextLink"] = (
            f"{vault_url}secrets?api-version=7.6&$skiptoken={skip + self.page_size}" if more else None
        )
        return body

    def get(self, vault_url: str, name: str) -> tuple[int, dict[str, Any]]:
        secret = self.secrets.get(name)
        if secret is None:
            return 404, _error(
                "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        if not secret.enabled:
            return 403, _error("Forbidden", "Operation get is not allowed on a disabled secret.")
        return 200, {"value": secret.value, **self._properties(vault_url, name, with_version=True)}

    def set(self, vault_url: str, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not SECRET_NAME.fullmatch(name):
            return 400, _error("BadParameter", "The request URI contains an invalid name: " + name)
        if name in self.refuse:
            return self.refuse[name], _error(
                "Forbidden", f"The user does not have secrets set permission on key vault for {name}."
            )
        if not isinstance(body.get("value"), str):
            return 400, _error("BadParameter", "Property value is required.")
        attributes = body.get("attributes") or {}
        self.secrets[name] = StoredSecret(
            value=body["value"], enabled=attributes.get("enabled", True), content_type=body.get("contentType")
        )
        return 200, {"value": body["value"], **self._properties(vault_url, name, with_version=True)}

    def _properties(self, vault_url: str, name: str, with_version: bool) -> dict[str, Any]:
        secret = self.secrets[name]
        secret_id = f"{vault_url}secrets/{name}" + (f"/{secret.version}" if with_version else "")
        properties: dict[str, Any] = {
            "id": secret_id,
            "attributes": {
                "enabled": secret.enabled,
                "created": secret.created,
                "updated": secret.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": {},
        }
        if secret.content_type:
            properties["contentType"] = secret.content_type
        return properties


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _handler_for(vault: KeyVaultStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
            token = credentials if scheme == "Bearer" else None
            host = self.headers.get("Host", "")
            vault_url = f"https://{host}/"  # the nextLink and the ids it returns name the vault asked
            vault.requests.append(VaultRequest(method, host, url.path, token))
            if not vault.authorized(token):
                # The first request of a client carries no token (and no body), and a token Entra
                # did not issue for Key Vault is refused alike: the challenge tells the client the
                # tenant and the resource to ask a token for.
                self._reply(
                    401,
                    _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
                    {"WWW-Authenticate": vault.challenge},
                )
                return
            if "api-version" not in parse_qs(url.query):
                self._reply(400, _error("BadParameter", "The api-version query parameter is required."))
                return
            parts = [part for part in url.path.split("/") if part]
            if method == "GET" and parts == ["secrets"]:
                skip = int(parse_qs(url.query).get("$skiptoken", ["0"])[0])
                self._reply(200, vault.list_page(vault_url, skip))
            elif method == "GET" and len(parts) in (2, 3) and parts[0] == "secrets":
                self._reply(*vault.get(vault_url, parts[1]))
            elif method == "PUT" and len(parts) == 2 and parts[0] == "secrets":
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                self._reply(*vault.set(vault_url, parts[1], body))
            else:
                self._reply(404, _error("NotFound", f"{method} {url.path} is not a call the stand-in knows"))

        def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
