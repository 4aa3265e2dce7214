"""The team's git-ignored local secret files (.local/*.yaml, read by LocalFilesystemBackend), kept in
step with secrets.yaml: `ariel secrets local init` adds what is missing, `check` reports what is not
ready. Values are never printed: findings name the file, the line and the id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow.errors import UserError
from ariel_airflow.team import SECRETS_FILE, Declared, TeamRepo

PLACEHOLDER = "REPLACE-ME"  # what `init` writes and `check` refuses; a valid value, so the stack still starts
INIT_COMMAND = "ariel secrets local init"
HEADER = "# Local values of the {kind} declared in secrets.yaml (git-ignored; read by `ariel local`).\n"
NEW_FILE_MODE = 0o600  # secrets: readable by their owner only


@dataclass(frozen=True)
class LocalFile:
    kind: str  # "connection" or "variable"
    path: Path
    declared: dict[str, Declared]


@dataclass(frozen=True)
class LocalFinding:
    file: Path
    line: int | None
    message: str

    def describe(self, root: Path) -> str:
        """``file:line: message``, the file relative to ``root`` (the repository)."""
        file = self.file.relative_to(root) if self.file.is_relative_to(root) else self.file
        return f"{file}:{self.line}: {self.message}" if self.line else f"{file}: {self.message}"


def local_files(repo: TeamRepo) -> list[LocalFile]:
    return [
        LocalFile("connection", repo.connections_file, repo.secrets.connections),
        LocalFile("variable", repo.variables_file, repo.secrets.variables),
    ]


def init_local_files(repo: TeamRepo) -> dict[Path, list[str]]:
    """Add an entry with a placeholder for each declared id a local file lacks; never change an
    existing entry. Returns the ids added, by file."""
    added = {}
    for local in local_files(repo):
        text = local.path.read_text() if local.path.is_file() else HEADER.format(kind=f"{local.kind}s")
        root = _compose(text, local.path)
        if root is None or (isinstance(root, yaml.MappingNode) and not root.value):
            # Empty, or an empty `{}`: drop the `{}` so entries can follow one per line.
            if root is not None:
                text = text[: root.start_mark.index] + text[root.end_mark.index :]
            present: set[str] = set()
        elif isinstance(root, yaml.MappingNode) and not root.flow_style:
            present = {key.value for key, _ in root.value}
        else:
            raise UserError(
                "must be a block mapping (one `id: value` per line) to add entries to",
                where=str(local.path),
                fix="rewrite it with one entry per line, then run `ariel secrets local init` again",
            )
        missing = [id for id in local.declared if id not in present]
        if not missing:
            continue
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(_entry(local.kind, id, local.declared[id]) for id in missing)
        _write_atomically(local.path, text)
        added[local.path] = missing
    return added


def check_local_files(repo: TeamRepo) -> list[LocalFinding]:
    """What keeps the local files from serving the declared secrets: a missing file or entry, a
    placeholder still in place, a connection Airflow cannot parse."""
    findings: list[LocalFinding] = []
    for local in local_files(repo):
        if not local.path.is_file():
            findings.append(LocalFinding(local.path, None, f"file is missing: run `{INIT_COMMAND}`"))
            continue
        text = local.path.read_text()
        try:
            root = _compose(text, local.path)
        except _NotYaml as exc:
            findings.append(LocalFinding(local.path, exc.line, f"not valid YAML: {exc.problem}"))
            continue
        if root is not None and not isinstance(root, yaml.MappingNode):
            findings.append(LocalFinding(local.path, 1, "must be a YAML mapping of id: value"))
            continue
        lines = {key.value: key.start_mark.line + 1 for key, _ in (root.value if root else [])}
        values = yaml.safe_load(text) or {}
        for id in local.declared:
            if id not in values:
                findings.append(
                    LocalFinding(
                        local.path,
                        None,
                        f"{local.kind} {id!r} is declared in {SECRETS_FILE} but has no entry here: "
                        f"run `{INIT_COMMAND}`, then fill in its value",
                    )
                )
        for id, value in values.items():
            where = (local.path, lines.get(str(id)))
            if _holds_placeholder(value):
                findings.append(
                    LocalFinding(*where, f"{local.kind} {id!r} still holds the placeholder {PLACEHOLDER}")
                )
            elif local.kind == "connection":
                problem = connection_problem(str(id), value)
                if problem:
                    findings.append(LocalFinding(*where, f"connection {id!r} {problem}"))
    return findings


def connection_problem(conn_id: str, value: Any) -> str | None:
    """Why Airflow cannot make a connection of ``value`` (a URI or a mapping of Connection fields),
    parsed as LocalFilesystemBackend does; None when it can."""
    with _airflow_logging_off():
        from airflow.exceptions import AirflowException
        from airflow.secrets.local_filesystem import _create_connection

        try:
            connection = _create_connection(conn_id, dict(value) if isinstance(value, dict) else value)
        except (AirflowException, ValueError, TypeError) as exc:
            return f"does not parse as a connection: {exc}"
    if not connection.conn_type:
        return "has no connection type: write a URI such as postgres://user:password@host:5432/db"
    return None


def _entry(kind: str, id: str, declared: Declared) -> str:
    about = f"{kind}{f' ({declared.type})' if declared.type else ''}"
    if declared.description:
        about += f": {declared.description}"
    if kind == "connection":
        value = f"{declared.type or 'generic'}://{PLACEHOLDER}"
        hint = f"replace {value} with its URI (scheme://login:password@host:port/schema) or a mapping"
    else:
        value, hint = PLACEHOLDER, f"replace {PLACEHOLDER} with its value"
    entry = yaml.safe_dump({id: value}, default_flow_style=False, sort_keys=False, width=10_000)
    return f"# {about}\n# {hint}\n{entry}"


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_placeholder(v) for v in value.values())
    return isinstance(value, str) and PLACEHOLDER in value


def _compose(text: str, path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise _NotYaml(
            path, mark.line + 1 if mark else None, getattr(exc, "problem", None) or str(exc)
        ) from None


class _NotYaml(UserError):
    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        super().__init__(
            f"{f'line {line}: ' if line else ''}not valid YAML: {problem}",
            where=str(path),
            fix="correct the YAML (one `id: value` per line)",
        )
        self.line = line
        self.problem = problem


def _write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file and rename it over ``path``: a reader sees the old file or the
    new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else NEW_FILE_MODE
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _airflow_logging_off() -> Iterator[None]:
    """Airflow warns that no fernet key is set while parsing: true here, and noise to the user."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
