"""What every engine of the local stack shares: its state file, ports, the REST client, health."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ariel_airflow.errors import UserError
from ariel_airflow.localdev import dag_lookup
from ariel_airflow.localdev.api import AirflowClient
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localdev.state import StackState, free_port, port_is_free
from ariel_airflow.localdev.topology import ADMIN_PASSWORD, ADMIN_USER, DB_USER, Health
from ariel_airflow.team import TeamRepo

if TYPE_CHECKING:
    import psycopg

TIMEOUTS = {  # seconds until a service must be healthy
    Health.POSTGRES: 60,
    Health.PGBOUNCER: 30,
    Health.EXITS_ZERO: 300,
    Health.API: 240,
    Health.HEARTBEAT: 240,
}


class StackEngine(ABC):
    """Base of the native and Docker engines; the CLI uses only the public methods."""

    name = ""
    # Seconds every service may take to become healthy (`ariel local up --timeout`); None: TIMEOUTS.
    start_timeout: float | None = None

    def timeout(self, health: Health) -> float:
        return self.start_timeout or TIMEOUTS[health]

    def not_healthy_in_time(self, health: Health) -> str:
        """Why a service failed its deadline, and how to give it longer."""
        return (
            f"not healthy after {self.timeout(health):.0f}s "
            "(a slow or busy machine may need longer: `ariel local up --timeout 600`)"
        )

    def __init__(self, repo: TeamRepo) -> None:
        self.repo = repo
        self.state_dir = repo.state_dir
        self.state_file = self.state_dir / "stack.json"

    # -- the engine's own part --------------------------------------------------------------------
    @abstractmethod
    def up(
        self, *, ui_port: int, parallelism: int, progress: Progress, supervise: bool = False
    ) -> StackState:
        """Start every service that is not running and return once all are healthy (on a stopped stack,
        stopping what started on failure). ``supervise`` (a detached stack): what dies is started
        again with back-off, as the platform's pods are."""

    @abstractmethod
    def watch(self, state: StackState, poll: float = 2.0) -> str:
        """Block while every long-running service lives; return the name of the first one to die."""

    @abstractmethod
    def down(self, *, purge: bool, progress: Progress | None = None) -> list[str]:
        """Stop the stack, keeping the database unless ``purge``; return the services that were running."""

    @abstractmethod
    def running_status(self, state: StackState) -> dict[str, Any]:
        """Each service's health, port and pid, and the DAG import errors (``_report``'s shape)."""

    @abstractmethod
    def database(self) -> str | None:
        """Where the metadata database is kept (a folder or a Docker volume); ``None`` if there is none."""

    @abstractmethod
    def running_services(self) -> list[str]:
        """Names of the services running now."""

    @abstractmethod
    def logs(self, service: str | None, lines: int, follow: bool, write: Callable[[str], None]) -> None:
        """Write the last ``lines`` of one service's log (all when ``None``), then new lines if ``follow``."""

    @abstractmethod
    def host_airflow_home(self) -> Path:
        """The stack's AIRFLOW_HOME as the host sees it (task usage records are kept there)."""

    # -- shared -----------------------------------------------------------------------------------
    def state(self) -> StackState | None:
        return StackState.load(self.state_file)

    def readable_state(self) -> StackState | None:
        """The state, or None when there is none or it is unreadable (enough for `down`)."""
        try:
            return self.state()
        except UserError:
            return None

    def status(self) -> dict[str, Any]:
        """``running_status`` while anything runs; else since when it is stopped and what is kept."""
        state = self.state()
        if state is not None and self.running_services():
            return {"running": True, **self.running_status(state)}
        database = self.database()
        return {
            "running": False,
            "engine": state.engine if state else None,
            "team": self.repo.team.name,
            "started_at": _iso(state.started_at) if state else None,
            "stopped_at": _iso(state.stopped_at) if state else None,
            # False: the services died without `down` (a crash, a reboot); None: never started.
            "stopped_cleanly": bool(state.stopped_at) if state and state.started_at else None,
            "database_kept": database is not None,
            "database": database,
        }

    def _note_stopped(self, stopped: list[str]) -> None:
        """Record when `down` stopped a running stack (for `status`)."""
        state = self.readable_state()
        if stopped and state is not None:
            state.model_copy(update={"stopped_at": datetime.now(UTC)}).save(self.state_file)

    def client(self, state: StackState | None = None) -> AirflowClient:
        state = state or self._require_state()
        return AirflowClient(f"http://127.0.0.1:{state.ui_port}", ADMIN_USER, ADMIN_PASSWORD)

    def find_dag(self, client: AirflowClient, dag_id: str, timeout: float) -> dict[str, Any]:
        """The DAG once the dag-processor has parsed it; an error naming close matches once all is parsed."""
        return dag_lookup.find_dag(client, self.repo.dags, self.repo.team.bundle_name, dag_id, timeout)

    def health_report(self, state: StackState) -> dict[str, Any] | None:
        try:
            with self.client(state) as client:
                return client.health()
        except (httpx.HTTPError, ValueError):
            return None

    def import_errors(self, state: StackState, report: dict[str, Any] | None) -> list[dict] | None:
        if report is None:
            return None
        with self.client(state) as client:
            return [{"file": e["filename"], "error": e["stack_trace"]} for e in client.import_errors()]

    def _prepare_state(self, ui_port: int, parallelism: int) -> StackState:
        """Ports and keys for this start (kept from the last start where possible), saved."""
        previous = self.state() or StackState()
        if not port_is_free(ui_port):
            raise UserError(
                f"port {ui_port} is already in use on 127.0.0.1",
                fix=f"stop what uses it or pick another port: `ariel local up --port {ui_port + 1}`",
            )
        postgres_port = free_port(previous.postgres_port, avoid={ui_port})
        state = previous.model_copy(
            update={
                "engine": self.name,
                "ui_port": ui_port,
                "parallelism": parallelism,
                "postgres_port": postgres_port,
                "pgbouncer_port": free_port(previous.pgbouncer_port, avoid={ui_port, postgres_port}),
                "started_at": datetime.now(UTC),
                "stopped_at": None,
            }
        ).with_new_keys()
        self._make_state_dir()
        state.save(self.state_file)
        return state

    def _make_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# created by ariel: local stack state, never committed\n*\n")

    def _require_state(self) -> StackState:
        state = self.state()
        if state is None:
            raise UserError(
                "no local stack has been started for this repository",
                where=str(self.repo.root),
                fix="start one with `ariel local up`",
            )
        return state

    def _report(self, rows: list[dict[str, Any]], state: StackState, report: dict | None) -> dict[str, Any]:
        return {
            "engine": self.name,
            "team": self.repo.team.name,
            "url": f"http://127.0.0.1:{state.ui_port}",
            "services": rows,
            "import_errors": self.import_errors(state, report),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def component_status(report: dict[str, Any] | None, key: str | None) -> str | None:
    """A component's status in the api-server's health report (``None`` when unknown)."""
    if not report or not key:
        return None
    return (report.get(key) or {}).get("status")


def connect_db(port: int, dbname: str, state: StackState, **kwargs: Any) -> psycopg.Connection:
    """A connection to the stack's Postgres (or, on its port, PgBouncer) as the stack's user."""
    import psycopg  # here, not at the top: `up` starts the launcher before it needs the database

    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname=dbname,
        user=DB_USER,
        password=state.db_password,
        connect_timeout=3,
        prepare_threshold=None,  # PgBouncer in transaction mode
        **kwargs,
    )


def sql_ok(port: int, dbname: str, state: StackState) -> bool:
    import psycopg

    try:
        with connect_db(port, dbname, state) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False
