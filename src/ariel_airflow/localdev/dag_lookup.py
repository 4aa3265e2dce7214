"""Finding a DAG by id once the dag-processor has parsed the team's DAG files as they are now.

A dag_id the local Airflow does not know may be in a file the dag-processor has not (re)parsed yet:
wait for that parse, then answer at once, naming close matches and the import errors, rather than
polling for the DAG until a timeout.
"""

from __future__ import annotations

import difflib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.api import AirflowClient
from ariel_airflow.localdev.topology import DAG_REFRESH_INTERVAL

# A file that yields neither a DAG nor an import error (a helper module) leaves no record of its
# parse: it counts as parsed once the dag-processor has had time to find and parse it, since the
# file changed or since the dag-processor started (a new stack's first parse), whichever is later.
NO_RECORD_WINDOW = timedelta(seconds=DAG_REFRESH_INTERVAL + 20)
POLL_SECONDS = 1.0


def find_dag(client: AirflowClient, dags: Path, bundle: str, dag_id: str, timeout: float) -> dict[str, Any]:
    """The DAG ``dag_id``, once parsed; a UserError as soon as every file is parsed without it."""
    deadline = time.monotonic() + timeout
    started = processor_started(client)
    while True:
        known = client.dags()
        for dag in known:
            if dag["dag_id"] == dag_id:
                return dag
        errors = [e for e in client.import_errors() if e.get("bundle_name") == bundle]
        parsed = last_parses(known, errors, bundle)
        pending = unparsed(dag_files(dags), parsed, datetime.now(UTC), started)
        if not pending:
            raise unknown_dag(dag_id, dags, [d["dag_id"] for d in known], errors)
        if time.monotonic() > deadline:
            raise UserError(
                f"DAG {dag_id!r} is not known, and after {timeout:.0f}s the dag-processor has still "
                f"not parsed {', '.join(pending)}",
                where=str(dags),
                fix="see `ariel local logs dag-processor`, or wait longer with --timeout",
            )
        _require_dag_processor(client)
        time.sleep(POLL_SECONDS)


def dag_files(dags: Path) -> dict[str, datetime]:
    """The files the dag-processor parses, by path relative to ``dags``, with the time they last changed."""
    files = {}
    for path in sorted(dags.rglob("*.py")):
        rel = path.relative_to(dags)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        try:
            changed, content = path.stat().st_mtime, path.read_bytes()
        except OSError:  # removed meanwhile
            continue
        if might_contain_dag(content):
            files[rel.as_posix()] = datetime.fromtimestamp(changed, UTC)
    return files


def might_contain_dag(content: bytes) -> bool:
    """Airflow's safe-mode test (``airflow.utils.file.might_contain_dag_via_default_heuristic``):
    the dag-processor does not import a file that names neither airflow and a dag nor an asset."""
    content = content.lower()
    return b"airflow" in content and (b"dag" in content or b"asset" in content)


def last_parses(dags: list[dict[str, Any]], errors: list[dict[str, Any]], bundle: str) -> dict[str, datetime]:
    """When Airflow last parsed each file of the bundle that has a DAG or an import error."""
    parsed: dict[str, datetime] = {}

    def note(rel: str, when: datetime) -> None:
        parsed[rel] = max(when, parsed.get(rel, when))

    for dag in dags:
        if dag.get("bundle_name") == bundle and dag.get("relative_fileloc") and dag.get("last_parsed_time"):
            # When the parse started: one that began before the file was saved read the old file.
            took = timedelta(seconds=dag.get("last_parse_duration") or 0)
            note(dag["relative_fileloc"], datetime.fromisoformat(dag["last_parsed_time"]) - took)
    for error in errors:
        note(error["filename"], datetime.fromisoformat(error["timestamp"]))
    return parsed


def unparsed(
    files: dict[str, datetime], parsed: dict[str, datetime], now: datetime, started: datetime | None = None
) -> list[str]:
    """Files changed after their last recorded parse, or without a record for a short while after
    they changed or the dag-processor ``started``."""
    return [
        rel
        for rel, changed in files.items()
        if (rel in parsed and parsed[rel] < changed)
        or (rel not in parsed and now - max(changed, started or changed) < NO_RECORD_WINDOW)
    ]


def processor_started(client: AirflowClient) -> datetime | None:
    """When the running dag-processor started (its job's start date), if one runs."""
    params = {"job_type": "DagProcessorJob", "is_alive": "true"}
    jobs = client.request("GET", "/api/v2/jobs", params=params).json().get("jobs", [])
    return max((datetime.fromisoformat(j["start_date"]) for j in jobs if j.get("start_date")), default=None)


def unknown_dag(dag_id: str, dags: Path, known: list[str], errors: list[dict[str, Any]]) -> UserError:
    message = f"no DAG {dag_id!r} in the local Airflow, which has parsed every file in {dags}"
    if errors:
        message += f"; {len(errors)} {'file fails' if len(errors) == 1 else 'files fail'} to import:"
        message += "".join(f"\n  {e['filename']}: {_last_line(e.get('stack_trace') or '')}" for e in errors)
    fixes = []
    if close := difflib.get_close_matches(dag_id, known, n=3):
        fixes.append("did you mean " + " or ".join(f"`{c}`" for c in close) + "?")
    if errors:
        fixes.append("If the DAG is in a file that fails to import, fix that file (`ariel local status`).")
    if not fixes:
        fixes.append(
            "use one of the known DAGs: " + ", ".join(sorted(known)) if known else f"add a DAG file to {dags}"
        )
    return UserError(message, fix=" ".join(fixes))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def _require_dag_processor(client: AirflowClient) -> None:
    """Waiting for parses only makes sense while the dag-processor runs."""
    report = client.request("GET", "/api/v2/monitor/health").json()
    status = (report.get("dag_processor") or {}).get("status")
    if status != "healthy":
        raise UserError(
            f"the local dag-processor is {status or 'not reporting'}, so new DAG files are not parsed",
            fix="see `ariel local status` and `ariel local logs dag-processor`",
        )
