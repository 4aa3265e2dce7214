"""The task usage listener's cost on a 1 s task: its hooks around a real task of a generated team
repository (the effective pod built from the team's pod templates, the record written), against the
same 1 s without them. Prints the extra wall time and the CPU the hooks and the sampler use, as a
share of the task's run time (the issue's bar: under 5%).

    python bench/task_usage_overhead.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

TASK_SECONDS = 1.0
BAR = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AIRFLOW_HOME"] = str(Path(tmp) / "airflow")
        from airflow.dag_processing.dagbag import DagBag

        from ariel_airflow.localdev import usage_listener
        from ariel_airflow.template import generate_team_repo

        repo = generate_team_repo(Path(tmp) / "team-bench", "bench")
        bag = DagBag(dag_folder=repo / "dags", bundle_path=repo / "dags", bundle_name="bench")
        task = next(iter(bag.dags.values())).tasks[-1]
        extra_wall, extra_cpu = [], []
        for number in range(runs + 1):
            ti = SimpleNamespace(
                dag_id=task.dag_id,
                run_id=f"bench-{number}",
                task_id=task.task_id,
                map_index=-1,
                try_number=1,
                task=task,
            )
            wall0, cpu0 = time.perf_counter(), time.process_time()
            usage_listener.on_task_instance_running(previous_state=None, task_instance=ti)
            time.sleep(TASK_SECONDS)  # the task: it uses no CPU, so all CPU here is the listener's
            usage_listener.on_task_instance_success(previous_state=None, task_instance=ti)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if number:  # the first run imports what a task process has imported already
                extra_wall.append(wall - TASK_SECONDS)
                extra_cpu.append(cpu)
        records = list((Path(os.environ["AIRFLOW_HOME"]) / usage_listener.USAGE_DIR).glob("*.json"))
        assert len(records) == runs + 1, records
    worst = max(max(extra_wall), max(extra_cpu)) / TASK_SECONDS
    print(
        f"task: {TASK_SECONDS:.0f} s sleep, {runs} runs (listener hooks, sampler every "
        f"{usage_listener.SAMPLE_SECONDS} s, effective pod, record)"
    )
    print(
        f"extra wall time: median {sorted(extra_wall)[runs // 2] * 1000:.1f} ms, "
        f"max {max(extra_wall) * 1000:.1f} ms"
    )
    print(
        f"listener CPU:    median {sorted(extra_cpu)[runs // 2] * 1000:.1f} ms, "
        f"max {max(extra_cpu) * 1000:.1f} ms"
    )
    print(f"overhead: {worst:.1%} of the task's run time (bar {BAR:.0%}): {'OK' if worst < BAR else 'OVER'}")


if __name__ == "__main__":
    main()
