"""Entra tokens as the metadata database's password: real Postgres whose role password rotates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from ariel_airflow import entra
from ariel_airflow.localdev.scratch import HOST, SUPERUSER, ScratchPostgres, scratch_postgres

from conftest import KIT_ROOT

pytestmark = pytest.mark.postgres

ROLE = "airflow_mi"  # the managed identity's database role
TESTS = Path(__file__).parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")
# Each token is refreshed about 2 s after it is issued, with the production refresh margin.
LIFETIME = entra.REFRESH_MARGIN_SECONDS + 2


@pytest.fixture(scope="module")
def postgres() -> Iterator[ScratchPostgres]:
    with scratch_postgres() as pg:
        with pg.connect(autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD NULL")
            admin.execute(f"CREATE DATABASE airflow OWNER {ROLE}")
        yield pg


def airflow_env(
    pg: ScratchPostgres, airflow_home: Path, rotations: Path, *, entra_on: bool
) -> dict[str, str]:
    """An Airflow process's environment: the platform's local settings, a URL without a password."""
    (airflow_home / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(KIT_ROOT / "platform/config/airflow_local_settings.py", airflow_home / "config")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{ROLE}@{HOST}:{pg.port}/airflow",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED": "False",  # every session logs in anew
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        entra.CREDENTIAL_SETTING: "rotating_credential:from_env",
        "ROTATING_ADMIN_DSN": f"host={HOST} port={pg.port} dbname=postgres user={SUPERUSER} "
        f"password={pg.password}",
        "ROTATING_ROLE": ROLE,
        "ROTATING_LIFETIME": str(LIFETIME),
        "ROTATING_LOG": str(rotations),
    }
    env.pop(entra.ENABLE_SETTING, None)
    if entra_on:
        env[entra.ENABLE_SETTING] = "true"
    return env


HAMMER = """
import asyncio, json, sys, threading, time
from sqlalchemy import text
from airflow import settings  # initialize(): imports airflow_local_settings, then configure_orm()
from airflow.utils.session import create_session
import ariel_airflow.entra as entra

assert settings.create_metadata_engine is entra.create_metadata_engine
assert settings.create_async_metadata_engine is entra.create_async_metadata_engine
end = time.monotonic() + float(sys.argv[1])
counts = {"sync_ok": 0, "async_ok": 0, "failed": 0, "errors": []}
lock = threading.Lock()

def record(key, exc=None):
    with lock:
        counts[key] += 1
        if exc is not None and len(counts["errors"]) < 5:
            import traceback
            counts["errors"].append("".join(traceback.format_exception(exc))[-1500:])

def sync_worker():
    while time.monotonic() < end:
        try:
            with create_session() as session:
                session.execute(text("SELECT 1"))
            record("sync_ok")
        except Exception as exc:
            record("failed", exc)

async def async_worker():
    while time.monotonic() < end:
        try:
            async with settings.AsyncSession() as session:
                await session.execute(text("SELECT 1"))
            record("async_ok")
        except Exception as exc:
            record("failed", exc)

# One asyncio task: a token request blocks its event loop, and the stand-in's grace for logins
# under way with the previous password (see rotating_credential.py) cannot pass on a blocked loop.
threads = [threading.Thread(target=sync_worker) for _ in range(4)]
for t in threads:
    t.start()
asyncio.run(async_worker())
for t in threads:
    t.join()
print(json.dumps(counts))
"""


def test_airflow_keeps_connecting_while_the_role_password_rotates(
    postgres: ScratchPostgres, tmp_path: Path
) -> None:
    """An Airflow process (settings.initialize with the platform's local settings) opens a new
    connection per session from 4 threads and an asyncio task while the password changes every ~2.5 s."""
    rotations = tmp_path / "rotations"
    env = airflow_env(postgres, tmp_path / "airflow-home", rotations, entra_on=True)
    result = subprocess.run(
        [sys.executable, "-c", HAMMER, "14"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["failed"] == 0, counts
    assert counts["sync_ok"] > 50 and counts["async_ok"] > 20, counts
    assert len(rotations.read_text().splitlines()) >= 4, "the password should have rotated several times"


def test_airflow_db_check_logs_in_with_the_token_only_when_enabled(
    postgres: ScratchPostgres, tmp_path: Path
) -> None:
    rotations = tmp_path / "rotations"
    on = airflow_env(postgres, tmp_path / "home-on", rotations, entra_on=True)
    result = subprocess.run([AIRFLOW, "db", "check"], env=on, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert rotations.exists()  # the token was asked for, and set as the role's password

    off = airflow_env(postgres, tmp_path / "home-off", tmp_path / "unused", entra_on=False)
    result = subprocess.run([AIRFLOW, "db", "check"], env=off, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0  # no password in the URL, and no token without the setting
    assert "password" in (result.stdout + result.stderr).lower()


class CountingCredential:
    def __init__(self, lifetime: float) -> None:
        self.lifetime, self.calls, self.now = lifetime, 0, 1_000_000.0

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.calls += 1
        return AccessToken(f"token-{self.calls}", int(self.now + self.lifetime))


def test_token_is_reused_until_the_refresh_margin_then_replaced() -> None:
    credential = CountingCredential(lifetime=3600)
    cache = entra.TokenCache(credential, clock=lambda: credential.now)
    assert cache.password() == "token-1"
    credential.now += 3600 - entra.REFRESH_MARGIN_SECONDS - 1
    assert cache.password() == "token-1"
    credential.now += 1  # now within the margin of expiry
    assert cache.password() == "token-2"
    assert credential.calls == 2


def test_local_settings_export_no_engine_override_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(entra.ENABLE_SETTING, raising=False)
    assert entra.engine_overrides() == {}
    monkeypatch.setenv(entra.ENABLE_SETTING, "true")
    assert set(entra.engine_overrides()) == {"create_metadata_engine", "create_async_metadata_engine"}
