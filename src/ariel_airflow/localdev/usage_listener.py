"""What each task try of the local stack used: an Airflow listener that runs in the task process.

The stack installs it as a plugin in its AIRFLOW_HOME (``usage.plugin_source``); the task SDK calls the
hooks in the task process itself, so the figures are that process's own, not the machine's:
- peak memory: the process's own high-water RSS (``getrusage``, exact) plus the largest sum of its
  children's RSS, sampled every ``SAMPLE_SECONDS`` (and the largest child that already ended);
- CPU seconds: user and system time of the process and its children from running to finished.
Beside them, the requests and limits of the pod the KubernetesExecutor would build for the task
(``ariel_airflow.effective_pod``, the merge `ariel check` judges). One JSON file per task try in
``$AIRFLOW_HOME/task_usage/``, which the host sees on both engines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from airflow.listeners import hookimpl

from ariel_airflow.localdev.usage import USAGE_DIR

# Children's RSS is sampled this often: a child that lives shorter is still counted by getrusage
# once it has ended; a reading costs about a millisecond (psutil walks /proc).
SAMPLE_SECONDS = 0.25
# ru_maxrss is in KiB on Linux, in bytes on macOS.
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


class _Measure:
    """One task try in this process: the figures at its start, and the children's peak since."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.pod: dict[str, Any] = {}
        self.process = psutil.Process()
        self.started_at = datetime.now(UTC)
        self.t0 = time.monotonic()
        self.cpu0 = _cpu_seconds(self.process.cpu_times())
        self.rss_at_start = self.process.memory_info().rss
        self.children_peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="ariel-task-usage", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        # The pod is built here, beside the task, not after it (about 15 ms of deep copies).
        self.pod = _pod_resources(self.task)
        while not self._stop.wait(SAMPLE_SECONDS):
            self.children_peak = max(self.children_peak, _children_rss(self.process.pid))

    def finish(self) -> dict[str, Any]:
        self._stop.set()
        self._sampler.join()
        children = _children(self.process.pid)
        self.children_peak = max(self.children_peak, _children_rss(self.process.pid, children))
        ended_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * _MAXRSS_UNIT
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
        children_peak = max(self.children_peak, ended_child)
        cpu = _cpu_seconds(self.process.cpu_times()) - self.cpu0
        for child in children:  # still running: not in the process's children times yet
            with contextlib.suppress(psutil.Error):
                cpu += _cpu_seconds(child.cpu_times())
        return {
            **self.pod,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(time.monotonic() - self.t0, 3),
            "cpu_s": round(cpu, 3),
            "peak_memory_bytes": own_peak + children_peak,
            "process_peak_bytes": own_peak,
            "children_peak_bytes": children_peak,
            "rss_at_start_bytes": self.rss_at_start,
        }


def _cpu_seconds(times: Any) -> float:
    return times.user + times.system + times.children_user + times.children_system


def _children(pid: int) -> list[psutil.Process]:
    """The process's descendants. Linux lists a process's children in /proc (a few microseconds);
    psutil's ``children()`` reads every process of the machine (milliseconds)."""
    if not Path(f"/proc/{pid}/task").is_dir():
        return psutil.Process(pid).children(recursive=True)
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for children_file in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = [int(p) for p in children_file.read_text().split()]
            except OSError:  # it ended meanwhile
                continue
            todo += pids
            found += pids
    processes = []
    for child in found:
        with contextlib.suppress(psutil.Error):
            processes.append(psutil.Process(child))
    return processes


def _children_rss(pid: int, children: list[psutil.Process] | None = None) -> int:
    total = 0
    for child in _children(pid) if children is None else children:
        with contextlib.suppress(psutil.Error):  # it ended meanwhile
            total += child.memory_info().rss
    return total


_current: _Measure | None = None


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    global _current
    _current = _Measure(task_instance.task)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _finish(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _finish(task_instance, "failed")


def _finish(ti: Any, state: str) -> None:
    """Write the try's record; only in a process where it ran (the api-server calls these hooks too,
    when someone marks a task in the UI)."""
    global _current
    measure, _current = _current, None
    if measure is None:
        return
    record = {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "map_index": ti.map_index,
        "try_number": ti.try_number,
        "state": state,
        **measure.finish(),
    }
    folder = Path(os.environ["AIRFLOW_HOME"]) / USAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = "__".join(
        re.sub(r"[^A-Za-z0-9_.-]", "_", str(record[k]))
        for k in ("dag_id", "run_id", "task_id", "map_index", "try_number")
    )
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(folder / f"{name}.json")


def _pod_resources(task: Any) -> dict[str, Any]:
    """The task's effective pod resources, or why they are unknown (never fails the task)."""
    try:
        from ariel_airflow.effective_pod import base_template_path, effective_pod, task_resources
        from ariel_airflow.profiles import team_root
        from ariel_airflow.team import TeamRepo

        repo = TeamRepo.load(team_root(Path(task.dag.fileloc).resolve()))
        base = base_template_path(repo, task.executor_config)
        return {"pod": task_resources(effective_pod(task, base)), "pod_error": None}
    except Exception as exc:
        return {"pod": None, "pod_error": f"{exc.__class__.__name__}: {exc}"}
