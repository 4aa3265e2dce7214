"""A local HTTPS stand-in for Microsoft Entra's token service, for azure-identity's real code path.

It answers the requests azure-identity and MSAL make to an authority host: instance discovery,
the tenant's OpenID configuration, the OAuth2 token endpoint and (for a user's sign-in, as
``az login --use-device-code`` makes it) the device code endpoint; user grants get a refresh token,
an ID token and client_info for ``user``, as Entra gives them. Clients reach it as
``login.microsoftonline.com`` (the default authority, so nothing in the credential's configuration
changes) through ``proxy_url``, the CONNECT proxy of tests/standin_network.py: set the variables of
``client_env()``. Other stand-ins join its network (``proxy.route``, ``ca.server_context``), as the
Key Vault stand-in does. Every token request is recorded for the tests, with the token issued.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from standin_network import ConnectProxy, TestCA, https_server

ENTRA_HOST = "login.microsoftonline.com"  # azure-identity's default authority host
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OPENID_SCOPES = {"openid", "profile", "offline_access"}
USER_GRANTS = {DEVICE_CODE_GRANT, "refresh_token"}  # the grants a user's sign-in (az login) makes


@dataclass
class TokenRequest:
    tenant: str
    form: dict[str, str]
    access_token: str  # what the stand-in answered with


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
        self.ca = TestCA(self.folder)
        self.ca_file = self.ca.ca_file
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
                standin.requests.append(
                    TokenRequest(tenant=tenant, form=form, access_token=standin.access_token)
                )
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

        self.server = https_server(self.ca.server_context(ENTRA_HOST), Handler)
        self.proxy = ConnectProxy()
        self.proxy.route(ENTRA_HOST, self.server.server_address)
        self.proxy_url = self.proxy.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy.close()
        self.server.shutdown()
        self.server.server_close()

    def issued(self, token: str, scope: str) -> bool:
        """Whether this stand-in gave ``token`` for ``scope`` (a resource's check of a bearer token)."""
        return any(
            r.access_token == token and scope in r.form.get("scope", "").split() for r in self.requests
        )

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


def _openid_url(authorization_endpoint: str) -> str:
    return authorization_endpoint.replace("/oauth2/v2.0/authorize", "/v2.0/.well-known/openid-configuration")
