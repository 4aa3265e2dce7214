"""``localdev/compose.yaml``, rendered from the stack model that the native engine runs.

The compose file is committed (and shipped in the wheel) so that people can read it and run it by
hand; a test and ``nox -s compose`` keep it equal to what ``render()`` makes of ``topology.services``.
Everything that differs between stacks (ports, keys, paths, images) is a ``${ARIEL_...}`` variable
that the Docker engine sets when it calls Compose (``variables()``).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import yaml

from ariel_airflow.azure.environment import ENVIRONMENT_VARIABLES as AZURE_VARIABLES
from ariel_airflow.azure.environment import azure_cli_config_dir
from ariel_airflow.localdev.assets import assets_dir, kit_package_dir
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.topology import DB_NAME, DB_USER, Health, Layout, Service, services
from ariel_airflow.team import Team

TEAM_MOUNT = PurePosixPath("/opt/ariel/team")  # the team repository, read-only
KIT_MOUNT = PurePosixPath("/opt/ariel/kit/ariel_airflow")  # the kit's package, read-only (PYTHONPATH)
# The developer's Azure config folder (~/.azure, or AZURE_CONFIG_DIR), read-only; AZURE_CONFIG_DIR
# points there in the containers, as it would for the az CLI.
AZURE_CONFIG_MOUNT = PurePosixPath("/opt/ariel/azure")
# The image's system CA bundle, which holds ARIEL_EXTRA_CA_CERTS (localdev/airflow.Dockerfile runs
# update-ca-certificates); requests (so azure-identity and the Azure SDKs) would use certifi's instead.
CA_BUNDLE = PurePosixPath("/etc/ssl/certs/ca-certificates.crt")

CONTAINER_LAYOUT = Layout(
    dags=TEAM_MOUNT / "dags",
    connections_file=TEAM_MOUNT / ".local" / "connections.yaml",
    variables_file=TEAM_MOUNT / ".local" / "variables.yaml",
    airflow_home=PurePosixPath("/opt/airflow"),
    pgdata=PurePosixPath("/var/lib/postgresql/data"),  # PGDATA of localdev/db.Dockerfile
    pgbouncer_dir=PurePosixPath("/etc/ariel/pgbouncer"),
    postgres_host="postgres",
    pgbouncer_host="pgbouncer",
    api_host="api-server",
    bind_host="0.0.0.0",  # noqa: S104 - inside the container; the host publishes on 127.0.0.1 only
)

# Container directories whose config files (Service.files) the engine writes on the host, by the
# name of their folder in the stack's state directory.
WRITTEN_DIRS = {CONTAINER_LAYOUT.pgbouncer_dir: "pgbouncer", CONTAINER_LAYOUT.airflow_home: "airflow"}

STATE_VARIABLES = {  # StackState field -> compose variable
    "ui_port": "ARIEL_UI_PORT",
    "postgres_port": "ARIEL_POSTGRES_PORT",
    "pgbouncer_port": "ARIEL_PGBOUNCER_PORT",
    "parallelism": "ARIEL_PARALLELISM",
    "db_password": "ARIEL_DB_PASSWORD",
    "jwt_secret": "ARIEL_JWT_SECRET",
    "api_secret_key": "ARIEL_API_SECRET_KEY",
    "fernet_key": "ARIEL_FERNET_KEY",
}
HEALTHCHECK_SCRIPT = KIT_MOUNT / "localdev" / "healthcheck.py"
HEADER = """\
# The local stack on Docker: generated from src/ariel_airflow/localdev/topology.py, the model the
# native engine runs. Do not edit: change the model and run `nox -s compose`.
# `ariel local up --engine docker` builds the images and sets the ARIEL_* variables.
"""


def compose_file() -> Path:
    return assets_dir() / "compose.yaml"


def _var(name: str) -> str:
    return "${" + name + "}"


def container_services(bundle: str, state: StackState, pool: str) -> list[Service]:
    """The model as the containers run it: all start together, each component first waits for the
    migrations in its own process (the machine's cores import Airflow in every container at once)."""
    return services(bundle, state, CONTAINER_LAYOUT, pool=pool, wait_for_migrations=True)


def render() -> dict:
    """The compose document for the model, with a variable wherever stacks differ."""
    state = StackState.model_construct(**{field: _var(var) for field, var in STATE_VARIABLES.items()})
    plan = container_services(_var("ARIEL_TEAM"), state, pool=_var("ARIEL_POOL"))
    by_name = {svc.name: svc for svc in plan}
    document = {
        "services": {svc.name: _service(svc, by_name) for svc in plan},
        "volumes": {"pgdata": {}},
    }
    return document


def render_text() -> str:
    return HEADER + yaml.safe_dump(render(), sort_keys=False, width=120)


def variables(team: str, state: StackState, repo_root: Path, state_dir: Path, images: dict[str, str]) -> dict:
    """Values of every ``${ARIEL_...}`` variable of the compose file, for one stack."""
    return {
        "ARIEL_TEAM": team,
        "ARIEL_POOL": Team(team).pool,
        **{var: str(getattr(state, field)) for field, var in STATE_VARIABLES.items()},
        "ARIEL_TEAM_REPO": str(repo_root),
        "ARIEL_STACK_DIR": str(state_dir),
        "ARIEL_KIT_DIR": str(kit_package_dir()),
        # Airflow runs as the host user, so what it writes into the repository stays the user's.
        "ARIEL_USER": f"{os.getuid()}:{os.getgid()}",
        "ARIEL_DB_IMAGE": images["db"],
        "ARIEL_AIRFLOW_IMAGE": images["airflow"],
        "ARIEL_AZURE_CONFIG_DIR": str(azure_config_dir(state_dir)),
    }


def azure_config_dir(state_dir: Path) -> Path:
    """The host's Azure config folder, or an empty one in the stack's state when there is none.

    Docker would create a missing folder to mount as root, and a later `az login` could not write it.
    """
    folder = azure_cli_config_dir()
    if folder.is_dir():
        return folder
    empty = state_dir / "no-azure-config"
    empty.mkdir(parents=True, exist_ok=True)
    return empty


def _service(svc: Service, by_name: dict[str, Service]) -> dict:
    is_db = svc.needs_unprivileged_user  # Postgres and PgBouncer: the db image, its postgres user
    spec: dict = {"image": _var("ARIEL_DB_IMAGE" if is_db else "ARIEL_AIRFLOW_IMAGE")}
    if not is_db:
        spec["user"] = _var("ARIEL_USER")
    spec["command"] = list(svc.argv)
    spec["environment"] = {**svc.env, **_extra_env(svc)}
    spec["volumes"] = _volumes(svc)
    if svc.port is not None:
        spec["ports"] = [f"127.0.0.1:{svc.port}:{svc.port}"]
    if svc.health is not Health.EXITS_ZERO:
        spec["healthcheck"] = _healthcheck(svc, by_name)
        # Started again when it dies, as its pod would be (Docker backs off, doubling from 0.1 s);
        # a one-shot job is not. `docker kill` counts as stopping it by hand: it stays stopped.
        spec["restart"] = "on-failure"
    if svc.requires or svc.after:
        spec["depends_on"] = {
            name: {
                "condition": "service_completed_successfully"
                if by_name[name].health is Health.EXITS_ZERO
                else "service_healthy"
            }
            for name in svc.requires
        } | {name: {"condition": "service_started"} for name in svc.after}
    if svc.stop_signal.name != "SIGTERM":
        spec["stop_signal"] = svc.stop_signal.name
    if svc.stop_grace < Service.stop_grace:  # Docker's own default is 10 s
        spec["stop_grace_period"] = f"{svc.stop_grace:.0f}s"
    return spec


def _extra_env(svc: Service) -> dict[str, str | None]:
    if not svc.needs_unprivileged_user:
        # Azure credentials for task code (ariel_airflow.azure): a variable without a value is passed
        # from the environment Compose runs in, when set there.
        return {
            **dict.fromkeys(AZURE_VARIABLES),
            "AZURE_CONFIG_DIR": str(AZURE_CONFIG_MOUNT),
            "REQUESTS_CA_BUNDLE": str(CA_BUNDLE),
            "SSL_CERT_FILE": str(CA_BUNDLE),
        }
    password = _var("ARIEL_DB_PASSWORD")
    if svc.name == "postgres":  # the db image's first start creates the cluster with these
        return {
            "POSTGRES_USER": DB_USER,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": DB_NAME,
            "PGPASSWORD": password,
        }
    return {"PGPASSWORD": password}  # for the health check's psql


def _volumes(svc: Service) -> list[str]:
    if svc.name == "postgres":
        return [f"pgdata:{CONTAINER_LAYOUT.pgdata}"]
    if svc.name == "pgbouncer":
        return [f"{_var('ARIEL_STACK_DIR')}/pgbouncer:{CONTAINER_LAYOUT.pgbouncer_dir}:ro"]
    return [
        f"{_var('ARIEL_TEAM_REPO')}:{TEAM_MOUNT}:ro",
        f"{_var('ARIEL_KIT_DIR')}:{KIT_MOUNT}:ro",
        f"{_var('ARIEL_STACK_DIR')}/airflow:{CONTAINER_LAYOUT.airflow_home}",  # config, shared task logs
        f"{_var('ARIEL_AZURE_CONFIG_DIR')}:{AZURE_CONFIG_MOUNT}:ro",
    ]


def _healthcheck(svc: Service, by_name: dict[str, Service]) -> dict:
    if svc.health in (Health.POSTGRES, Health.PGBOUNCER):
        dbname = "postgres" if svc.health is Health.POSTGRES else DB_NAME
        test = [
            "CMD",
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(svc.port),
            "-U",
            DB_USER,
            "-d",
            dbname,
            "-tAc",
            "SELECT 1",
        ]
    elif svc.health is Health.API:
        test = ["CMD", "python3", str(HEALTHCHECK_SCRIPT), f"http://127.0.0.1:{svc.port}"]
    else:
        api = by_name["api-server"]
        test = ["CMD", "python3", str(HEALTHCHECK_SCRIPT), f"http://api-server:{api.port}", svc.heartbeat_key]
    return {"test": test, "interval": "2s", "timeout": "10s", "retries": 5, "start_period": "240s"}


if __name__ == "__main__":  # `nox -s compose`: rewrite the committed file from the model
    compose_file().write_text(render_text())
    print(f"wrote {compose_file()}")
