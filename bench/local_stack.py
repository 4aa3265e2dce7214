"""Benchmark: the kit's local stack against `airflow standalone` on the same DAGs and Airflow.

For each: (a) seconds from start to healthy (from scratch: new database), (b) seconds from
triggering the demo DAG to its success, (c) memory (PSS, MiB) of all the stack's processes at idle,
(d) the CPU seconds its processes used to start (``start_cpu_s``, bench/cpu.py) and the shortest start
that CPU allows on this machine's cores (``start_floor_s``): a start near its floor is bound by CPU.
Standalone runs twice: with its defaults (parallelism 32, so 32 LocalExecutor workers) and at the
kit's parallelism (``standalone_p4_``), so the comparison also holds at equal task slots.
The last line printed is one JSON object with the figures, under keys that name the engine
(``native_``, ``docker_``, ``standalone_``, ``standalone_p4_``), and the ratios of each engine to
standalone (``native_memory``) and to standalone at equal parallelism (``native_memory_p4``).
Targets: memory native <= 0.45, docker <= 0.6; healthy native <= 0.5, docker <= 0.7.

    python bench/local_stack.py [--engine docker] [--idle-seconds 20] [--breakdown]

``--engine docker`` adds the Docker engine (its images are built first, timed apart as
``docker_image_build_s``; memory is the PSS of the containers' processes, not of the daemon).
``--breakdown`` prints the idle PSS per component and per kind of process (bench/pss.py) of
every stack measured, and adds the per-component MiB to the JSON line under ``breakdown``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from ariel_airflow.localdev.api import AirflowClient
from ariel_airflow.localdev.docker_engine import DockerEngine
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.processes import pss_bytes
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localdev.state import DEFAULT_PARALLELISM, free_port
from ariel_airflow.localdev.topology import ADMIN_PASSWORD, ADMIN_USER, SECRETS_BACKEND_CLASS
from ariel_airflow.team import TeamRepo
from ariel_airflow.template import generate_team_repo

sys.path.insert(0, str(Path(__file__).parent))
import cpu  # noqa: E402 - the bench's sibling modules
import pss  # noqa: E402

DAG_ID = "demo__daily_export"  # the example DAG of a team repository generated for team "demo"
MIB = 1024 * 1024


def first_dag_seconds(client: AirflowClient) -> float:
    client.wait_for_dag(DAG_ID, timeout=300)
    t0 = time.monotonic()
    run_id = client.trigger(DAG_ID, {})
    result = client.wait_for_run(DAG_ID, run_id, timeout=600)
    if result.state != "success":
        sys.exit(f"{DAG_ID} ended {result.state}")
    return time.monotonic() - t0


BREAKDOWNS: dict[str, dict[str, float]] = {}  # stack -> component -> PSS MiB, with --breakdown


def idle_memory_mib(
    stack: str, roots: dict[str, psutil.Process], idle_seconds: float, breakdown: bool
) -> float:
    """PSS of the component processes (name -> process) and their children, after an idle time."""
    time.sleep(idle_seconds)
    if breakdown:
        components = pss.breakdown(roots)
        pss.print_breakdown(stack, components)
        BREAKDOWNS[stack] = {k: round(v, 1) for k, v in pss.total_mib(components).items()}
    return pss_bytes(list(roots.values())) / MIB


def measure_ariel(repo: Path, engine_name: str, idle_seconds: float, breakdown: bool) -> dict[str, float]:
    port = free_port()
    ariel = [sys.executable, "-m", "ariel_airflow", "local"]
    figures = {}
    if engine_name == "docker":  # built once, outside the start-up time
        t0 = time.monotonic()
        DockerEngine(TeamRepo.load(repo)).build_images(Progress())
        figures["image_build_s"] = time.monotonic() - t0
    cli_cpu, t0 = cpu.reaped_children_seconds(), time.monotonic()
    subprocess.run(
        [*ariel, "up", "--engine", engine_name, "--detach", "--port", str(port), "--team-repo", str(repo)],
        check=True,
    )
    healthy = time.monotonic() - t0
    cli_cpu = cpu.reaped_children_seconds() - cli_cpu  # the CLI and what it ran (initdb, compose)
    try:
        if engine_name == "docker":
            engine = DockerEngine(TeamRepo.load(repo))
            roots = {
                name: psutil.Process(c.attrs["State"]["Pid"])
                for name, c in engine.containers().items()
                if c.status == "running"
            }
        else:
            engine = NativeEngine(TeamRepo.load(repo))
            roots = {t.name: p for t in engine.table.running() if (p := t.process())}
        start_cpu = cli_cpu + cpu.tree_cpu_seconds(roots.values())
        with engine.client() as client:
            first = first_dag_seconds(client)
        memory = idle_memory_mib(f"ariel {engine_name}", roots, idle_seconds, breakdown)
    finally:
        subprocess.run([*ariel, "down", "--purge", "--team-repo", str(repo)], check=True)
    figures |= {"first_dag_s": first, "memory_mib": memory}
    return {"healthy_s": healthy, **_start_cpu(start_cpu), **figures}


def _start_cpu(seconds: float) -> dict[str, float]:
    return {"start_cpu_s": seconds, "start_floor_s": cpu.floor_seconds(seconds)}


def measure_standalone(
    repo: Path, workdir: Path, idle_seconds: float, breakdown: bool, parallelism: int | None = None
) -> dict[str, float]:
    """``airflow standalone`` with its defaults, or at a given parallelism (its LocalExecutor workers)."""
    name = "standalone" if parallelism is None else f"standalone_p{parallelism}"
    home = workdir / name
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
    port = free_port()
    secrets = json.dumps(
        {
            "connections_file_path": str(repo / ".local" / "connections.yaml"),
            "variables_file_path": str(repo / ".local" / "variables.yaml"),
        }
    )
    airflow = Path(sys.executable).parent / "airflow"
    env = {
        **os.environ,
        "PATH": f"{airflow.parent}{os.pathsep}{os.environ['PATH']}",  # standalone runs `airflow ...`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SECRETS__BACKEND": SECRETS_BACKEND_CLASS,
        "AIRFLOW__SECRETS__BACKEND_KWARGS": secrets,
        "AIRFLOW__WORKERS__SECRETS_BACKEND": SECRETS_BACKEND_CLASS,
        "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS": secrets,
    }
    if parallelism is not None:
        env["AIRFLOW__CORE__PARALLELISM"] = str(parallelism)
    log = open(home / "standalone.log", "wb")  # noqa: SIM115 - open for the process's lifetime
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(airflow), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    client = AirflowClient(f"http://127.0.0.1:{port}", ADMIN_USER, ADMIN_PASSWORD)
    try:
        while not _all_healthy(client):
            if proc.poll() is not None or time.monotonic() - t0 > 600:
                sys.exit(f"airflow standalone did not become healthy; see {home / 'standalone.log'}")
            time.sleep(0.5)
        healthy = time.monotonic() - t0
        supervisor = psutil.Process(proc.pid)
        start_cpu = cpu.tree_cpu_seconds([supervisor])
        first = first_dag_seconds(client)
        # Its components are its children (`airflow scheduler`, ...); the supervisor itself last.
        roots = {pss.label(child): child for child in supervisor.children()}
        memory = idle_memory_mib(name, {**roots, "standalone": supervisor}, idle_seconds, breakdown)
    finally:
        client.close()
        os.killpg(proc.pid, 15)
        proc.wait(60)
        log.close()
    return {"healthy_s": healthy, **_start_cpu(start_cpu), "first_dag_s": first, "memory_mib": memory}


def _all_healthy(client: AirflowClient) -> bool:
    try:
        report = client.health()
    except Exception:
        return False
    keys = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((report.get(k) or {}).get("status") == "healthy" for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=20, help="idle time before memory is read")
    parser.add_argument(
        "--engine",
        choices=["native", "docker"],
        action="append",
        default=[],
        help="docker: add the Docker engine",
    )
    parser.add_argument("--breakdown", action="store_true", help="print the idle PSS per component")
    args = parser.parse_args()
    engines = ["native", *(e for e in args.engine if e != "native")]
    load_at_start = os.getloadavg()  # start-up times are noisy when other work shares the cores
    workdir = Path(tempfile.mkdtemp(prefix="ariel-bench-"))
    workdir.chmod(0o755)  # Postgres runs unprivileged when this runs as root
    results = {}
    try:
        repo = generate_team_repo(workdir / "team-demo", "demo")
        for name in engines:
            results[name] = measure_ariel(repo, name, args.idle_seconds, args.breakdown)
            for key, value in results[name].items():
                print(f"ariel {name:9}{key:14} {value:8.1f}")
        baselines = {
            "": measure_standalone(repo, workdir, args.idle_seconds, args.breakdown),
            f"_p{DEFAULT_PARALLELISM}": measure_standalone(
                repo, workdir, args.idle_seconds, args.breakdown, DEFAULT_PARALLELISM
            ),
        }
        for suffix, theirs in baselines.items():
            for key, value in theirs.items():
                print(f"standalone{suffix:5}{key:14} {value:8.1f}")
    except BaseException:
        # The stack's logs (team-demo/.ariel/logs, .ariel/docker/compose.log) are the only clue.
        print(f"bench failed; its work folder is kept for the logs: {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    figures, ratios = {}, {}
    for name, ours in results.items():
        figures |= {f"{name}_{k}": round(v, 2) for k, v in ours.items()}
        for suffix, theirs in baselines.items():
            for key, unit in (("healthy", "_s"), ("first_dag", "_s"), ("memory", "_mib")):
                ratio = ratios[f"{name}_{key}{suffix}"] = round(ours[key + unit] / theirs[key + unit], 3)
                print(f"ratio {name:9}{key + suffix:14} {ratio:8.2f}")
    for suffix, theirs in baselines.items():
        figures |= {f"standalone{suffix}_{k}": round(v, 2) for k, v in theirs.items()}
    result = {"figures": figures, "ratios": ratios, "load_average": [load_at_start, os.getloadavg()]}
    if BREAKDOWNS:
        result["breakdown"] = BREAKDOWNS
    print(json.dumps(result))


if __name__ == "__main__":
    main()
