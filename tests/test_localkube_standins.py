"""The local environment's Azure stand-ins, where they can be tried without a cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ariel_airflow.cluster.environments import load_environment
from ariel_airflow.errors import UserError
from ariel_airflow.localkube import entra_standin, standins
from ariel_airflow.template import KIT_ROOT


def check(script: Path, tokens: Path, user: str, password: str) -> bool:
    """The database's PAM check as pam_exec runs it: the password on stdin, then a NUL."""
    result = subprocess.run(
        ["/bin/bash", str(script)],
        input=password.encode() + b"\0",
        env={"PAM_USER": user, "ENTRA_TOKENS": str(tokens)},  # pam_exec passes no PATH
    )
    return result.returncode == 0


def test_the_database_takes_each_unexpired_token_of_its_principal(tmp_path: Path) -> None:
    script = tmp_path / "entra-token-check"
    script.write_text(standins.TOKEN_CHECK)
    tokens = tmp_path / "tokens"
    live = entra_standin.PostgresPrincipals("", {"client": "airflow"}, tokens, lifetime=360)
    first, second = live.token_for("client"), live.token_for("client")
    # Both valid until they expire, as Azure takes them (not only the last one issued).
    assert check(script, tokens, "airflow", first) and check(script, tokens, "airflow", second)
    # (pam_exec hands over a password's first 511 bytes: random tokens differ there.)
    assert not check(script, tokens, "airflow", ("y" if second[0] == "x" else "x") + second[1:])
    assert not check(script, tokens, "other-role", first)
    expired = entra_standin.PostgresPrincipals("", {"client": "airflow"}, tokens, lifetime=-1)
    assert not check(script, tokens, "airflow", expired.token_for("client"))
    with pytest.raises(entra_standin.Refused, match="no principal"):
        live.token_for("someone-else")


def test_a_database_host_outside_the_cluster_is_refused_naming_the_field() -> None:
    env = load_environment("local", KIT_ROOT / "platform")
    moved = env.model_copy(update={"database": env.database.model_copy(update={"host": "db.example.com"})})
    with pytest.raises(UserError) as raised:
        standins.DatabaseService.of(moved)
    assert "database.host" in raised.value.where and "svc.cluster.local" in raised.value.fix


def test_the_git_standin_serves_a_repository_only_with_its_token(tmp_path: Path) -> None:
    """Real git against the stand-in's HTTPS (git http-backend): a clone with the token, 401 without."""
    import threading

    from standin_network import TestCA

    from ariel_airflow.localkube import git_standin
    from ariel_airflow.localkube.standin_server import tls_server

    source = tmp_path / "source"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(source)], check=True)
    (source / "dag.py").write_text("# a DAG\n")
    subprocess.run([*git, "-C", str(source), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(source), "commit", "-qm", "one"], check=True)
    subprocess.run(
        ["git", "-C", str(source), "bundle", "create", "-q", str(tmp_path / "r.bundle"), "--all"], check=True
    )
    repos = {"/org/p/_git/team": {"bundle": str(tmp_path / "r.bundle"), "user": "team", "token": "pat"}}
    git_standin.prepare(tmp_path / "served", repos)
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("localhost")
    server = tls_server(git_standin.handler(tmp_path / "served", repos), 0, str(cert), str(key))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    env = {
        "GIT_SSL_CAINFO": str(ca.ca_file),
        "GIT_TERMINAL_PROMPT": "0",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    try:
        cloned = subprocess.run(
            [
                "git",
                "clone",
                "-q",
                f"https://team:pat@localhost:{port}/org/p/_git/team",
                str(tmp_path / "clone"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert cloned.returncode == 0, cloned.stderr
        assert (tmp_path / "clone" / "dag.py").read_text() == "# a DAG\n"
        refused = subprocess.run(
            ["git", "ls-remote", f"https://localhost:{port}/org/p/_git/team"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0 and "could not read Username" in refused.stderr, refused.stderr
    finally:
        server.shutdown()


def test_the_key_vault_standin_answers_only_tokens_entra_issued_for_it(tmp_path: Path) -> None:
    """Key Vault's challenge without a token, the secret with a live vault token of a reader, 403 for
    another client: tokens as the Entra stand-in records them."""
    import json
    import ssl
    import threading
    import urllib.error
    import urllib.request

    from standin_network import TestCA

    from ariel_airflow.localkube import keyvault_standin
    from ariel_airflow.localkube.standin_server import tls_server

    tokens, vaults = tmp_path / "tokens", tmp_path / "vaults"
    (vaults / "localhost").mkdir(parents=True)
    (vaults / "localhost" / "airflow-connections-git-demo").write_text('{"conn_type": "git"}')
    service = entra_standin.TokenService(None, None, 360, tokens)  # type: ignore[arg-type]
    service.record("reader-token", "reader", keyvault_standin.VAULT_SCOPE)
    service.record("other-token", "someone", keyvault_standin.VAULT_SCOPE)
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("localhost")
    handler = keyvault_standin.handler(
        keyvault_standin.Vaults(vaults, tokens, {"localhost": ["reader"]}, "t1")
    )
    server = tls_server(handler, 0, str(cert), str(key))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://localhost:{server.server_address[1]}/secrets/airflow-connections-git-demo?api-version=7.4"
    context = ssl.create_default_context(cafile=str(ca.ca_file))

    def get(token: str | None) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, context=context) as answer:
                return answer.status, dict(answer.headers), answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    try:
        status, headers, _ = get(None)
        assert status == 401 and 'resource="https://vault.azure.net"' in headers["WWW-Authenticate"]
        status, _, body = get("reader-token")
        assert status == 200 and json.loads(body)["value"] == '{"conn_type": "git"}'
        assert get("other-token")[0] == 403
        assert get("made-up")[0] == 401
    finally:
        server.shutdown()


def test_a_person_signs_in_with_the_entra_standin_as_fab_does(tmp_path: Path) -> None:
    """OpenID Connect's authorization code flow through authlib (FAB's OAuth library): a code for the
    person login_hint names, redeemed with the app's secret for an id_token that FAB's checks accept
    (RS256 against the served keys, issuer of the tenant, audience of the app); refusals as Entra's."""
    import threading

    import requests
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.jose import JsonWebKey, jwt
    from standin_network import TestCA

    from ariel_airflow.localkube.entra_signin import SignIn
    from ariel_airflow.localkube.standin_server import tls_server

    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("localhost")
    app = {"client_id": "app-1", "client_secret": "s3cret"}
    people = {"ann@ariel.example": {"name": "Ann", "roles": ["Airflow.Viewer"], "groups": ["g-demo"]}}
    service = entra_standin.TokenService(None, None, 360, None)  # type: ignore[arg-type]
    sign_in_app = SignIn(app, people, service.key)
    server = tls_server(entra_standin.handler(service, sign_in_app), 0, str(cert), str(key))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tenant = "20000000-0000-0000-0000-000000000000"
    base = f"https://localhost:{server.server_address[1]}/{tenant}"
    callback = "http://airflow.local/auth/oauth-authorized/azure"

    def session(secret: str) -> OAuth2Session:
        return OAuth2Session("app-1", secret, scope="openid email profile", redirect_uri=callback)

    def sign_in(client: OAuth2Session, login: str) -> requests.Response:
        url, _ = client.create_authorization_url(
            f"{base}/oauth2/v2.0/authorize", nonce="n-1", login_hint=login
        )
        return requests.get(url, allow_redirects=False, verify=str(ca.ca_file), timeout=10)

    try:
        client = session("s3cret")
        answer = sign_in(client, "ann@ariel.example")
        assert answer.status_code == 302 and answer.headers["Location"].startswith(callback + "?code=")
        token = client.fetch_token(
            f"{base}/oauth2/v2.0/token",
            authorization_response=answer.headers["Location"],
            verify=str(ca.ca_file),
        )
        # Where FAB reads Entra's keys from (flask_appbuilder's MICROSOFT_KEY_SET_URL), on the stand-in.
        from urllib.parse import urlsplit

        from flask_appbuilder.const import MICROSOFT_KEY_SET_URL

        keys_url = f"https://localhost:{server.server_address[1]}{urlsplit(MICROSOFT_KEY_SET_URL).path}"
        keys = requests.get(keys_url, verify=str(ca.ca_file), timeout=10).json()
        claims = jwt.decode(
            token["id_token"],
            JsonWebKey.import_key_set(keys),
            claims_options={
                "iss": {"essential": True, "values": [f"https://login.microsoftonline.com/{tenant}/v2.0"]},
                "aud": {"essential": True, "value": "app-1"},
            },
        )
        claims.validate()
        assert (claims["email"], claims["roles"], claims["groups"], claims["nonce"]) == (
            "ann@ariel.example",
            ["Airflow.Viewer"],
            ["g-demo"],
            "n-1",
        )
        # The same code twice, a wrong secret, a stranger: Entra's refusals.
        with pytest.raises(Exception, match="invalid_grant"):
            client.fetch_token(
                f"{base}/oauth2/v2.0/token",
                authorization_response=answer.headers["Location"],
                verify=str(ca.ca_file),
            )
        wrong = session("guess")
        with pytest.raises(Exception, match="invalid_client"):
            wrong.fetch_token(
                f"{base}/oauth2/v2.0/token",
                authorization_response=sign_in(wrong, "ann@ariel.example").headers["Location"],
                verify=str(ca.ca_file),
            )
        stranger = sign_in(client, "eve@ariel.example")
        assert stranger.status_code == 401 and "AADSTS50034" in stranger.text
    finally:
        server.shutdown()
