"""Task usage against the pods, without a stack: verdicts, the profile suggestion, and the listener
measuring a real child process in this one."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from ariel_airflow.localdev.usage import (
    HEADROOM,
    Verdict,
    from_record,
    judge,
    latest_tries,
    read_records,
    recent_runs,
    suggest,
    summary,
)
from ariel_airflow.profiles import load_profiles

KIT = Path(__file__).resolve().parents[1]
CATALOG = load_profiles(KIT / "platform" / "resource_profiles.yaml")  # small 512Mi/768Mi, medium 2Gi/3Gi
TEAM = {name: CATALOG[name] for name in ("small", "medium")}
MI = 2**20
SMALL_POD = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "375m", "memory": "768Mi"}}


def record(peak_mib: float, *, cpu_s: float = 0.1, duration_s: float = 2.0, **extra: object) -> dict:
    return {
        "dag_id": "demo__x",
        "run_id": "r1",
        "task_id": "t",
        "map_index": -1,
        "try_number": 1,
        "state": "success",
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": duration_s,
        "cpu_s": cpu_s,
        "peak_memory_bytes": int(peak_mib * MI),
        "pod": SMALL_POD,
        "pod_error": None,
        **extra,
    }


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (Decimal(500 * MI), Verdict.FITS),
        (Decimal(512 * MI), Verdict.FITS),  # at the request is within it
        (Decimal(513 * MI), Verdict.OVER_REQUEST),
        (Decimal(768 * MI + 1), Verdict.OVER_LIMIT),
    ],
)
def test_memory_verdict_against_request_and_limit(used: Decimal, expected: Verdict) -> None:
    assert judge(used, "512Mi", "768Mi") is expected


def test_over_the_memory_limit_would_be_oom_killed_and_names_the_profile() -> None:
    usage = from_record(record(1100), TEAM)
    assert usage.profile == "small"
    assert usage.memory is Verdict.OVER_LIMIT and usage.oom_killed
    assert "OOM-killed" in usage.reason() and "768Mi" in usage.reason()


def test_cpu_over_the_limit_is_throttled_not_oom() -> None:
    usage = from_record(record(100, cpu_s=1.6, duration_s=2.0), TEAM)  # 0.8 cores on a 375m limit
    assert usage.cpu is Verdict.OVER_LIMIT and usage.verdict is Verdict.OVER_LIMIT
    assert not usage.oom_killed and "throttled" in usage.reason()


def test_cpu_of_a_short_task_is_not_judged() -> None:
    usage = from_record(record(100, cpu_s=0.3, duration_s=0.3), TEAM)  # 1 core, for 0.3 s
    assert usage.cores is None and usage.cpu is Verdict.FITS and usage.verdict is Verdict.FITS


def test_a_pod_without_resources_is_unknown_not_fitting() -> None:
    usage = from_record(record(100, pod=None, pod_error="ValueError: no pod_templates/"), TEAM)
    assert usage.verdict is Verdict.UNKNOWN and "no pod_templates/" in usage.reason()


def test_a_custom_pod_names_no_profile() -> None:
    custom = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert from_record(record(100, pod=custom), TEAM).profile is None
    same_as_small = {"requests": {"cpu": "0.25", "memory": "512Mi"}, "limits": SMALL_POD["limits"]}
    assert from_record(record(100, pod=same_as_small), TEAM).profile == "small"  # 0.25 == 250m


@pytest.mark.parametrize(
    ("peak_mib", "cores", "expected"),
    [
        (300, None, ("small", "team")),  # 375Mi needed
        (410, None, ("medium", "team")),  # 512.5Mi needed: just over small's 512Mi
        (1100, None, ("medium", "team")),
        (1700, None, ("large", "platform")),  # 2125Mi: over medium's 2Gi, only in the catalog
        (300, Decimal("0.3"), ("medium", "team")),  # 0.375 cores: over small's 250m
        (9000, None, (None, "platform")),
    ],
)
def test_suggestion_is_the_smallest_profile_covering_the_peak_with_headroom(
    peak_mib: int, cores: Decimal | None, expected: tuple
) -> None:
    suggestion = suggest(peak_mib * MI, cores, TEAM, CATALOG)
    assert (suggestion.profile, suggestion.source) == expected
    assert suggestion.needs_memory_bytes == int(peak_mib * MI * HEADROOM)


def test_summary_takes_the_worst_try_of_the_recent_runs(tmp_path: Path) -> None:
    records = [
        record(300, run_id="old", started_at="2026-01-01T00:00:00+00:00"),
        record(1100, run_id="r2", started_at="2026-01-02T00:00:00+00:00"),
        record(200, run_id="r3", started_at="2026-01-03T00:00:00+00:00"),
        record(5000, run_id="r3", try_number=0, started_at="2026-01-02T23:00:00+00:00"),
    ]
    assert len(latest_tries(records)) == 3  # r3's first try is replaced by its second
    recent = recent_runs(records, "demo__x", runs=2)
    assert {r["run_id"] for r in recent} == {"r2", "r3"}
    [row] = summary(latest_tries(recent), TEAM, CATALOG)
    assert row["worst"]["peak_memory_bytes"] == 1100 * MI
    assert row["verdict"] == "over the limit" and row["suggestion"]["profile"] == "medium"
    assert recent_runs(records, "other", runs=2) == []


def test_the_listener_measures_its_process_and_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hooks as the task SDK calls them, in this process, around a child that holds 300 MiB:
    the peak counts the child's memory and CPU, and the record lands in AIRFLOW_HOME/task_usage."""
    from ariel_airflow.localdev import usage_listener

    home = tmp_path / "airflow"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    task = SimpleNamespace(dag=SimpleNamespace(fileloc=str(tmp_path / "nowhere.py")), executor_config={})
    ti = SimpleNamespace(
        dag_id="demo__x", run_id="manual__1", task_id="t", map_index=-1, try_number=1, task=task
    )
    usage_listener.on_task_instance_running(previous_state=None, task_instance=ti)
    child = (
        "import time\nb = bytearray(300 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "t = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ntime.sleep(1)\n"
    )
    subprocess.run([sys.executable, "-c", child], check=True)
    usage_listener.on_task_instance_success(previous_state=None, task_instance=ti)
    [saved] = read_records([home])
    assert saved["children_peak_bytes"] >= 300 * MI
    assert saved["peak_memory_bytes"] >= saved["process_peak_bytes"] + 300 * MI
    assert saved["cpu_s"] >= 0.5 and saved["duration_s"] >= 1.5
    assert saved["pod"] is None and "pod_templates" in saved["pod_error"]  # not in a team repo
    # A hook with no running try in this process (the api-server's, on a mark in the UI) writes nothing.
    usage_listener.on_task_instance_failed(previous_state=None, task_instance=ti, error=None)
    assert len(read_records([home])) == 1
