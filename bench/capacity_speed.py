"""Benchmark: `ariel capacity prod`, as a user runs it (a fresh process). Target: under 2 s.

Also times the same report computed by the library alone in a fresh process, so the share of the
CLI's own start-up (its imports) shows. The last line printed is one JSON object with the figures.

    python bench/capacity_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

LIBRARY_ONLY = """
from ariel_airflow.cluster.capacity import capacity
from ariel_airflow.cluster.environments import load_environment
from ariel_airflow.profiles import load_profiles
from ariel_airflow.template import KIT_ROOT
platform = KIT_ROOT / "platform"
capacity(load_environment("prod", platform), load_profiles(platform / "resource_profiles.yaml"))
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ariel = shutil.which("ariel") or sys.executable
    cli = (
        [ariel, "capacity", "prod"]
        if ariel != sys.executable
        else [ariel, "-m", "ariel_airflow", "capacity", "prod"]
    )
    runs = {
        "cli_seconds": [timed(cli) for _ in range(args.repeat)],
        "library_seconds": [timed([sys.executable, "-c", LIBRARY_ONLY]) for _ in range(args.repeat)],
        "python_seconds": [timed([sys.executable, "-c", "pass"]) for _ in range(args.repeat)],
    }
    figures = {name: round(statistics.median(times), 3) for name, times in runs.items()}
    figures["target_seconds"] = 2.0
    figures["ok"] = figures["cli_seconds"] < 2.0
    for name, value in figures.items():
        print(f"{name:>16}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
