"""`ariel platform cluster`: a real Kubernetes on this machine, from the parts pinned in tools/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ariel_airflow.localdev.progress import Progress
from ariel_airflow.template import KIT_ROOT

cluster_app = typer.Typer(
    help="A local Kubernetes built from upstream parts (Kubernetes, etcd, CoreDNS, Helm).",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the cluster keeps certificates, configuration, data and logs.",
        show_default="$ARIEL_CLUSTER_STATE or ~/.local/state/ariel/cluster",
    ),
]
PlatformDir = Annotated[
    Path, typer.Option(help="The platform folder (environments/local.yaml gives the nodes).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _cluster(state_dir: Path | None, platform_dir: Path):  # noqa: ANN202
    from ariel_airflow.localkube.cluster import LocalCluster
    from ariel_airflow.localkube.layout import default_state_dir

    return LocalCluster(state_dir or default_state_dir(), platform_dir)


@cluster_app.command("build")
def cluster_build(as_json: AsJson = False) -> None:
    """Build the pinned parts into the machine's cache (only what a changed pin touches)."""
    from ariel_airflow.localkube.build import build_all

    binaries = build_all(Progress())
    if as_json:
        programs = {name: str(path) for name, path in binaries.programs.items()}
        print(json.dumps({"programs": programs, "build_seconds": binaries.build_seconds}, indent=2))
        return
    built = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in binaries.build_seconds.items())
    out.print(f"built: {built}" if built else "every part came from the cache")


@cluster_app.command("up")
def cluster_up(
    state_dir: StateDir = None, platform_dir: PlatformDir = KIT_ROOT / "platform", as_json: AsJson = False
) -> None:
    """Start the cluster (building the parts first if needed); prints the kubeconfig to use."""
    status = _cluster(state_dir, platform_dir).up(Progress())
    if as_json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        _print_exports(status)


def _print_exports(status) -> None:  # noqa: ANN001
    """What a shell needs to use the cluster: its kubeconfig, and the pinned kubectl and helm."""
    out.print(f"export KUBECONFIG={status.kubeconfig}")
    out.print(f"export PATH={status.state / 'bin'}:$PATH")


@cluster_app.command("down")
def cluster_down(
    state_dir: StateDir = None,
    platform_dir: PlatformDir = KIT_ROOT / "platform",
    purge: Annotated[bool, typer.Option(help="Also delete the state: certificates and etcd's data.")] = False,
    as_json: AsJson = False,
) -> None:
    """Stop every process of the cluster and remove what it made on the machine."""
    undone = _cluster(state_dir, platform_dir).down(purge=purge, progress=Progress())
    if as_json:
        print(json.dumps({"stopped_and_removed": undone}, indent=2))
    elif not undone:
        out.print("nothing was running")
    else:
        out.print(f"stopped and removed: {', '.join(undone)}")


@cluster_app.command("load-images")
def cluster_load_images(
    rendered: Annotated[
        Path, typer.Option("--rendered", help="What `ariel platform render local --out DIR` wrote.")
    ],
    state_dir: StateDir = None,
    platform_dir: PlatformDir = KIT_ROOT / "platform",
) -> None:
    """Build the images the render runs (the platform's Airflow image from its image/ context,
    PgBouncer's) and load them into every node, trusting the cluster's CA (no registry: the
    chart's pods find them there)."""
    _cluster(state_dir, platform_dir).load_platform_images(rendered, Progress())


@cluster_app.command("standins")
def cluster_standins(state_dir: StateDir = None, platform_dir: PlatformDir = KIT_ROOT / "platform") -> None:
    """Deploy the local environment's Azure into the cluster: Entra ID's token service, the
    database (Postgres over TLS) and workload identity. Run after load-images."""
    _cluster(state_dir, platform_dir).deploy_standins(Progress())


@cluster_app.command("status")
def cluster_status(
    state_dir: StateDir = None, platform_dir: PlatformDir = KIT_ROOT / "platform", as_json: AsJson = False
) -> None:
    """Each process and node of the cluster; exit 1 unless everything is up."""
    status = _cluster(state_dir, platform_dir).status()
    if as_json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        if not status.processes:
            out.print(f"no cluster has been started in {status.state}")
        for name, running in status.processes.items():
            out.print(f"{'[green]running[/]' if running else '[red]stopped[/]':>20}  {name}")
        for name, ready in status.nodes.items():
            out.print(f"{'[green]Ready[/]' if ready else '[red]NotReady[/]':>20}  node {name}")
        if status.up:
            _print_exports(status)
    raise typer.Exit(0 if status.up else 1)
