"""The secrets rules: every connection and variable a DAG uses is declared in secrets.yaml, and Key
Vault can hold every declared one under the name task pods look it up by.

What a DAG uses is found two ways: in the source (``Connection.get("x")``, ``Variable.get("x")``,
``BaseHook.get_connection("x")``, any ``*conn_id="x"`` argument, ``{{ var.value.x }}`` and
``{{ conn.x }}`` in templates) and on the loaded tasks (their ``*conn_id`` attributes).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow.rules.base import Finding
from ariel_airflow.secret_names import SEP, TEAM_SEP, DeclaredSecret, declared_secrets, name_problem
from ariel_airflow.secret_names import vault_secret_name as secret_name
from ariel_airflow.team import SECRETS_FILE, TeamRepo

CONNECTION_GETTERS = {"get_connection", "get_connection_from_secrets"}
TEMPLATE_VARIABLE = re.compile(r"var\.(?:value|json)\.([A-Za-z0-9_.-]+)")
TEMPLATE_CONNECTION = re.compile(r"\bconn\.([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Use:
    kind: str  # "connections" or "variables"
    key: str
    file: str
    line: int | None


def uses_in_source(source: str, file: str) -> Iterator[Use]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return  # reported as an import error
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _call_name(node.func)
            first = _constant(node.args[0]) if node.args else None
            owner = _owner_name(node.func)
            if first and name == "get" and owner == "Variable":
                yield Use("variables", first, file, node.lineno)
            elif first and ((name == "get" and owner == "Connection") or name in CONNECTION_GETTERS):
                yield Use("connections", first, file, node.lineno)
            for keyword in node.keywords:
                value = _constant(keyword.value)
                if keyword.arg and keyword.arg.endswith("conn_id") and value:
                    yield Use("connections", value, file, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "{{" in node.value:
            for match in TEMPLATE_VARIABLE.finditer(node.value):
                yield Use("variables", match.group(1), file, node.lineno)
            for match in TEMPLATE_CONNECTION.finditer(node.value):
                yield Use("connections", match.group(1), file, node.lineno)


def uses_on_task(task: Any, file: str | None) -> Iterator[Use]:
    for attr, value in vars(task).items():
        if attr.endswith("conn_id") and isinstance(value, str) and value and "{{" not in value:
            yield Use("connections", value, file or "", None)


def check_declared(
    uses: Iterable[Use], declared: dict[str, set[str]], secrets_file: str
) -> Iterator[Finding]:
    seen: dict[tuple[str, str], Use] = {}
    for use in uses:
        seen.setdefault((use.kind, use.key), use)
    for (kind, key), use in sorted(seen.items()):
        if key not in declared[kind]:
            singular = "connection" if kind == "connections" else "variable"
            yield Finding(
                "ARL501",
                f"{singular} {key!r} is not declared: add it under {kind}: in {secrets_file}",
                file=use.file,
                line=use.line,
            )
    for kind, keys in declared.items():
        for key in sorted(keys):
            if (kind, key) not in seen:
                yield Finding(
                    "ARL502", f"{kind[:-1]} {key!r} is declared but no DAG uses it", file=secrets_file
                )


def check_vault_names(repo: TeamRepo) -> Iterator[Finding]:
    """Declarations Key Vault cannot hold: a name it refuses, an id holding the multi-team separator,
    two ids that map to one secret (Key Vault names ignore case, and "_" becomes "-")."""
    file = str(repo.secrets_file)
    lines = _declaration_lines(repo.secrets_file)
    by_name: dict[str, list[DeclaredSecret]] = {}
    for secret in declared_secrets(repo):
        name = secret_name(repo.team, secret.kind, secret.id)
        line = lines.get((secret.kind, secret.id))
        what = f"{secret.kind} {secret.id!r} in {SECRETS_FILE}"
        problem = name_problem(name)
        if problem:
            yield Finding(
                "ARL503",
                f"{what}: its Key Vault secret name {name!r} {problem}; rename it (and its uses in the "
                f"DAGs) to a shorter id of letters, digits, '_' and '-'",
                file=file,
                line=line,
            )
        if TEAM_SEP in secret.id.replace("_", SEP):
            yield Finding(
                "ARL504",
                f"{what} becomes {name!r}, holding {TEAM_SEP!r}, the separator of Airflow's multi-team "
                f"secret names (Airflow refuses to look such ids up); rename it without '--', '__' or '_-'",
                file=file,
                line=line,
            )
        by_name.setdefault(name.casefold(), []).append(secret)
    for clash in (group for group in by_name.values() if len(group) > 1):
        first, *others = clash
        ids = " and ".join(repr(s.id) for s in clash)
        name = secret_name(repo.team, first.kind, first.id)
        for secret in others:
            yield Finding(
                "ARL505",
                f"{first.kind}s {ids} in {SECRETS_FILE} map to the same Key Vault secret {name!r} "
                "(Key Vault ignores case, and '_' becomes '-'); keep one id and rename the other",
                file=file,
                line=lines.get((secret.kind, secret.id)),
            )


def _declaration_lines(path: Path) -> dict[tuple[str, str], int]:
    """The line of each declared id in secrets.yaml, by (kind, id)."""
    lines: dict[tuple[str, str], int] = {}
    root = yaml.compose(path.read_text())
    for section, entries in root.value if isinstance(root, yaml.MappingNode) else ():
        if isinstance(entries, yaml.MappingNode) and section.value in ("connections", "variables"):
            for key, _ in entries.value:
                lines[(section.value[:-1], key.value)] = key.start_mark.line + 1
    return lines


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _owner_name(func: ast.expr) -> str | None:
    return _call_name(func.value) if isinstance(func, ast.Attribute) else None


def _constant(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
