"""The `ariel` command line: thin wrappers over the library, user errors without tracebacks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ariel_airflow.cluster_cli import cluster_app
from ariel_airflow.errors import UserError
from ariel_airflow.localdev.options import Engine, StatusCode, status_code
from ariel_airflow.localdev.progress import Progress, err_console
from ariel_airflow.localdev.state import DEFAULT_PARALLELISM, DEFAULT_UI_PORT
from ariel_airflow.localdev.topology import ADMIN_PASSWORD, ADMIN_USER
from ariel_airflow.pins import version_text
from ariel_airflow.team import TeamRepo
from ariel_airflow.template import KIT_ROOT

if TYPE_CHECKING:
    from ariel_airflow.localdev.stack import StackEngine

app = typer.Typer(help="ARIEL Airflow kit.", pretty_exceptions_enable=False)
local = typer.Typer(help="Run the team's DAGs on a real local Airflow.", no_args_is_help=True)
app.add_typer(local, name="local")
platform_app = typer.Typer(help="The platform's side: the team registry and the chart.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")
platform_app.add_typer(cluster_app, name="cluster")
secrets_app = typer.Typer(help="The team's secrets: names, Key Vault, local files.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
secrets_local = typer.Typer(help="The git-ignored local secret files (.local/).", no_args_is_help=True)
secrets_app.add_typer(secrets_local, name="local")
out = Console(highlight=False, soft_wrap=True)


class ReportFormat(StrEnum):
    """Formats of `ariel check`'s report."""

    TEXT = "text"
    JSON = "json"
    JUNIT = "junit"


TeamRepoOption = Annotated[
    Path,
    typer.Option("--team-repo", help="Root of the team DAG repository.", show_default="current dir"),
]


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the kit's and the installed Airflow's versions.")
    ] = False,
) -> None:
    if version:
        out.print(version_text())
    elif ctx.invoked_subcommand is None:
        out.print(ctx.get_help())


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Root of the team repository.")] = Path("."),
    output: Annotated[ReportFormat, typer.Option("--format", help="Report format.")] = ReportFormat.TEXT,
    select: Annotated[
        str | None, typer.Option(help="Only these rules (ids or names, comma-separated).")
    ] = None,
    ignore: Annotated[
        str | None, typer.Option(help="Skip these rules (ids or names, comma-separated).")
    ] = None,
) -> None:
    """Check a team repository against the platform rules (exit 1 on errors, 2 if the check cannot run)."""
    from ariel_airflow.checks import report
    from ariel_airflow.checks.runner import parse_rule_list, run_check

    formats = {
        ReportFormat.TEXT: report.as_text,
        ReportFormat.JSON: report.as_json,
        ReportFormat.JUNIT: report.as_junit,
    }
    result = run_check(
        path, select=parse_rule_list(select, "--select"), ignore=parse_rule_list(ignore, "--ignore")
    )
    print(formats[output](result, path))
    raise typer.Exit(result.exit_code)


@app.command("capacity")
def capacity(
    environment: Annotated[str, typer.Argument(metavar="ENV", help="dev, test or prod.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    request: Annotated[
        list[str] | None,
        typer.Option(help="Also size pods requesting this, e.g. cpu=500m,memory=1Gi (repeatable)."),
    ] = None,
    platform_dir: Annotated[
        Path, typer.Option(help="The platform folder (environments/, resource_profiles.yaml).")
    ] = KIT_ROOT / "platform",
) -> None:
    """How many tasks of each resource profile run at once on ENV's task pool, what binds, and whether
    the teams' quotas over-commit it."""
    from ariel_airflow.cluster.capacity import capacity, parse_request
    from ariel_airflow.cluster.environments import load_environment
    from ariel_airflow.cluster.pools import pools_report
    from ariel_airflow.cluster.registry import load_registry
    from ariel_airflow.cluster.render import effective_values
    from ariel_airflow.profiles import load_profiles

    env = load_environment(environment, platform_dir)
    extra = {text: parse_request(text) for text in request or ()}
    catalog = load_profiles(platform_dir / "resource_profiles.yaml")
    registry = load_registry(platform_dir)
    quotas = {name: entry.quota.amount for name, entry in registry.items()}
    report = capacity(env, catalog, requests=extra, quotas=quotas)
    team_pools = pools_report(env, registry, effective_values(env, registry, platform_dir), catalog)
    if as_json:
        print(json.dumps({**report.as_dict(), "team_pools": team_pools}, indent=2))
        return
    pools = Table(
        title=f"{report.environment}: node pools (Kubernetes {report.kubernetes_version}), per node"
    )
    pools.add_column("pool", no_wrap=True)  # names are never cut
    pools.add_column("VM size", no_wrap=True)
    for column in ("nodes", "capacity", "kubelet + eviction", "daemonsets", "free for Airflow"):
        pools.add_column(column)
    for node in report.nodes:
        reserved = node.kube_reserved.memory + node.eviction_threshold
        pools.add_row(
            node.pool,
            node.vm_size,
            str(node.count),
            _amount(node.capacity),
            f"{node.kube_reserved.cpu}m, {_mib(reserved)}",
            _amount(node.daemonsets),
            _amount(node.free),
        )
    tasks = Table(title="tasks at once on the task pool")
    tasks.add_column("profile", no_wrap=True)
    for column in ("requests", "per node by cpu / memory / pods", "nodes", "at once", "binds"):
        tasks.add_column(column)
    for fit in report.fits:
        per_node = " / ".join(str(fit.per_node[r]) for r in ("cpu", "memory", "pods"))
        tasks.add_row(
            fit.name,
            f"{fit.request.cpu}m, {_mib(fit.request.memory)}",
            per_node,
            str(fit.nodes),
            f"[bold]{fit.at_once}[/]",
            " and ".join(fit.binds),
        )
    out.print(pools)
    out.print(tasks)
    if report.quotas is not None:
        out.print(_quota_table(report.quotas))
    _print_pools(team_pools)


def _quota_table(use: Any) -> Table:
    table = Table(title="team quotas (requests) against the task pool")
    table.add_column("team", no_wrap=True)
    table.add_column("quota")
    for name, amount in use.teams.items():
        table.add_row(name, _amount(amount))
    table.add_row("[bold]all teams[/]", _amount(use.total))
    table.add_row("task pool, free", _amount(use.pool))
    over = use.over_committed
    table.caption = (
        f"over-committed: {' and '.join(over)}; a team within its quota may still wait for room"
        if over
        else "not over-committed: every team can use its whole quota at once"
    )
    return table


def _print_pools(report: dict[str, Any]) -> None:
    """The teams' Airflow pools (sized from their quotas) against the schedulers' slots."""
    table = Table(
        title=f"team pools: {report['pool_slots']} slots of {report['scheduler_slots']} "
        f"({report['parallelism']} parallelism x {report['scheduler_replicas']} schedulers)"
    )
    for column in ("team", "pool", "slots", "largest profile", "binds"):
        table.add_column(column, no_wrap=column in ("team", "pool"))
    for pool in report["teams"]:
        binds = ", ".join(pool["binds"])
        table.add_row(pool["team"], pool["name"], f"[bold]{pool['slots']}[/]", pool["largest_profile"], binds)
    out.print(table)
    for finding in report["findings"]:
        err_console.print(f"[yellow]pools:[/] {finding}")


def _mib(memory: int) -> str:
    return f"{memory / 2**20:.0f}Mi"


def _amount(amount: Any) -> str:
    return f"{amount.cpu}m, {_mib(amount.memory)}, {amount.pods} pods"


@local.command("up")
def local_up(
    team_repo: TeamRepoOption = Path("."),
    engine: Annotated[
        Engine, typer.Option(help="auto: Docker when a daemon answers, else native.")
    ] = Engine.AUTO,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once healthy.")] = False,
    port: Annotated[int, typer.Option(help="Port of the UI and REST API.")] = DEFAULT_UI_PORT,
    parallelism: Annotated[
        int, typer.Option(min=1, max=32, help="Task slots of the LocalExecutor.")
    ] = DEFAULT_PARALLELISM,
    timeout: Annotated[
        int | None,
        typer.Option(
            min=10, help="Seconds each service may take to become healthy [default: 240 for Airflow's]."
        ),
    ] = None,
) -> None:
    """Start Postgres, PgBouncer and Airflow for the team repository."""
    repo = TeamRepo.load(team_repo)
    from ariel_airflow.localdev.engines import engine_for_up

    stack, why_not_docker = engine_for_up(repo, engine)
    stack.start_timeout = timeout
    progress = Progress()
    progress.info(f"team {repo.team.name!r} at {repo.root} ({stack.name} engine)")
    if why_not_docker:
        progress.info(f"not the docker engine: {why_not_docker}")
    _stop_on_sigterm()
    state = stack.up(ui_port=port, parallelism=parallelism, progress=progress, supervise=detach)
    err_console.print(
        f"\n[bold green]Airflow is up[/] in {progress.elapsed():.0f}s: "
        f"[bold]http://127.0.0.1:{state.ui_port}[/]  login [bold]{ADMIN_USER}[/] / [bold]{ADMIN_PASSWORD}[/]"
    )
    if detach:
        err_console.print("Stop it with `ariel local down`; logs: `ariel local logs -f`.")
        return
    err_console.print("Press Ctrl-C to stop.")
    try:
        died = stack.watch(state)
    except KeyboardInterrupt:
        err_console.print("\nstopping…")
        stack.down(purge=False, progress=progress)
        return
    progress.failed(f"{died} stopped unexpectedly; stopping the stack (see `ariel local logs {died}`)")
    stack.down(purge=False, progress=progress)
    raise typer.Exit(1)


@local.command("down")
def local_down(
    team_repo: TeamRepoOption = Path("."),
    purge: Annotated[bool, typer.Option(help="Also delete the metadata database and all state.")] = False,
) -> None:
    """Stop the stack (the metadata database is kept unless --purge)."""
    repo = TeamRepo.load(team_repo)
    stopped = engine_of(repo).down(purge=purge, progress=Progress())
    err_console.print(
        ("stopped " + ", ".join(stopped) if stopped else "nothing was running")
        + ("; state and database removed" if purge else "")
    )


STATUS_HELP = (
    "Services, health, ports and DAG import errors; when stopped, since when and whether the database "
    "is kept.\n\nExit codes: "
    + "; ".join(f"{code.value} {code.meaning}" for code in StatusCode)
    + "; 2 an error you can fix (the message says how)."
)


@local.command("status", help=STATUS_HELP)
def local_status(
    team_repo: TeamRepoOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    status = engine_of(TeamRepo.load(team_repo)).status()
    if as_json:
        print(json.dumps(status, indent=2))
    elif status["running"]:
        _print_status(status)
    else:
        _print_stopped(status)
    raise typer.Exit(status_code(status))


@local.command("logs")
def local_logs(
    service: Annotated[str | None, typer.Argument(help="One service; all when omitted.")] = None,
    team_repo: TeamRepoOption = Path("."),
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines of history to show.")] = 100,
) -> None:
    """Show (and follow) the services' logs."""
    with contextlib.suppress(KeyboardInterrupt):
        engine_of(TeamRepo.load(team_repo)).logs(service, lines, follow, out.out)


@local.command("trigger")
def local_trigger(
    dag_id: str,
    team_repo: TeamRepoOption = Path("."),
    conf: Annotated[str, typer.Option(help="Run configuration as a JSON object.")] = "{}",
    wait: Annotated[bool, typer.Option(help="Wait for the run to finish; exit 1 if it fails.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait (for a new DAG file to be parsed, and for the run).")
    ] = 600,
    allow_over_limit: Annotated[
        bool, typer.Option(help="With --wait: exit 0 even if a task used more memory than its pod's limit.")
    ] = False,
) -> None:
    """Trigger a DAG run through the REST API (unpausing the DAG); with --wait, what each task used
    against its pod's requests and limits (exit 1 when one would be OOM-killed)."""
    try:
        run_conf = json.loads(conf)
    except json.JSONDecodeError as exc:
        run_conf = exc
    if not isinstance(run_conf, dict):
        raise UserError(
            f"must be a JSON object, got {conf!r}",
            where="--conf",
            fix="""pass an object, e.g. '{"key": 1}'""",
        )
    repo = TeamRepo.load(team_repo)
    stack = engine_of(repo)
    with stack.client() as client:
        stack.find_dag(client, dag_id, timeout)
        run_id = client.trigger(dag_id, run_conf)
        err_console.print(f"triggered {dag_id} run {run_id}")
        if not wait:
            print(run_id)
            return
        result = client.wait_for_run(dag_id, run_id, timeout)
        oom = _print_run_usage(repo, stack, client, dag_id, run_id)
        if oom and not allow_over_limit:
            err_console.print(
                f"[red]✘[/] {', '.join(oom)} used more memory than the pod's limit: on the platform the "
                "pod would be OOM-killed. Pick a bigger profile (`ariel local usage` suggests one), "
                "or pass --allow-over-limit"
            )
        if result.state == "success":
            err_console.print(f"[green]✔[/] {dag_id} {run_id} succeeded")
            if oom and not allow_over_limit:
                raise typer.Exit(1)
            return
        err_console.print(f"[red]✘[/] {dag_id} {run_id} ended {result.state}")
        for ti in result.failed_tasks:
            err_console.print(f"\n[bold]task {ti['task_id']}[/] ({ti['state']}), last log lines:")
            if ti.get("try_number"):
                log = client.task_log(
                    dag_id, run_id, ti["task_id"], ti["try_number"], ti.get("map_index", -1)
                )
                err_console.print("\n".join(log.splitlines()[-30:]), markup=False)
        raise typer.Exit(1)


def _print_run_usage(repo: TeamRepo, stack: StackEngine, client: Any, dag_id: str, run_id: str) -> list[str]:
    """The run's table of task usage against the pods; the tasks that would be OOM-killed."""
    from ariel_airflow.localdev.usage import run_usage

    ended = [
        (ti["task_id"], ti.get("map_index", -1))
        for ti in client.task_instances(dag_id, run_id)
        if ti["state"] in {"success", "failed", "up_for_retry"}
    ]
    tasks = run_usage(stack.host_airflow_home(), dag_id, run_id, ended, repo.profiles)
    if not tasks:
        err_console.print("no task usage was recorded (restart the stack to install the recorder)")
        return []
    table = Table("task", "peak memory", "CPU s", "profile", "requests", "limits", "verdict", box=None)
    for task in tasks:
        colour = {"fits": "green", "over the limit": "red"}.get(task.verdict.value, "yellow")
        table.add_row(
            task.task_id + (f"[{task.map_index}]" if task.map_index >= 0 else ""),
            _mib(task.peak_memory_bytes),
            f"{task.cpu_s:.1f}",
            task.profile or "(custom)",
            _resources(task.requests),
            _resources(task.limits),
            Text(task.reason(), style=colour),
        )
    err_console.print(table)
    return [task.task_id for task in tasks if task.oom_killed]


def _resources(amounts: dict[str, str]) -> str:
    return ", ".join(f"{amounts[k]}" for k in ("cpu", "memory") if k in amounts) or "-"


@local.command("usage")
def local_usage(
    dag_id: Annotated[str | None, typer.Argument(help="One DAG; all when omitted.")] = None,
    team_repo: TeamRepoOption = Path("."),
    runs: Annotated[int, typer.Option(min=1, help="Recent runs of each DAG to look at.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What each task used in recent local runs against its pod, and the smallest profile that fits."""
    from ariel_airflow.cluster.render import PLATFORM_DIR
    from ariel_airflow.localdev.usage import HEADROOM, read_records, recent_runs, summary
    from ariel_airflow.profiles import load_profiles
    from ariel_airflow.team import PROFILES_FILE

    repo = TeamRepo.load(team_repo)
    records = recent_runs(read_records([engine_of(repo).host_airflow_home()]), dag_id, runs)
    rows = summary(records, repo.profiles, load_profiles(PLATFORM_DIR / PROFILES_FILE))
    if as_json:
        print(json.dumps({"headroom": float(HEADROOM), "tasks": rows}, indent=2))
        return
    if not rows:
        err_console.print(
            f"no task usage recorded{' for ' + dag_id if dag_id else ''}: run a DAG with "
            "`ariel local trigger DAG_ID --wait`"
        )
        return
    table = Table(box=None)
    for column in ("dag", "task", "runs", "peak memory", "cores", "profile", "verdict", "suggested"):
        table.add_column(column, overflow="fold")  # ids whole, if on two lines
    for row in rows:
        worst, suggestion = row["worst"], row["suggestion"]
        suggested = suggestion["profile"] or "none is big enough: ask the platform team"
        if suggestion["source"] == "platform" and suggestion["profile"]:
            suggested += " (not the team's yet: add it with `copier update`)"
        table.add_row(
            row["dag_id"],
            row["task_id"],
            str(row["runs"]),
            _mib(worst["peak_memory_bytes"]),
            f"{row['max_cores']:.2f}" if row["max_cores"] is not None else "-",
            worst["profile"] or "(custom)",
            row["verdict"],
            suggested,
        )
    out.print(table)
    err_console.print(f"suggested: the smallest profile whose requests cover the peak x {HEADROOM}")


@platform_app.command("registry-entry")
def platform_registry_entry(
    client_id: Annotated[
        str, typer.Option(help="Client id of the team's managed identity (the platform team creates it).")
    ],
    team_repo: TeamRepoOption = Path("."),
    repository_url: Annotated[
        str | None, typer.Option(help="URL the platform clones.", show_default="the `origin` remote")
    ] = None,
    ref: Annotated[str, typer.Option(help="Branch or tag the platform deploys.")] = "main",
) -> None:
    """Print this team's entry of the platform's registry (platform/teams/<team>.yaml)."""
    import yaml

    from ariel_airflow.cluster.registry import entry_for_repo

    repo = TeamRepo.load(team_repo)
    entry = entry_for_repo(repo, repository_url=repository_url, ref=ref, client_id=client_id)
    err_console.print(f"# save as platform/teams/{repo.team.name}.yaml in the platform repository")
    print(yaml.safe_dump(entry, sort_keys=False), end="")


ChartOption = Annotated[
    str | None,
    typer.Option(
        help="The official Airflow chart: a folder, a .tgz or an oci:// reference.",
        show_default="$ARIEL_AIRFLOW_CHART, else the environment file's chart, pulled once into a cache",
    ),
]


@platform_app.command("render")
def platform_render(
    environment: Annotated[str, typer.Argument(metavar="ENV", help="dev, test or prod.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write values and manifests into.")],
    chart: ChartOption = None,
    platform_dir: Annotated[
        Path | None, typer.Option(help="The platform folder.", show_default="the kit's platform/")
    ] = None,
) -> None:
    """Render the official chart with ENV's values, and each team's namespace objects, into --out."""
    from ariel_airflow.cluster.render import PLATFORM_DIR, render

    done = render(environment, out_dir, chart=chart, platform_dir=platform_dir or PLATFORM_DIR)
    print(f"{done.release}/  (the release: helm upgrade --install airflow {done.release} -n airflow)")
    print(f"{done.values}  (effective values of the official chart, for review)")
    print(f"{done.out / 'chart'}/  ({len(done.chart_objects)} chart objects)")
    for team, paths in done.team_objects.items():
        print(f"{done.out / 'teams' / team}/  ({len(paths)} objects of team {team})")
    print(f"{done.out / 'image'}/  (the Airflow image: {done.image_build})")


@platform_app.command("identities")
def platform_identities(
    environment: Annotated[str, typer.Argument(metavar="ENV", help="dev, test or prod.")],
    chart: ChartOption = None,
    platform_dir: Annotated[
        Path | None, typer.Option(help="The platform folder.", show_default="the kit's platform/")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What workload identity needs on Azure for ENV: each annotated service account's federated
    credential, the role assignments, the database role."""
    from ariel_airflow.cluster.identities import FEDERATION_AUDIENCE, identities
    from ariel_airflow.cluster.render import PLATFORM_DIR, render_in_memory

    found = identities(render_in_memory(environment, chart=chart, platform_dir=platform_dir or PLATFORM_DIR))
    if as_json:
        print(json.dumps(found, indent=2))
        return
    print(f"# federated identity credentials (audience {FEDERATION_AUDIENCE})")
    for credential in found["federated_credentials"]:
        print(f"{credential['client_id']}  {credential['subject']}  issuer {credential['issuer']}")
    print("# role assignments")
    for role in found["role_assignments"]:
        condition = f"  if {role['condition']}" if "condition" in role else ""
        print(f"{role['client_id']}  {role['role']}  on {role['scope']}{condition}")
    print("# the platform identity's database role (as the server's Entra administrator)")
    print("\n".join(found["database"]))


@platform_app.command("bootstrap-secrets")
def platform_bootstrap_secrets(
    kubeconfig: Annotated[
        str | None, typer.Option(help="The cluster's kubeconfig.", show_default="$KUBECONFIG, ~/.kube/config")
    ] = None,
    namespace: Annotated[str, typer.Option(help="The release's namespace.")] = "airflow",
) -> None:
    """Create the Secrets the chart's values name (fernet key, JWT secret, API and webserver secret
    keys) where they are missing; existing ones are kept. Run once per cluster, before the first install."""
    from ariel_airflow.cluster.platform_secrets import bootstrap

    for name, what in bootstrap(kubeconfig, namespace).items():
        print(f"{what:>8}  secret/{name} in {namespace}")


@platform_app.command("validate")
def platform_validate(
    environment: Annotated[str, typer.Argument(metavar="ENV", help="dev, test or prod.")],
    rendered: Annotated[
        Path | None,
        typer.Option(
            help="Validate the files `render --out DIR` wrote here.", show_default="render in memory"
        ),
    ] = None,
    team_repo: Annotated[
        list[Path] | None,
        typer.Option("--team-repo", help="Also check this team repository's pod templates (repeatable)."),
    ] = None,
    chart: ChartOption = None,
    platform_dir: Annotated[
        Path | None, typer.Option(help="The platform folder.", show_default="the kit's platform/")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check ENV's values, objects and cross-checks before they reach the cluster (exit 1 on findings)."""
    from ariel_airflow.cluster.render import PLATFORM_DIR
    from ariel_airflow.cluster.validate import validate

    report = validate(
        environment,
        rendered=rendered,
        team_repos=team_repo or (),
        chart=chart,
        platform_dir=platform_dir or PLATFORM_DIR,
    )
    print(json.dumps(report.as_dict(), indent=2) if as_json else report.text())
    raise typer.Exit(0 if report.ok else 1)


class PushSource(StrEnum):
    """Where `ariel secrets push` takes the values from."""

    LOCAL = "local"
    ENV = "env"


@secrets_app.command("verify")
def secrets_verify(
    environment: Annotated[str, typer.Argument(metavar="ENV", help="dev, test or prod.")],
    team_repo: TeamRepoOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check that each declared secret exists and is enabled in the team's Key Vault for ENV.

    Reads names and properties only, never values. Exit 1 when one is missing or disabled.
    """
    from ariel_airflow.keyvault import to_json, verify

    report = verify(TeamRepo.load(team_repo), environment)
    if as_json:
        print(to_json(report))
    else:
        out.print(f"{report.declared} declared secrets, {environment} vault {report.vault_url}")
        for label, findings in (
            ("[green]present[/]   ", report.present),
            ("[red]missing[/]   ", report.missing),
            ("[red]disabled[/]  ", report.disabled),
        ):
            for f in findings:
                out.print(f"  {label} {f.name}  ({f.kind} {f.id})")
        for f in report.unexpected:
            out.print(f"  [yellow]unexpected[/] {f.name}  (under the team's prefix, not in secrets.yaml)")
        if not report.ok:
            err_console.print(
                "[red]✘[/] create or enable the missing and disabled secrets before deploying "
                f"(`ariel secrets push {environment}` where the platform allows it)"
            )
    raise typer.Exit(0 if report.ok else 1)


@secrets_app.command("push")
def secrets_push(
    environment: Annotated[
        str, typer.Argument(metavar="ENV", help="dev or test (where the platform allows it).")
    ],
    source: Annotated[
        PushSource,
        typer.Option(
            "--from",
            help="local: the .local/ files; env: environment variables AIRFLOW_CONN_<ID> and "
            "AIRFLOW_VAR_<ID> (CI variables).",
        ),
    ] = PushSource.LOCAL,
    team_repo: TeamRepoOption = Path("."),
    platform_dir: Annotated[
        Path | None, typer.Option(help="The platform folder.", show_default="the kit's platform/")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Write the declared secrets' values into the team's Key Vault for ENV (dev, test).

    Only where the platform's environment file sets allow_secret_push. Values are never printed.
    Exit 1 when one was not written.
    """
    from ariel_airflow.cluster.render import PLATFORM_DIR
    from ariel_airflow.keyvault import env_var_name, push, to_json

    repo = TeamRepo.load(team_repo)
    report = push(repo, environment, platform_dir or PLATFORM_DIR, source=source.value)
    if as_json:
        print(to_json(report))
    else:
        out.print(f"{environment} vault {report.vault_url}, values from {source.value}")
        for f in report.written:
            out.print(f"  [green]written[/]     {f.name}  ({f.kind} {f.id})")
        for name, why in report.failed.items():
            out.print(f"  [red]not written[/] {name}: {escape(why)}")
        for f in report.no_value:
            where = (
                env_var_name(f.kind, f.id)
                if source is PushSource.ENV
                else repo.connections_file
                if f.kind == "connection"
                else repo.variables_file
            )
            out.print(f"  [red]not written[/] {f.name}  (no value for {f.kind} {f.id} in {where})")
    raise typer.Exit(0 if report.ok else 1)


@secrets_app.command("names")
def secrets_names(
    environment: Annotated[
        str | None,
        typer.Argument(metavar="[ENV]", help="One environment; all with a Key Vault when omitted."),
    ] = None,
    team_repo: TeamRepoOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each declared connection and variable: its Key Vault secret name per environment, its local key."""
    from ariel_airflow.secret_names import declared_secrets_in

    repo = TeamRepo.load(team_repo)
    environments, secrets = declared_secrets_in(repo, environment)
    if as_json:
        print(json.dumps([dataclasses.asdict(s) for s in secrets], indent=2))
        return
    for secret in secrets:
        out.print(f"{secret.kind} [bold]{escape(secret.id)}[/]  (local key: {escape(secret.local_key)})")
        for env in environments:
            out.print(f"  {env:<6} {secret.vault_names[env]}")


@secrets_local.command("init")
def secrets_local_init(team_repo: TeamRepoOption = Path(".")) -> None:
    """Add each declared secret missing from .local/*.yaml, with a placeholder; never overwrite a value."""
    from ariel_airflow.local_secret_files import init_local_files

    repo = TeamRepo.load(team_repo)
    added = init_local_files(repo)
    for path, ids in added.items():
        out.print(f"{path.relative_to(repo.root)}: added {', '.join(ids)} (fill in the placeholders)")
    if not added:
        out.print("every declared secret has a local entry")


@secrets_local.command("check")
def secrets_local_check(team_repo: TeamRepoOption = Path(".")) -> None:
    """Report missing entries, placeholders and unparsable connections in .local/*.yaml; exit 1 on any."""
    from ariel_airflow.local_secret_files import check_local_files

    repo = TeamRepo.load(team_repo)
    findings = check_local_files(repo)
    for finding in findings:
        print(finding.describe(repo.root))
    if findings:
        raise typer.Exit(1)
    out.print("the local secret files hold every declared secret")


def _print_status(status: dict[str, Any]) -> None:
    table = Table(title=f"{status['team']} ({status['engine']}) {status['url']}")
    for column in ("service", "health", "pid", "port", "restarts", "last exit"):
        table.add_column(column)
    colours = {"healthy": "green", "unhealthy": "yellow", "restarting": "yellow", "stopped": "red"}
    for row in status["services"]:
        health = f"[{colours[row['health']]}]{row['health']}[/]"
        cells = (row["pid"], row["port"], row.get("restarts"), row.get("last_exit"))
        table.add_row(row["service"], health, *(str(cell or "-") for cell in cells))
    out.print(table)
    errors = status["import_errors"]
    if errors is None:
        out.print("DAG import errors: unknown (the api-server does not answer)")
    elif not errors:
        out.print("DAG import errors: none")
    else:
        out.print(f"[red]DAG import errors: {len(errors)}[/]")
        for error in errors:
            out.print(f"[bold]{error['file']}[/]", highlight=False)
            out.print(error["error"].rstrip(), markup=False)


def _print_stopped(status: dict[str, Any]) -> None:
    if status["started_at"] is None:
        out.print(
            f"The local stack of team {status['team']!r} is not running (never started here, or purged)."
        )
    elif status["stopped_cleanly"]:
        out.print(
            f"The local stack of team {status['team']!r} is not running: stopped with `ariel local down` "
            f"{_ago(status['stopped_at'])}."
        )
    else:
        out.print(
            f"The local stack of team {status['team']!r} is not running: it stopped without "
            "`ariel local down` (a crash, or a restart of the machine); "
            f"it was last started {_ago(status['started_at'])}."
        )
    if status["database_kept"]:
        out.print(
            f"Its metadata database is kept ({status['database']}): `ariel local up` starts it again with "
            "its DAG runs; `ariel local down --purge` deletes it."
        )
    else:
        out.print("No metadata database is kept. Start a new stack with `ariel local up`.")


def _ago(moment: str) -> str:
    when = datetime.fromisoformat(moment).astimezone()
    minutes = (datetime.now(UTC) - when).total_seconds() / 60
    since = (
        "less than a minute"
        if minutes < 1
        else f"{minutes:.0f} min"
        if minutes < 120
        else f"{minutes / 60:.0f} h"
        if minutes < 2880
        else f"{minutes / 1440:.0f} days"
    )
    return f"{when:%Y-%m-%d %H:%M:%S} ({since} ago)"


def engine_of(repo: TeamRepo) -> StackEngine:
    """The engine of the repository's stack, imported only by the commands that need one."""
    from ariel_airflow.localdev.engines import engine_of as find_engine

    return find_engine(repo)


def _stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C so the stack is stopped cleanly either way."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def main() -> None:
    try:
        app()
    except UserError as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        sys.exit(2)
