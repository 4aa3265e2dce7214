"""Rules on DAG and task objects, as DagBag loads them (the same objects the cluster policies see)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ariel_airflow.limits import LIMITS, Limits
from ariel_airflow.rules.base import Finding
from ariel_airflow.team import DAG_ID_SEPARATOR, Team

DEFAULT_SENSOR_TIMEOUT = timedelta(days=7).total_seconds()


def check_dag(dag: Any, team: Team | None, limits: Limits = LIMITS) -> Iterator[Finding]:
    where = {"dag_id": dag.dag_id, "file": dag.fileloc}
    if team is None:
        yield Finding("ARL603", f"dag_id {dag.dag_id!r} must start with '<team>{DAG_ID_SEPARATOR}'", **where)
    else:
        if not dag.dag_id.startswith(team.dag_id_prefix):
            yield Finding("ARL603", f"dag_id {dag.dag_id!r} must start with {team.dag_id_prefix!r}", **where)
        if team.tag not in (dag.tags or ()):
            yield Finding("ARL602", f"add the tag {team.tag!r} to tags=[...]", **where)
    runs = first_deployment_runs(dag, limits.max_first_deployment_runs)
    if runs > limits.max_first_deployment_runs:
        more = "more than " if runs > limits.max_first_deployment_runs * 10 else ""
        yield Finding(
            "ARL201",
            f"the first deployment would create {more}{runs} runs, {dag.max_active_runs} at a time "
            f"(limit {limits.max_first_deployment_runs} runs): set catchup=False, a later start_date "
            "or an end_date",
            **where,
        )


def check_task(task: Any, team: Team | None, limits: Limits = LIMITS) -> Iterator[Finding]:
    dag = task.dag
    where = {
        "dag_id": dag.dag_id if dag else None,
        "task_id": task.task_id,
        "file": dag.fileloc if dag else None,
    }
    if _is_sensor(task):
        deferrable = _defers(task)
        timeout = float(task.timeout) if task.timeout is not None else DEFAULT_SENSOR_TIMEOUT
        if task.mode == "poke" and not deferrable and timeout > limits.poke_timeout_hours * 3600:
            yield Finding(
                "ARL101",
                f"poke-mode sensor with a {timeout / 3600:g} h timeout holds a worker slot all along: "
                f"use mode='reschedule' or deferrable=True, or timeout <= {limits.poke_timeout_hours:g} h",
                **where,
            )
        elif timeout >= DEFAULT_SENSOR_TIMEOUT:
            yield Finding("ARL102", "set an explicit sensor timeout (the default is 7 days)", **where)
    if _defers(task):
        for conn_id in _connection_ids(task):
            yield Finding(
                "ARL103",
                f"deferrable: its trigger runs in the platform's triggerer, which cannot read the team's "
                f"connection {conn_id!r} (it is in the team's Key Vault, for the team's identity only): "
                "use mode='reschedule' or deferrable=False",
                **where,
            )
    if team is not None and task.pool not in (_default_pool(), team.pool):
        yield Finding(
            "ARL402",
            f"pool={task.pool!r}: the tasks of team {team.name!r} run in their team's pool "
            f"{team.pool!r}, sized to the team's quota (the platform sets it): remove pool=, and limit "
            "concurrency with max_active_tasks or pool_slots instead",
            **where,
        )
    if not task.owner or task.owner == "airflow":
        yield Finding("ARL601", "set an owner (default_args={'owner': '<team email>'})", **where)
    if not task.retries:
        yield Finding("ARL604", "set retries (e.g. default_args={'retries': 2})", **where)
    if task.execution_timeout is None:
        yield Finding("ARL605", "set execution_timeout (e.g. timedelta(minutes=30))", **where)


def first_deployment_runs(dag: Any, limit: int, now: datetime | None = None) -> int:
    """How many runs the scheduler creates when the DAG is first deployed (capped a little above limit)."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    now = now or datetime.now(UTC)
    timetable = coerce_to_core_timetable(dag.timetable)
    if not timetable.can_be_scheduled or dag.start_date is None:
        return 0
    latest = min(dag.end_date, now) if dag.end_date else now
    restriction = TimeRestriction(earliest=dag.start_date, latest=latest, catchup=bool(dag.catchup))
    runs, last = 0, None
    while runs <= limit * 10:
        info = timetable.next_dagrun_info_v2(last_dagrun_info=last, restriction=restriction)
        if info is None or info.run_after > now:
            break
        runs, last = runs + 1, info
    return runs


def _default_pool() -> str:
    """The pool of a task that names none: the platform moves it into the team's pool."""
    from airflow.models.pool import Pool

    return Pool.DEFAULT_POOL_NAME


def _defers(task: Any) -> bool:
    return bool(getattr(task, "deferrable", False) or getattr(task, "start_from_trigger", False))


def _connection_ids(task: Any) -> list[str]:
    """The connections an operator names (its ``*conn_id`` arguments)."""
    names = sorted(name for name in vars(task) if name.endswith("conn_id") and not name.startswith("_"))
    return [value for name in names if isinstance(value := getattr(task, name), str) and value]


def _is_sensor(task: Any) -> bool:
    from airflow.sdk.bases.sensor import BaseSensorOperator

    return isinstance(task, BaseSensorOperator)
