"""Find the programs the native engine runs, or say how to install them."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from pathlib import Path

from ariel_airflow.errors import UserError

SYSTEM_POSTGRES_GLOB = "/usr/lib/postgresql/*/bin"
PGBOUNCER_FALLBACKS = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer")  # sbin is not on every PATH
UNPRIVILEGED_USERS = ("postgres", "nobody")


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in path.parent.name.split("."))
    except ValueError:
        return (0,)


def postgres_bin_dir() -> Path:
    """The directory holding ``postgres`` and ``initdb``: PATH first, then the newest system install."""
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    installs = sorted(
        (p for p in Path("/").glob(SYSTEM_POSTGRES_GLOB.lstrip("/")) if (p / "postgres").exists()),
        key=_version_key,
        reverse=True,
    )
    if installs:
        return installs[0]
    raise UserError(
        "PostgreSQL server binaries (postgres, initdb) not found on PATH or in /usr/lib/postgresql/*/bin",
        fix="install them (Debian/Ubuntu: `sudo apt-get install postgresql`; macOS: "
        "`brew install postgresql@16`) or run the stack on Docker: `--engine docker`",
    )


def pgbouncer_path() -> Path:
    found = shutil.which("pgbouncer") or next((p for p in PGBOUNCER_FALLBACKS if os.access(p, os.X_OK)), None)
    if found:
        return Path(found)
    raise UserError(
        "PgBouncer not found on PATH",
        fix="install it (Debian/Ubuntu: `sudo apt-get install pgbouncer`; macOS: `brew install pgbouncer`)"
        " or run the stack on Docker: `--engine docker`",
    )


def airflow_path() -> Path:
    """The ``airflow`` of the environment the kit runs in (the kit pins it; see constraints.txt)."""
    candidate = Path(sys.executable).parent / "airflow"
    if candidate.exists():
        return candidate
    raise UserError(
        f"Airflow is not installed in this environment ({sys.prefix})",
        fix="run `nox -s local`, which installs the pinned Airflow, or "
        "`uv pip install -c constraints.txt ariel-airflow`",
    )


def unprivileged_user() -> str | None:
    """The user Postgres and PgBouncer run as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise UserError(
        "running as root, and neither a 'postgres' nor a 'nobody' user exists to run Postgres",
        fix="run as a normal user, create a 'postgres' user (`useradd --system postgres`) "
        "or use --engine docker",
    )


def check_reachable(path: Path, user: str) -> None:
    """Postgres as ``user`` must be able to walk to ``path``: every parent needs the x bit for it."""
    entry = pwd.getpwnam(user)
    for parent in reversed(path.parents):
        if not parent.exists():
            break  # the kit creates the rest, enterable by all
        stat = parent.stat()
        if stat.st_uid == entry.pw_uid:
            continue
        if not stat.st_mode & 0o001 and not (stat.st_gid == entry.pw_gid and stat.st_mode & 0o010):
            raise UserError(
                f"running as root, Postgres runs as user {user!r}, which cannot enter {parent}",
                where=str(path),
                fix=f"`chmod o+x {parent}`, keep the team repository elsewhere, run as a normal user, "
                "or use --engine docker",
            )
