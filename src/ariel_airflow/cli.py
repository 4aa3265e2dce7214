"""The `ariel` command line: thin wrappers over the library, user errors without tracebacks."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ariel_airflow import __version__
from ariel_airflow.errors import UserError
from ariel_airflow.localdev.engines import engine_for_up, engine_of
from ariel_airflow.localdev.progress import Progress, err_console
from ariel_airflow.localdev.state import DEFAULT_PARALLELISM, DEFAULT_UI_PORT
from ariel_airflow.localdev.team_repo import TeamRepo
from ariel_airflow.localdev.topology import ADMIN_PASSWORD, ADMIN_USER

app = typer.Typer(help="ARIEL Airflow kit.", pretty_exceptions_enable=False)
local = typer.Typer(help="Run the team's DAGs on a real local Airflow.", no_args_is_help=True)
app.add_typer(local, name="local")
out = Console(highlight=False, soft_wrap=True)

TeamRepoOption = Annotated[
    Path,
    typer.Option("--team-repo", help="Root of the team DAG repository.", show_default="current dir"),
]


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the kit version.")] = False,
) -> None:
    if version:
        out.print(__version__)
    elif ctx.invoked_subcommand is None:
        out.print(ctx.get_help())


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Root of the team repository.")] = Path("."),
    output: Annotated[str, typer.Option("--format", help="text, json or junit.")] = "text",
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

    formats = {"text": report.as_text, "json": report.as_json, "junit": report.as_junit}
    if output not in formats:
        raise UserError(f"unknown format {output!r}", where="--format", fix="use text, json or junit")
    result = run_check(
        path, select=parse_rule_list(select, "--select"), ignore=parse_rule_list(ignore, "--ignore")
    )
    print(formats[output](result, path))
    raise typer.Exit(result.exit_code)


@local.command("up")
def local_up(
    team_repo: TeamRepoOption = Path("."),
    engine: Annotated[str, typer.Option(help="auto, native or docker.")] = "auto",
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once healthy.")] = False,
    port: Annotated[int, typer.Option(help="Port of the UI and REST API.")] = DEFAULT_UI_PORT,
    parallelism: Annotated[
        int, typer.Option(min=1, max=32, help="Task slots of the LocalExecutor.")
    ] = DEFAULT_PARALLELISM,
) -> None:
    """Start Postgres, PgBouncer and Airflow for the team repository."""
    if engine not in ("auto", "native", "docker"):
        raise UserError(f"unknown engine {engine!r}", where="--engine", fix="use auto, native or docker")
    repo = TeamRepo.load(team_repo)
    stack, why_not_docker = engine_for_up(repo, engine)  # type: ignore[arg-type]
    progress = Progress()
    progress.info(f"team {repo.team!r} at {repo.root} ({stack.name} engine)")
    if why_not_docker:
        progress.info(f"not the docker engine: {why_not_docker}")
    _stop_on_sigterm()
    state = stack.up(ui_port=port, parallelism=parallelism, progress=progress)
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


@local.command("status")
def local_status(
    team_repo: TeamRepoOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Services, health, ports and DAG import errors."""
    status = engine_of(TeamRepo.load(team_repo)).status()
    if as_json:
        print(json.dumps(status, indent=2))
        return
    _print_status(status)
    if any(row["health"] != "healthy" for row in status["services"]):
        raise typer.Exit(1)


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
        float, typer.Option(help="Seconds to wait (for the DAG to appear and to finish).")
    ] = 600,
) -> None:
    """Trigger a DAG run through the REST API (unpausing the DAG)."""
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
    with engine_of(TeamRepo.load(team_repo)).client() as client:
        client.wait_for_dag(dag_id, timeout)
        run_id = client.trigger(dag_id, run_conf)
        err_console.print(f"triggered {dag_id} run {run_id}")
        if not wait:
            print(run_id)
            return
        result = client.wait_for_run(dag_id, run_id, timeout)
        if result.state == "success":
            err_console.print(f"[green]✔[/] {dag_id} {run_id} succeeded")
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


def _print_status(status: dict[str, Any]) -> None:
    table = Table(title=f"{status['team']} ({status['engine']}) {status['url']}")
    for column in ("service", "health", "pid", "port"):
        table.add_column(column)
    colours = {"healthy": "green", "unhealthy": "yellow", "stopped": "red"}
    for row in status["services"]:
        health = f"[{colours[row['health']]}]{row['health']}[/]"
        table.add_row(row["service"], health, str(row["pid"] or "-"), str(row["port"] or "-"))
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
