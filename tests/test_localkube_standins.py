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
