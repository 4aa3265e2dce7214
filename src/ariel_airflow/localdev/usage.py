"""What tasks used on the local stack against their pods: verdicts, and the profile to ask for.

The records come from ``usage_listener`` (one JSON file per task try in the stack's AIRFLOW_HOME).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from ariel_airflow.profiles import ResourceProfile, parse_quantity

USAGE_DIR = "task_usage"  # under the stack's AIRFLOW_HOME: one JSON record per task try
PLUGIN_FILE = "ariel_task_usage.py"  # in AIRFLOW_HOME/plugins: installs usage_listener

# A profile is suggested when its request covers the observed peak times this. One local run sees
# one input; the next may be larger (the platform proposal: start high). 1.25 also keeps the observed
# peak under the profile's limit, at most 1.5x the request (limits.MAX_LIMIT_REQUEST_RATIO).
HEADROOM = Decimal("1.25")
# CPU is judged as average cores (CPU seconds / run time) only for tasks that run at least this
# long: shorter ones are start-up noise, and a throttled second costs them little.
CPU_JUDGED_FROM_SECONDS = 1.0


def plugin_source() -> str:
    """The plugin file the stack writes into its AIRFLOW_HOME/plugins folder."""
    return (
        '"""Written by `ariel local up`: records what each task try uses (ariel_airflow.localdev.'
        'usage_listener)."""\n\n'
        "from airflow.plugins_manager import AirflowPlugin\n\n"
        "from ariel_airflow.localdev import usage_listener\n\n\n"
        "class ArielTaskUsage(AirflowPlugin):\n"
        '    name = "ariel_task_usage"\n'
        "    listeners = [usage_listener]\n"
    )


class Verdict(StrEnum):
    FITS = "fits"
    OVER_REQUEST = "over the request"  # the scheduler would pack it too tightly
    OVER_LIMIT = "over the limit"  # memory: OOM-killed; CPU: throttled
    UNKNOWN = "no pod resources"


_ORDER = [Verdict.UNKNOWN, Verdict.FITS, Verdict.OVER_REQUEST, Verdict.OVER_LIMIT]


def judge(used: Decimal, request: str | None, limit: str | None) -> Verdict:
    if request is None or limit is None:
        return Verdict.UNKNOWN
    if used > parse_quantity(limit):
        return Verdict.OVER_LIMIT
    if used > parse_quantity(request):
        return Verdict.OVER_REQUEST
    return Verdict.FITS


@dataclass(frozen=True)
class TaskUsage:
    """One task try: what it used, its pod's resources, the verdicts."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str
    started_at: str
    duration_s: float
    cpu_s: float
    peak_memory_bytes: int
    requests: dict[str, str]
    limits: dict[str, str]
    profile: str | None  # the team's profile with exactly these requests and limits
    memory: Verdict
    cpu: Verdict
    pod_error: str | None = None

    @property
    def cores(self) -> Decimal | None:
        """Average cores over the run, where it is long enough to judge."""
        if self.duration_s < CPU_JUDGED_FROM_SECONDS:
            return None
        return Decimal(str(self.cpu_s)) / Decimal(str(self.duration_s))

    @property
    def verdict(self) -> Verdict:
        return max(self.memory, self.cpu, key=_ORDER.index)

    @property
    def oom_killed(self) -> bool:
        """The pod would be OOM-killed: over its memory limit."""
        return self.memory is Verdict.OVER_LIMIT

    def reason(self) -> str:
        parts = []
        if self.memory is Verdict.OVER_LIMIT:
            parts.append(f"memory over the limit {self.limits['memory']}: the pod would be OOM-killed")
        elif self.memory is Verdict.OVER_REQUEST:
            parts.append(f"memory over the request {self.requests['memory']}: the node would be overpacked")
        if self.cpu is Verdict.OVER_LIMIT:
            parts.append(f"CPU over the limit {self.limits['cpu']}: the pod would be throttled")
        elif self.cpu is Verdict.OVER_REQUEST:
            parts.append(f"CPU over the request {self.requests['cpu']}")
        if self.memory is Verdict.UNKNOWN:
            parts.append(f"no requests/limits known ({self.pod_error or 'the pod sets none'})")
        return "; ".join(parts) or "fits"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        cores = self.cores
        return {**data, "cores": float(cores) if cores is not None else None, "verdict": self.verdict.value}


def from_record(record: Mapping[str, Any], profiles: Mapping[str, ResourceProfile]) -> TaskUsage:
    pod = record.get("pod") or {}
    requests, limits = pod.get("requests") or {}, pod.get("limits") or {}
    memory = judge(Decimal(record["peak_memory_bytes"]), requests.get("memory"), limits.get("memory"))
    cpu = Verdict.UNKNOWN if memory is Verdict.UNKNOWN else Verdict.FITS
    usage = TaskUsage(
        **{k: record[k] for k in ("dag_id", "run_id", "task_id", "map_index", "try_number", "state")},
        started_at=record["started_at"],
        duration_s=record["duration_s"],
        cpu_s=record["cpu_s"],
        peak_memory_bytes=record["peak_memory_bytes"],
        requests=requests,
        limits=limits,
        profile=profile_named(requests, limits, profiles),
        memory=memory,
        cpu=cpu,
        pod_error=record.get("pod_error"),
    )
    if usage.cores is not None and cpu is not Verdict.UNKNOWN:
        cpu = judge(usage.cores, requests.get("cpu"), limits.get("cpu"))
        usage = TaskUsage(**{**usage.__dict__, "cpu": cpu})
    return usage


def profile_named(
    requests: Mapping[str, str], limits: Mapping[str, str], profiles: Mapping[str, ResourceProfile]
) -> str | None:
    """The profile whose requests and limits these are (as quantities: 0.5 and 500m are one)."""

    def same(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
        return all(k in a and parse_quantity(a[k]) == parse_quantity(b[k]) for k in b)

    for name, spec in profiles.items():
        resources = spec.k8s_resources()
        if same(requests, resources["requests"]) and same(limits, resources["limits"]):
            return name
    return None


@dataclass(frozen=True)
class Suggestion:
    profile: str | None  # None: no profile is big enough
    source: str  # "team": in the team's resource_profiles.yaml; "platform": only in the catalog
    needs_memory_bytes: int
    needs_cores: float | None


def suggest(
    peak_memory_bytes: int,
    cores: Decimal | None,
    team_profiles: Mapping[str, ResourceProfile],
    catalog: Mapping[str, ResourceProfile],
) -> Suggestion:
    """The smallest profile whose requests cover the peak (and average cores) with ``HEADROOM``:
    the team's own first, else the platform's catalog (the team adds it with `copier update`)."""
    memory = Decimal(peak_memory_bytes) * HEADROOM
    cpu = cores * HEADROOM if cores is not None else Decimal(0)
    for source, profiles in (("team", team_profiles), ("platform", catalog)):
        fitting = [
            (parse_quantity(spec.requests.memory), parse_quantity(spec.requests.cpu), name)
            for name, spec in profiles.items()
            if parse_quantity(spec.requests.memory) >= memory and parse_quantity(spec.requests.cpu) >= cpu
        ]
        if fitting:
            return Suggestion(min(fitting)[2], source, int(memory), float(cpu) if cores is not None else None)
    return Suggestion(None, "platform", int(memory), float(cpu) if cores is not None else None)


def read_records(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """Every record in the stack's usage folders, oldest first."""
    records = []
    for folder in folders:
        for path in (folder / USAGE_DIR).glob("*.json"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # being replaced, or not ours
                continue
    return sorted(records, key=lambda r: r.get("started_at", ""))


def latest_tries(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The last try of each task instance."""
    last: dict[tuple, Mapping[str, Any]] = {}
    for record in records:
        key = (record["dag_id"], record["run_id"], record["task_id"], record["map_index"])
        if key not in last or record["try_number"] >= last[key]["try_number"]:
            last[key] = record
    return list(last.values())


def recent_runs(records: list[Mapping[str, Any]], dag_id: str | None, runs: int) -> list[Mapping[str, Any]]:
    """The records of the last ``runs`` runs of each DAG (of ``dag_id`` only, when given)."""
    chosen = [r for r in records if dag_id is None or r["dag_id"] == dag_id]
    started: dict[tuple[str, str], str] = {}
    for record in chosen:
        key = (record["dag_id"], record["run_id"])
        started[key] = min(started.get(key, record["started_at"]), record["started_at"])
    keep = set()
    for dag in {d for d, _ in started}:
        newest = sorted((t, r) for (d, r), t in started.items() if d == dag)[-runs:]
        keep |= {(dag, run) for _, run in newest}
    return [r for r in chosen if (r["dag_id"], r["run_id"]) in keep]


def summary(
    records: list[Mapping[str, Any]],
    team_profiles: Mapping[str, ResourceProfile],
    catalog: Mapping[str, ResourceProfile],
) -> list[dict[str, Any]]:
    """Per task (over the given runs): the worst try, its verdict, and the suggested profile."""
    by_task: dict[tuple[str, str], list[TaskUsage]] = {}
    for record in records:
        usage = from_record(record, team_profiles)
        by_task.setdefault((usage.dag_id, usage.task_id), []).append(usage)
    rows = []
    for (dag_id, task_id), tries in sorted(by_task.items()):
        worst = max(tries, key=lambda u: u.peak_memory_bytes)
        cores = [u.cores for u in tries if u.cores is not None]
        suggestion = suggest(worst.peak_memory_bytes, max(cores) if cores else None, team_profiles, catalog)
        rows.append(
            {
                "dag_id": dag_id,
                "task_id": task_id,
                "tries": len(tries),
                "runs": len({u.run_id for u in tries}),
                "worst": worst.to_dict(),
                "verdict": max((u.verdict for u in tries), key=_ORDER.index).value,
                "max_cores": float(max(cores)) if cores else None,
                "suggestion": asdict(suggestion),
            }
        )
    return rows


# The listener writes a try's record after the task reports its state: the run can be seen to end
# a moment before the last record is there.
RECORD_WAIT_SECONDS = 15.0


def run_usage(
    airflow_home: Path,
    dag_id: str,
    run_id: str,
    finished: Iterable[tuple[str, int]],
    profiles: Mapping[str, ResourceProfile],
) -> list[TaskUsage]:
    """The last try of each task instance of a run; ``finished``: the (task_id, map_index) of the
    task instances that ran to an end, whose records are waited for a moment."""
    import time

    expected = set(finished)
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    while True:
        records = [r for r in read_records([airflow_home]) if r["dag_id"] == dag_id and r["run_id"] == run_id]
        if expected <= {(r["task_id"], r["map_index"]) for r in records} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    tries = sorted(latest_tries(records), key=lambda r: r["started_at"])
    return [from_record(r, profiles) for r in tries]
