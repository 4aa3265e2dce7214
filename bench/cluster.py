"""Benchmark: the local Kubernetes (`ariel platform cluster`), as a platform engineer runs it.

Prints, for this machine:
- the parts' build time: cached (every pin unchanged: what each `up` pays) and, with `--cold`, from
  nothing (a fresh parts cache and a fresh Go build cache, as on a new CI machine: ~15 minutes);
- `cluster up` to every node Ready and cluster DNS serving, with the parts cached;
- the cluster's memory (PSS) once up and idle: control plane, node agents, and the pods' containers;
- the platform deployed there as the README says: images built from the render and loaded into
  the nodes (`load-images`, Docker's layer cache as this machine has it), the Azure stand-ins,
  then render, bootstrap-secrets and `helm upgrade --install` (migrations as its hook) to the core
  Deployments Ready; the cluster's memory with the platform running;
- `cluster down`.
- the first DAG run on the KubernetesExecutor: the demo team's DAG, from its parse to a successful
  run (each task a pod in the team's namespace, its log in Blob Storage), timed from the trigger.
The last line printed is one JSON object with the figures.

    python bench/cluster.py [--cold] [--state-dir /tmp/k8s-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from pss import smaps_rollup  # noqa: E402

MIB = 1024 * 1024


def ariel(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "ariel_airflow", "platform", "cluster", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"`ariel platform cluster {' '.join(args)}` failed:\n{result.stderr}")
    return seconds, result.stdout


def cluster_pss(state: Path) -> dict[str, float]:
    """MiB of PSS by part: the processes started from the state directory's configuration, the
    containerd shims and everything in the nodes' cgroups (the pods)."""
    groups: dict[str, float] = {}
    pods = {
        int(pid)
        for procs in Path("/sys/fs/cgroup/memory").glob("ariel-*/**/cgroup.procs")
        for pid in procs.read_text().split()
    }
    for proc in psutil.process_iter(["cmdline"]):
        words = proc.info["cmdline"] or []
        text = " ".join(words)
        if proc.pid in pods:
            group = "pods"
        elif "containerd-shim" in text and str(state) in text:
            group = "containerd shims"
        elif words and (str(state) in text or "/ariel/cluster/" in words[0]):
            group = Path(words[0]).name
        else:
            continue
        groups[group] = groups.get(group, 0.0) + smaps_rollup(proc.pid)["Pss"] / MIB
    return dict(sorted(groups.items()))


CORE_DEPLOYMENTS = (
    "airflow-pgbouncer",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-triggerer",
    "airflow-dag-processor-demo",
)


def deploy(state: Path) -> dict[str, float]:
    """The README's deploy sequence on the running cluster, timed step by step."""
    status = json.loads(ariel("status", "--state-dir", str(state), "--json")[1])
    out = state / "render"
    env = {**os.environ, "KUBECONFIG": status["kubeconfig"]}
    bin_dir = Path(status["bin"])

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, env=env)

    run(sys.executable, "-m", "ariel_airflow", "platform", "render", "local", "--out", str(out))
    figures = {}
    figures["load_images_s"] = round(
        ariel("load-images", "--rendered", str(out), "--state-dir", str(state))[0]
    )
    print(f"images built from the render and loaded into the nodes: {figures['load_images_s']}s")
    figures["standins_s"] = round(ariel("standins", "--state-dir", str(state))[0], 1)
    print(f"Azure stand-ins Ready: {figures['standins_s']}s")
    start = time.perf_counter()
    run(sys.executable, "-m", "ariel_airflow", "platform", "bootstrap-secrets")
    run(
        str(bin_dir / "helm"),
        "upgrade",
        "--install",
        "airflow",
        str(out / "release"),
        "-n",
        "airflow",
        "--timeout=15m",
    )
    installed = time.perf_counter() - start
    for deployment in CORE_DEPLOYMENTS:
        run(
            str(bin_dir / "kubectl"),
            "-n",
            "airflow",
            "rollout",
            "status",
            f"deployment/{deployment}",
            "--timeout=900s",
        )
    ready = time.perf_counter() - start
    figures.update(release_installed_s=round(installed, 1), deploy_to_ready_s=round(ready, 1))
    print(f"bootstrap-secrets and helm upgrade --install (migrations included): {installed:.1f}s")
    print(f"deploy to {', '.join(CORE_DEPLOYMENTS)} Ready: {ready:.1f}s")
    figures.update(first_dag_run(bin_dir, env))
    return figures


def first_dag_run(bin_dir: Path, env: dict[str, str], dag_id: str = "demo__daily_export") -> dict[str, float]:
    """Trigger the demo DAG once it is parsed; seconds from the trigger to the run's success."""

    def airflow(*args: str) -> str:
        argv = [str(bin_dir / "kubectl"), "-n", "airflow", "exec", "deployment/airflow-scheduler"]
        done = subprocess.run(
            [*argv, "-c", "scheduler", "--", "airflow", *args], capture_output=True, text=True, env=env
        )
        return done.stdout

    start = time.perf_counter()
    while dag_id not in airflow("dags", "list", "-o", "plain"):
        if time.perf_counter() - start > 600:
            sys.exit(f"{dag_id} was not parsed in 10 minutes")
        time.sleep(5)
    parsed = time.perf_counter() - start
    airflow("dags", "unpause", dag_id)
    airflow("dags", "trigger", dag_id, "--run-id", "bench")
    triggered = time.perf_counter()
    state = ""
    while state not in ("success", "failed"):
        if time.perf_counter() - triggered > 900:
            sys.exit("the first DAG run did not end in 15 minutes")
        time.sleep(2)
        runs = json.loads(airflow("dags", "list-runs", dag_id, "-o", "json").strip().splitlines()[-1] or "[]")
        state = next((run["state"] for run in runs if run["run_id"] == "bench"), "")
    seconds = time.perf_counter() - triggered
    if state != "success":
        sys.exit(f"the first DAG run {state}")
    print(f"demo DAG parsed {parsed:.0f}s after Ready; its first run, trigger to success: {seconds:.1f}s")
    return {"dag_parsed_after_ready_s": round(parsed, 1), "first_dag_run_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a build from nothing (~15 min)")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    figures: dict[str, object] = {}

    if args.cold:
        with tempfile.TemporaryDirectory(prefix="ariel-cold-") as cold:
            env = {"ARIEL_CLUSTER_CACHE": f"{cold}/parts", "GOCACHE": f"{cold}/go-build"}
            seconds, out = ariel("build", "--json", env=env)
            figures["build_cold_s"] = round(seconds, 1)
            figures["build_cold_by_module_s"] = json.loads(out)["build_seconds"]
            print(f"build from nothing: {seconds:.0f}s {figures['build_cold_by_module_s']}")
    ariel("build")  # the cache this machine uses, filled if it was not
    seconds, _ = ariel("build")
    figures["build_cached_s"] = round(seconds, 2)
    print(f"build, every part cached: {seconds:.2f}s")

    state = args.state_dir or Path(tempfile.mkdtemp(prefix="k8s-bench-", dir="/tmp"))
    try:
        seconds, _ = ariel("up", "--state-dir", str(state))
        figures["up_to_ready_s"] = round(seconds, 1)
        print(f"cluster up to nodes Ready and DNS serving (parts cached): {seconds:.1f}s")
        time.sleep(10)  # idle: the first sync and the image imports are over
        pss = cluster_pss(state)
        figures["memory_mib"] = {name: round(mib) for name, mib in pss.items()}
        figures["memory_total_mib"] = round(sum(pss.values()))
        for name, mib in pss.items():
            print(f"  {mib:7.0f} MiB  {name}")
        print(f"  {sum(pss.values()):7.0f} MiB  cluster, idle (PSS)")
        figures.update(deploy(state))
        time.sleep(30)  # the components' start-up is over
        pss = cluster_pss(state)
        figures["memory_with_platform_mib"] = {name: round(mib) for name, mib in pss.items()}
        figures["memory_with_platform_total_mib"] = round(sum(pss.values()))
        print(f"  {pss.get('pods', 0):7.0f} MiB  pods (the platform, the stand-ins, CoreDNS)")
        print(f"  {sum(pss.values()):7.0f} MiB  cluster with the platform running (PSS)")
    finally:
        seconds, out = ariel("down", "--purge", "--state-dir", str(state), "--json")
        figures["down_s"] = round(seconds, 1)
        print(f"cluster down: {seconds:.1f}s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
