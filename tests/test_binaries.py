import os
from pathlib import Path

import pytest

from ariel_airflow.errors import UserError
from ariel_airflow.localdev import binaries


@pytest.mark.postgres
def test_postgres_is_found_on_path_or_in_the_system_install() -> None:
    bin_dir = binaries.postgres_bin_dir()
    assert (bin_dir / "postgres").exists() and (bin_dir / "initdb").exists()


def test_missing_postgres_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "SYSTEM_POSTGRES_GLOB", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(UserError) as err:
        binaries.postgres_bin_dir()
    assert "apt-get install postgresql" in err.value.fix
    assert "brew install" in err.value.fix
    assert "--engine docker" in err.value.fix


def test_missing_pgbouncer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "PGBOUNCER_FALLBACKS", ())
    with pytest.raises(UserError) as err:
        binaries.pgbouncer_path()
    assert "apt-get install pgbouncer" in err.value.fix and "brew install pgbouncer" in err.value.fix


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs an unprivileged user for Postgres")
def test_root_runs_postgres_as_an_unprivileged_user_that_must_reach_the_data(workdir: Path) -> None:
    user = binaries.unprivileged_user()
    assert user in binaries.UNPRIVILEGED_USERS
    binaries.check_reachable(workdir / "team" / ".ariel" / "pgdata", user)
    private = workdir / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(UserError) as err:
        binaries.check_reachable(private / "team" / ".ariel" / "pgdata", user)
    assert f"chmod o+x {private}" in err.value.fix
