"""A small client for the local Airflow's REST API (v2), authenticated with a JWT from /auth/token."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from ariel_airflow.errors import UserError

FINISHED = {"success", "failed"}
PAGE = 100  # Airflow's [api] maximum_page_limit


@dataclass
class RunResult:
    dag_id: str
    run_id: str
    state: str
    failed_tasks: list[dict[str, Any]]


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health`` (needs no login)."""
        response = self._http.get("/api/v2/monitor/health")
        response.raise_for_status()
        return response.json()

    def _login(self) -> str:
        response = self._http.post(
            "/auth/token", json={"username": self._username, "password": self._password}
        )
        if response.status_code >= 400:
            raise UserError(
                f"login to {self.base_url} as {self._username!r} failed ({response.status_code})",
                fix="check that this is the stack of this team repository (`ariel local status`)",
            )
        return response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            if self._token is None:
                self._token = self._login()
            headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise UserError(
                f"the local Airflow at {self.base_url} does not answer ({exc.__class__.__name__})",
                fix="see `ariel local status`; start the stack with `ariel local up`",
            ) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def _all(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every entry of a paged collection (the API returns at most 100 per page)."""
        entries: list[dict[str, Any]] = []
        while True:
            page = self._json("GET", path, params={"limit": PAGE, "offset": len(entries)})
            entries += page[key]
            if not page[key] or len(entries) >= page["total_entries"]:
                return entries

    # -- what the CLI needs ---------------------------------------------------------------------
    def import_errors(self) -> list[dict[str, Any]]:
        return self._all("/api/v2/importErrors", "import_errors")

    def dags(self) -> list[dict[str, Any]]:
        """Every DAG whose file is still there (Airflow leaves out stale DAGs)."""
        return self._all("/api/v2/dags", "dags")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout: float) -> dict[str, Any]:
        """The DAG once it shows up, for callers that know it will (``dag_lookup.find_dag`` for users)."""
        deadline = time.monotonic() + timeout
        while (dag := self.dag(dag_id)) is None:
            if time.monotonic() > deadline:
                errors = [e for e in self.import_errors() if dag_id in (e.get("stack_trace") or "")]
                hint = f"; import error in {errors[0]['filename']}" if errors else ""
                raise UserError(
                    f"DAG {dag_id!r} is not known to the local Airflow{hint}",
                    fix="check the dag_id and `ariel local status` for import errors",
                )
            time.sleep(1)
        return dag

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        self._json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run = self._json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_count(self, dag_id: str) -> int:
        return self._json("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1})["total_entries"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> RunResult:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in FINISHED:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        failed = []
        if state != "success":
            tis = self._json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
            failed = [
                ti
                for ti in tis["task_instances"]
                if ti["state"] in {"failed", "upstream_failed"} or state not in FINISHED
            ]
        return RunResult(dag_id, run_id, state, failed)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._all(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        data = self._json(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True, "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        content = data.get("content", "")
        if isinstance(content, list):
            return "\n".join(_log_line(item) for item in content)
        return str(content)


def _log_line(item: Any) -> str:
    """Task logs come as structured entries: timestamp, level, event, and any exception."""
    if not isinstance(item, dict):
        return str(item)
    text = " ".join(str(item[k]) for k in ("timestamp", "level", "event") if item.get(k)) or str(item)
    for stack in item.get("error_detail") or []:  # structlog's dict tracebacks
        for frame in stack.get("frames", [])[-5:]:
            text += f"\n  File {frame.get('filename')}, line {frame.get('lineno')}, in {frame.get('name')}"
        text += f"\n{stack.get('exc_type')}: {stack.get('exc_value')}"
    return text
