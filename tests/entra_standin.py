"""A local HTTPS stand-in for Microsoft Entra's token service, for azure-identity's real code path.

It answers the requests azure-identity and MSAL make to an authority host: instance discovery,
the tenant's OpenID configuration, the OAuth2 token endpoint and (for a user's sign-in, as
``az login --use-device-code`` makes it) the device code endpoint; user grants get a refresh token,
an ID token and client_info for ``user``, as Entra gives them. Clients reach it as
``login.microsoftonline.com`` (the default authority, so nothing in the credential's configuration
changes) through ``proxy_url``, a CONNECT proxy like a company's: set HTTPS_PROXY to it. Its
certificate is self-signed, made at start; point SSL_CERT_FILE and REQUESTS_CA_BUNDLE at ``ca_file``
as for a company's TLS-intercepting proxy. Every token request is recorded for the tests.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import itertools
import json
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ENTRA_HOST = "login.microsoftonline.com"  # azure-identity's default authority host
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OPENID_SCOPES = {"openid", "profile", "offline_access"}
USER_GRANTS = {DEVICE_CODE_GRANT, "refresh_token"}  # the grants a user's sign-in (az login) makes


@dataclass
class TokenRequest:
    tenant: str
    form: dict[str, str]


@dataclass
class EntraStandIn:
    """Start with ``with EntraStandIn(folder) as entra:``, then set the variables of ``client_env()``."""

    folder: Path
    access_token: str = "token-from-the-stand-in"
    expires_in: int = 3600
    user: str = "developer@contoso.example"  # who signs in with a user's grant (device code)
    requests: list[TokenRequest] = field(default_factory=list)
    _refresh_tokens: itertools.count = field(default_factory=lambda: itertools.count(1))
    _device_code_scope: str = ""

    def __enter__(self) -> EntraStandIn:
        self.ca_file, key_file = _self_signed(self.folder)
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path = urlsplit(self.path).path
                if path.endswith("/discovery/instance"):  # MSAL's instance discovery
                    tenant = parse_qs(urlsplit(self.path).query)["authorization_endpoint"][0]
                    self._json({"tenant_discovery_endpoint": _openid_url(tenant), "metadata": []})
                elif path.endswith("/v2.0/.well-known/openid-configuration"):
                    tenant = path.strip("/").split("/")[0]
                    self._json(standin.openid_configuration(self.headers["Host"], tenant))
                else:
                    self._json({"error": "not_found", "error_description": path}, 404)

            def do_POST(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                tenant = path.strip("/").split("/")[0]
                if path.endswith("/oauth2/v2.0/devicecode"):  # the user signs in at once
                    self._json(standin.device_code(form))
                    return
                if not path.endswith("/oauth2/v2.0/token"):
                    self._json({"error": "not_found", "error_description": path}, 404)
                    return
                standin.requests.append(TokenRequest(tenant=tenant, form=form))
                token = {
                    "token_type": "Bearer",
                    "expires_in": standin.expires_in,
                    "access_token": standin.access_token,
                }
                if form.get("grant_type") in USER_GRANTS:
                    token |= standin.user_tokens(self.headers["Host"], tenant, form)
                self._json(token)

            def _json(self, document: dict, status: int = 200) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.proxy = ThreadingHTTPServer(("127.0.0.1", 0), _tunnel_to(self.server.server_address))
        self.proxy_url = f"http://127.0.0.1:{self.proxy.server_address[1]}"
        for server in (self.server, self.proxy):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self.proxy, self.server):
            server.shutdown()
            server.server_close()

    def client_env(self) -> dict[str, str]:
        """What a client needs to reach and trust the stand-in."""
        return {
            "HTTPS_PROXY": self.proxy_url,
            "SSL_CERT_FILE": str(self.ca_file),
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
        }

    def openid_configuration(self, host: str, tenant: str) -> dict:
        base = f"https://{host}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        }

    def device_code(self, form: dict[str, str]) -> dict:
        self._device_code_scope = form["scope"]  # what the token for this device code grants
        return {
            "device_code": "device-code-of-the-stand-in",
            "user_code": "STANDIN",
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900,
            "interval": 1,
            "message": "signed in already (stand-in)",
        }

    def user_tokens(self, host: str, tenant: str, form: dict[str, str]) -> dict:
        """What Entra adds for a user: a refresh token, an ID token and client_info (MSAL's account)."""
        user_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, self.user))
        now = int(time.time())
        claims = {
            "iss": f"https://{host}/{tenant}/v2.0",
            "aud": form["client_id"],
            "sub": user_id,
            "oid": user_id,
            "tid": tenant,
            "preferred_username": self.user,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        requested = form.get("scope") or self._device_code_scope
        return {  # Entra's scope names what was granted: the resource's, not the OpenID ones
            "scope": " ".join(s for s in requested.split() if s not in OPENID_SCOPES),
            "refresh_token": f"refresh-token-{next(self._refresh_tokens)}",
            "id_token": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
            "client_info": _b64({"uid": user_id, "utid": tenant}),
        }


def _b64(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def _tunnel_to(address: tuple[str, int]) -> type[BaseHTTPRequestHandler]:
    """A CONNECT proxy that takes every tunnel, whatever host it names, to ``address``."""

    class Tunnel(BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:  # noqa: N802 - the http.server API
            upstream = socket.create_connection(address)
            self.send_response(200, "Connection established")
            self.end_headers()
            threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True).start()
            _pipe(self.connection, upstream)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Tunnel


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _openid_url(authorization_endpoint: str) -> str:
    return authorization_endpoint.replace("/oauth2/v2.0/authorize", "/v2.0/.well-known/openid-configuration")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for Entra's host that is its own CA (so it can be the trusted bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ENTRA_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ENTRA_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "entra-standin.pem", folder / "entra-standin.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file
