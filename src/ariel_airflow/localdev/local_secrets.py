"""Check the team's local secret files with the parser LocalFilesystemBackend itself uses."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ariel_airflow.errors import UserError

EXAMPLES = {
    "connections": "my_postgres: postgresql://user:password@localhost:5432/mydb",
    "variables": "my_variable: some value",
}


def check_local_secrets(connections_file: Path, variables_file: Path) -> dict[str, int]:
    """Parse both files as the secrets backend will; return how many entries each holds.

    Raises UserError naming the file, the line and the fix when one is missing or malformed.
    """
    from airflow.exceptions import AirflowException, AirflowFileParseException
    from airflow.secrets.local_filesystem import load_connections_dict, load_variables

    counts = {}
    for kind, path, load in (
        ("connections", connections_file, load_connections_dict),
        ("variables", variables_file, load_variables),
    ):
        if not path.is_file():
            raise UserError(
                f"local {kind} file is missing",
                where=str(path),
                fix=f"create it (it is git-ignored) with one entry per line, e.g. `{EXAMPLES[kind]}`",
            )
        try:
            with _airflow_warnings_off():
                counts[kind] = len(load(str(path)))
        except AirflowFileParseException as exc:
            details = "; ".join(
                f"line {e.line_no}: {_one_line(e.message)}" if e.line_no else _one_line(e.message)
                for e in exc.parse_errors
            )
            raise UserError(
                f"cannot parse the local {kind} file: {details}",
                where=str(path),
                fix=f"write a YAML mapping, e.g. `{EXAMPLES[kind]}`",
            ) from None
        except (AirflowException, TypeError, ValueError) as exc:
            raise UserError(
                f"invalid local {kind} file: {exc}",
                where=str(path),
                fix=f"write a YAML mapping, e.g. `{EXAMPLES[kind]}`",
            ) from None
    return counts


def local_secret_values(connections_file: Path, variables_file: Path) -> dict[str, dict[str, str]]:
    """The local values as a secrets backend stores them, by kind and id: a connection in Airflow's
    JSON form (``Connection.as_json``, which keeps extras), a variable as text (JSON if not a string).

    The files are checked first, so a malformed one fails with the same message as ``ariel local``.
    """
    check_local_secrets(connections_file, variables_file)
    from airflow.secrets.local_filesystem import load_connections_dict, load_variables

    with _airflow_warnings_off():
        connections = load_connections_dict(str(connections_file))
        variables = load_variables(str(variables_file))
    return {
        "connections": {conn_id: conn.as_json() for conn_id, conn in connections.items()},
        "variables": {
            key: value if isinstance(value, str) else json.dumps(value) for key, value in variables.items()
        },
    }


@contextlib.contextmanager
def _airflow_warnings_off() -> Iterator[None]:
    """Parsing warns that no fernet key is set: true here, and noise to the user."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def start_check(connections_file: Path, variables_file: Path) -> subprocess.Popen:
    """Run ``check_local_secrets`` in a child process: the CLI itself never imports Airflow."""
    argv = [
        sys.executable,
        "-m",
        "ariel_airflow.localdev.local_secrets",
        str(connections_file),
        str(variables_file),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_check(checker: subprocess.Popen, timeout: float = 120) -> dict[str, int]:
    """The counts from ``start_check``, or its UserError raised here."""
    try:
        out, err = checker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        checker.kill()
        raise UserError(
            f"checking the local secret files took over {timeout:.0f}s (the machine is busy?)"
        ) from None
    # The reply is the last line: anything Airflow logs to stdout while it loads comes before it.
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        reply = json.loads(last) if last else {"error": f"the check crashed:\n{err}"}
    except ValueError:
        reply = {"error": f"the check answered something else than its report:\n{out}{err}"}
    if "error" in reply:
        raise UserError(reply["error"], where=reply.get("where"), fix=reply.get("fix"))
    return reply


def read_local_values(
    connections_file: Path, variables_file: Path, timeout: float = 120
) -> dict[str, dict[str, str]]:
    """``local_secret_values`` from a child process (the CLI never imports Airflow, whose logging
    setup would write to the CLI's stdout); the values come back through a pipe, never a terminal."""
    argv = [sys.executable, "-m", "ariel_airflow.localdev.local_secrets", "--values"]
    done = subprocess.run(
        [*argv, str(connections_file), str(variables_file)], capture_output=True, text=True, timeout=timeout
    )
    if not done.stdout.strip():
        # Not the child's stderr: a traceback could quote a line of the files, values included.
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"reading the local secret files failed ({last.split(':')[0]})",
            where=f"{connections_file}, {variables_file}",
            fix="check them with `ariel local up`, which names the line at fault",
        )
    reply = json.loads(done.stdout)
    if "error" in reply:
        raise UserError(reply["error"], where=reply.get("where"), fix=reply.get("fix"))
    return reply


if __name__ == "__main__":
    values = sys.argv[1] == "--values"
    files = [Path(arg) for arg in sys.argv[2 if values else 1 :]]
    try:
        print(json.dumps(local_secret_values(*files) if values else check_local_secrets(*files)))
    except UserError as exc:
        print(json.dumps({"error": exc.message, "where": exc.where, "fix": exc.fix}))
        sys.exit(2)
