"""A local HTTPS stand-in for Azure Key Vault: the REST calls azure-keyvault-secrets' SecretClient makes.

No Azure service is reachable from the tests, so this speaks the Key Vault protocol for what the kit
uses: the challenge-based authentication (an unauthenticated request gets 401 and a
``WWW-Authenticate: Bearer authorization=..., resource=...`` challenge; then a bearer token), listing
secret properties in pages linked by ``nextLink``, getting a secret, and setting one. Its TLS
certificate is signed by a CA made at test time; the client trusts that CA through
``connection_verify``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
RESOURCE = "https://vault.azure.net"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="{RESOURCE}"'
# What Key Vault accepts as a secret name.
SECRET_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")


@dataclass
class StoredSecret:
    value: str
    enabled: bool = True
    content_type: str | None = None
    version: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))


class StaticTokenCredential:
    """A TokenCredential whose token the stand-in accepts; it records the scopes it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


class KeyVaultStandin:
    """``with KeyVaultStandin(tmp_path) as vault:`` a vault at ``vault.url``.

    ``secrets`` holds what the vault stores (name -> StoredSecret); ``refuse`` maps names to the
    HTTP status a write of that name gets (a missing permission or a policy); ``page_size`` is how
    many secrets one list page holds, so that listing follows ``nextLink``.
    """

    def __init__(self, workdir: Path, page_size: int = 2) -> None:
        self.workdir = Path(workdir)
        self.page_size = page_size
        self.token = f"test-token-{uuid.uuid4().hex}"
        self.secrets: dict[str, StoredSecret] = {}
        self.refuse: dict[str, int] = {}
        self.requests: list[tuple[str, str, bool]] = []  # method, path, authenticated
        self.ca_file = self.workdir / "standin-ca.pem"
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server, "start the stand-in first"
        return f"https://127.0.0.1:{self._server.server_address[1]}/"

    def credential(self) -> StaticTokenCredential:
        return StaticTokenCredential(self.token)

    def client(self, vault_url: str | None = None, credential: Any = None) -> SecretClient:
        """A real SecretClient for this vault. The challenge names vault.azure.net, as Azure's does,
        which is not the stand-in's host, hence ``verify_challenge_resource=False``."""
        return SecretClient(
            vault_url=vault_url or self.url,
            credential=credential or self.credential(),
            connection_verify=str(self.ca_file),
            verify_challenge_resource=False,
        )

    def add(self, name: str, value: str, enabled: bool = True) -> None:
        self.secrets[name] = StoredSecret(value=value, enabled=enabled)

    def __enter__(self) -> KeyVaultStandin:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert_file, key_file = _certificates(self.workdir, self.ca_file)
        context.load_cert_chain(cert_file, key_file)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server
        self._server.shutdown()
        self._server.server_close()

    # The protocol, one method per call.

    def list_page(self, skip: int) -> dict[str, Any]:
        names = sorted(self.secrets)
        page = names[skip : skip + self.page_size]
        body: dict[str, Any] = {"value": [self._properties(name, with_version=False) for name in page]}
        more = skip + self.page_size < len(names)
        # Key Vault's nextLink is a full URL with a continuation token and the api-version.
        body["nextLink"] = (
            f"{self.url}secrets?api-version=7.6&$skiptoken={skip + self.page_size}" if more else None
        )
        return body

    def get(self, name: str) -> tuple[int, dict[str, Any]]:
        secret = self.secrets.get(name)
        if secret is None:
            return 404, _error(
                "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        if not secret.enabled:
            return 403, _error("Forbidden", "Operation get is not allowed on a disabled secret.")
        return 200, {"value": secret.value, **self._properties(name, with_version=True)}

    def set(self, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
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
        return 200, {"value": body["value"], **self._properties(name, with_version=True)}

    def _properties(self, name: str, with_version: bool) -> dict[str, Any]:
        secret = self.secrets[name]
        secret_id = f"{self.url}secrets/{name}" + (f"/{secret.version}" if with_version else "")
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
            authenticated = self.headers.get("Authorization") == f"Bearer {vault.token}"
            vault.requests.append((method, url.path, authenticated))
            if not authenticated:
                # The first request of a client carries no token (and no body): answer with the
                # challenge that tells it the tenant and the resource to ask a token for.
                self._reply(
                    401,
                    _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
                    {"WWW-Authenticate": CHALLENGE},
                )
                return
            if "api-version" not in parse_qs(url.query):
                self._reply(400, _error("BadParameter", "The api-version query parameter is required."))
                return
            parts = [part for part in url.path.split("/") if part]
            if method == "GET" and parts == ["secrets"]:
                skip = int(parse_qs(url.query).get("$skiptoken", ["0"])[0])
                self._reply(200, vault.list_page(skip))
            elif method == "GET" and len(parts) in (2, 3) and parts[0] == "secrets":
                self._reply(*vault.get(parts[1]))
            elif method == "PUT" and len(parts) == 2 and parts[0] == "secrets":
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                self._reply(*vault.set(parts[1], body))
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


def _certificates(workdir: Path, ca_file: Path) -> tuple[Path, Path]:
    """A CA (written to ``ca_file``) and a server certificate for 127.0.0.1 and localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Key Vault stand-in test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file, key_file = workdir / "standin-cert.pem", workdir / "standin-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file
