"""People signing in with Entra ID, in the local cluster: the OpenID Connect authorization code flow.

What FAB's ``azure`` OAuth provider (the api-server's sign-in) does with Entra: it sends the browser
to ``/<tenant>/oauth2/v2.0/authorize``, Entra sends it back with a code, the api-server redeems the
code with the app registration's client secret at ``/oauth2/v2.0/token`` and reads the person from
the ``id_token`` (RS256, checked against ``/discovery/v2.0/keys``, issuer and audience). Entra
would ask the person for a password; the stand-in signs in the person ``login_hint`` names (an
Entra parameter), if it knows them. People and their app roles and groups come from
``ARIEL_STANDIN_PEOPLE`` (JSON ``{login: {"name", "roles", "groups"}}``), the app registration
from ``ARIEL_STANDIN_SIGN_IN_APP`` (JSON ``{"client_id", "client_secret"}``).
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

PEOPLE_SETTING = "ARIEL_STANDIN_PEOPLE"
APP_SETTING = "ARIEL_STANDIN_SIGN_IN_APP"
KEY_ID = "ariel-standin"
CODE_SECONDS = 300  # Entra's codes live about 10 minutes
ID_TOKEN_SECONDS = 3600


class SignInRefused(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Grant:
    tenant: str
    login: str
    client_id: str
    redirect_uri: str
    nonce: str | None
    expires: float


class SigningKey:
    """Entra's token signing key (RS256), made at start; ``/discovery/v2.0/keys`` serves its public half."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(self, claims: dict[str, Any]) -> str:
        from authlib.jose import jwt

        return jwt.encode({"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}, claims, self._pem()).decode()

    def keys(self) -> dict[str, Any]:
        from authlib.jose import JsonWebKey

        public = JsonWebKey.import_key(self._pem(public=True), {"kty": "RSA"}).as_dict()
        return {"keys": [{**public, "kid": KEY_ID, "use": "sig", "alg": "RS256"}]}

    def _pem(self, public: bool = False) -> bytes:
        from cryptography.hazmat.primitives import serialization

        if public:
            return self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def object_id(tenant: str, name: str) -> str:
    """A principal's object id: stable for its name, as Entra's is for the account."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{name}"))


class SignIn:
    """The app registration people sign in to, its people, and the codes handed out."""

    def __init__(self, app: dict[str, str], people: dict[str, dict[str, Any]], key: SigningKey) -> None:
        self.app, self.people, self.key = app, people, key
        self.codes: dict[str, Grant] = {}

    def authorize(self, tenant: str, query: dict[str, str]) -> str:
        """The URL Entra sends the browser back to, with a code for the person ``login_hint`` names."""
        if query.get("client_id") != self.app["client_id"]:
            raise SignInRefused(
                "unauthorized_client", f"AADSTS700016: application {query.get('client_id')} not found"
            )
        if query.get("response_type") != "code" or not query.get("redirect_uri"):
            raise SignInRefused("invalid_request", "response_type=code and a redirect_uri are required")
        login = query.get("login_hint", "")
        if login not in self.people:
            raise SignInRefused(
                "invalid_grant", f"AADSTS50034: the user account {login!r} does not exist", 401
            )
        code = secrets.token_urlsafe(32)
        self.codes[code] = Grant(
            tenant,
            login,
            query["client_id"],
            query["redirect_uri"],
            query.get("nonce"),
            time.time() + CODE_SECONDS,
        )
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return f"{query['redirect_uri']}?{urlencode(back)}"

    def redeem(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """Tokens for a code, to the app that proves its secret (in the form or as HTTP Basic)."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.app["client_id"] or secret != self.app["client_secret"]:
            raise SignInRefused("invalid_client", "AADSTS7000215: invalid client secret provided", 401)
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires < time.time() or grant.client_id != client_id:
            raise SignInRefused("invalid_grant", "AADSTS70008: the code has expired or was already used")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise SignInRefused("invalid_grant", "AADSTS50148: the redirect_uri does not match the code's")
        return {
            "token_type": "Bearer",
            "scope": "openid email profile",
            "expires_in": ID_TOKEN_SECONDS,
            "access_token": secrets.token_urlsafe(64),
            "id_token": self.id_token(grant),
        }

    def id_token(self, grant: Grant) -> str:
        person = self.people[grant.login]
        now = int(time.time())
        return self.key.sign(
            {
                "iss": f"https://login.microsoftonline.com/{grant.tenant}/v2.0",
                "aud": grant.client_id,
                "tid": grant.tenant,
                "oid": object_id(grant.tenant, grant.login),
                "sub": grant.login,
                "preferred_username": grant.login,
                "email": grant.login,
                "name": person.get("name", grant.login),
                "roles": person.get("roles", []),
                "groups": person.get("groups", []),
                "iat": now,
                "nbf": now,
                "exp": now + ID_TOKEN_SECONDS,
                **({"nonce": grant.nonce} if grant.nonce else {}),
            }
        )
