"""The local stack's topology, written once: services, order, commands, environment, health.

The native engine runs these services as processes; the Docker engine renders the same model into
``localdev/compose.yaml`` (``localdev/compose.py``). Paths and host names come from a ``Layout`` so
that one model serves both: on the host everything is ``127.0.0.1`` and real paths, in containers
service names and mounts. Ports are the same on the host and in the containers.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath

from ariel_airflow.localdev import airflow_commands
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.usage import PLUGIN_FILE, plugin_source
from ariel_airflow.policies import LOCAL_SETTINGS_FILE, local_settings_source

DB_NAME = "airflow"
DB_USER = "airflow"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"
LOCAL_BUNDLE_CLASS = "airflow.dag_processing.bundles.local.LocalDagBundle"
SECRETS_BACKEND_CLASS = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
# Airflow's LocalExecutor, forking its workers when tasks need them and keeping shared pages shared.
EXECUTOR_CLASS = "ariel_airflow.localdev.executor.LeanLocalExecutor"
# Seconds between the dag-processor's looks for new DAG files (Airflow's default, 300, is for clusters).
DAG_REFRESH_INTERVAL = 10
# On Docker the components start with the migration job, not after it: in their own process they
# first wait for the migrations, as the chart's pods do (their wait-for-airflow-migrations init
# container), so importing Airflow, which takes seconds of CPU, overlaps the migrations. The native
# engine's launcher imports Airflow while the job runs and forks the components after it: the check
# would cost each of them a second of CPU and 38 MiB (Alembic and every migration script).
WAIT_FOR_MIGRATIONS = ["db", "check-migrations", "--migration-wait-timeout", "300"]


class Health(StrEnum):
    POSTGRES = "postgres"  # accepts a login on its port
    PGBOUNCER = "pgbouncer"  # forwards a query to Postgres
    EXITS_ZERO = "exits-zero"  # a one-shot job that must succeed
    API = "api"  # /api/v2/monitor/health answers
    HEARTBEAT = "heartbeat"  # the api-server reports the component's heartbeat as healthy


@dataclass(frozen=True)
class Layout:
    """Where things are, as the services see them."""

    dags: PurePath
    connections_file: PurePath
    variables_file: PurePath
    airflow_home: PurePath
    pgdata: PurePath
    pgbouncer_dir: PurePath
    postgres_host: str = "127.0.0.1"
    pgbouncer_host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    bind_host: str = "127.0.0.1"


@dataclass(frozen=True)
class Service:
    name: str
    # argv[0] is a program the engine resolves (postgres, pgbouncer), or Airflow's commands run by
    # ``python -m ariel_airflow.localdev.airflow_commands`` (localdev/airflow_commands.py)
    argv: list[str]
    health: Health
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    files: dict[str, str] = field(default_factory=dict)  # config files, by path, to write first
    stop_signal: int = signal.SIGTERM
    stop_grace: float = 30.0  # seconds from the stop signal to SIGKILL
    needs_unprivileged_user: bool = False  # Postgres and PgBouncer refuse to run as root
    heartbeat_key: str | None = None  # key of /api/v2/monitor/health for Health.HEARTBEAT
    requires: tuple[str, ...] = ()  # services that must be healthy first
    after: tuple[str, ...] = ()  # services that must have started first (healthy or not)
    step: tuple[str, str] | None = None  # a one-shot job's progress: what it does, what it did


def database_url(host: str, port: int, state: StackState, app: str) -> str:
    """SQLAlchemy URL; ``application_name`` lets PgBouncer's SHOW CLIENTS name each component."""
    return (
        f"postgresql+psycopg2://{DB_USER}:{state.db_password}@{host}:{port}/{DB_NAME}"
        f"?application_name=ariel-{app}"
    )


def airflow_env(
    bundle: str, state: StackState, layout: Layout, app: str, *, direct: bool = False
) -> dict[str, str]:
    """Environment shared by every Airflow component (``direct`` bypasses PgBouncer, for migrations)."""
    secrets_kwargs = json.dumps(
        {
            "connections_file_path": str(layout.connections_file),
            "variables_file_path": str(layout.variables_file),
        }
    )
    bundles = json.dumps(
        [{"name": bundle, "classpath": LOCAL_BUNDLE_CLASS, "kwargs": {"path": str(layout.dags)}}]
    )
    db_host, db_port = (
        (layout.postgres_host, state.postgres_port)
        if direct
        else (layout.pgbouncer_host, state.pgbouncer_port)
    )
    api_url = f"http://{layout.api_host}:{state.ui_port}"
    browser_url = f"http://127.0.0.1:{state.ui_port}"  # what links and redirects in the UI point to
    return {
        "AIRFLOW_HOME": str(layout.airflow_home),
        "AIRFLOW__CORE__EXECUTOR": EXECUTOR_CLASS,
        "AIRFLOW__CORE__PARALLELISM": str(state.parallelism),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": state.fernet_key,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",  # user:role
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(layout.airflow_home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(db_host, db_port, state, app),
        # Every component signs and checks task tokens with the same key, or tasks stay queued.
        "AIRFLOW__API_AUTH__JWT_SECRET": state.jwt_secret,
        "AIRFLOW__API__SECRET_KEY": state.api_secret_key,
        "AIRFLOW__API__BASE_URL": browser_url,
        "AIRFLOW__API__HOST": layout.bind_host,
        "AIRFLOW__API__PORT": str(state.ui_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundles,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(DAG_REFRESH_INTERVAL),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # Server components and task processes (workers) each read their own setting.
        "AIRFLOW__SECRETS__BACKEND": SECRETS_BACKEND_CLASS,
        "AIRFLOW__SECRETS__BACKEND_KWARGS": secrets_kwargs,
        "AIRFLOW__WORKERS__SECRETS_BACKEND": SECRETS_BACKEND_CLASS,
        "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS": secrets_kwargs,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(layout.airflow_home / "logs"),
    }


def pgbouncer_ini(state: StackState, layout: Layout) -> str:
    return f"""\
[databases]
{DB_NAME} = host={layout.postgres_host} port={state.postgres_port} dbname={DB_NAME}

[pgbouncer]
listen_addr = {layout.bind_host}
listen_port = {state.pgbouncer_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {layout.pgbouncer_dir / "userlist.txt"}
admin_users = {DB_USER}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
# Close a server connection idle this long (PgBouncer's default: 600 s): each is a Postgres backend
# of about 6 MB, and an idle local stack needs one or two, not one per burst of the last run.
server_idle_timeout = 10
ignore_startup_parameters = extra_float_digits
"""


def services(
    bundle: str, state: StackState, layout: Layout, *, pool: str, wait_for_migrations: bool
) -> list[Service]:
    """All services in start order (stop in reverse). ``pool``: the team's Airflow pool (``Team.pool``),
    where the platform's task_policy puts every task; locally it has the stack's parallelism.
    ``wait_for_migrations``: each component first waits for the migration job's work (else the
    engine starts the components once the job succeeded)."""

    def airflow(name: str, argv: list[str], health: Health, key: str | None = None, **kw) -> Service:
        commands = [WAIT_FOR_MIGRATIONS, argv] if wait_for_migrations else [argv]
        return Service(
            name,
            airflow_commands.argv(*commands),
            health,
            env=airflow_env(bundle, state, layout, name),
            heartbeat_key=key,
            # PgBouncer connects to Postgres when a client comes, so once Postgres is healthy its
            # start suffices: a component reaches it seconds later, after importing Airflow.
            requires=("postgres",),
            after=("pgbouncer",),
            **kw,
        )

    return [
        Service(
            "postgres",
            [
                "postgres",
                "-D",
                str(layout.pgdata),
                "-p",
                str(state.postgres_port),
                "-c",
                f"listen_addresses={layout.bind_host}",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=32MB",
            ],
            Health.POSTGRES,
            port=state.postgres_port,
            stop_signal=signal.SIGINT,  # fast shutdown; SIGTERM would wait for every client
            needs_unprivileged_user=True,
        ),
        Service(
            "pgbouncer",
            ["pgbouncer", str(layout.pgbouncer_dir / "pgbouncer.ini")],
            Health.PGBOUNCER,
            port=state.pgbouncer_port,
            after=("postgres",),  # it connects when a client comes: it may start with Postgres
            files={
                str(layout.pgbouncer_dir / "pgbouncer.ini"): pgbouncer_ini(state, layout),
                str(layout.pgbouncer_dir / "userlist.txt"): f'"{DB_USER}" "{state.db_password}"\n',
            },
            needs_unprivileged_user=True,
        ),
        # One job, one process (localdev/airflow_commands.py): migrate, then the team's pool, as on
        # the platform (there sized from the team's quota; here no quota is known, so the executor's
        # slots). The same task_policy puts the team's tasks into it.
        Service(
            "migrate",
            airflow_commands.argv(
                ["db", "migrate"],
                ["pools", "set", pool, str(state.parallelism), "The team pool: the local stack slots"],
            ),
            Health.EXITS_ZERO,
            env=airflow_env(bundle, state, layout, "migrate", direct=True),
            requires=("postgres",),
            step=(
                f"migrating the metadata database (directly, not through PgBouncer), then the pool {pool}",
                f"metadata database migrated, pool {pool} has {state.parallelism} slots",
            ),
        ),
        airflow(
            "api-server",
            ["api-server"],
            Health.API,
            port=state.ui_port,
            files={
                str(layout.airflow_home / "passwords.json"): json.dumps({ADMIN_USER: ADMIN_PASSWORD}),
                # The platform's cluster policies: the local dag-processor refuses what CI refuses.
                str(layout.airflow_home / "config" / LOCAL_SETTINGS_FILE): local_settings_source(),
                # What each task try uses, recorded in the task process (`ariel local usage`).
                str(layout.airflow_home / "plugins" / PLUGIN_FILE): plugin_source(),
            },
        ),
        airflow("scheduler", ["scheduler", "--skip-serve-logs"], Health.HEARTBEAT, "scheduler"),
        airflow("dag-processor", ["dag-processor"], Health.HEARTBEAT, "dag_processor"),
        # Airflow's triggerer gives its trigger runner 10 s to notice the stop, which it takes even
        # when idle; a trigger killed sooner is picked up again at the next start.
        airflow(
            "triggerer", ["triggerer", "--skip-serve-logs"], Health.HEARTBEAT, "triggerer", stop_grace=5.0
        ),
    ]
