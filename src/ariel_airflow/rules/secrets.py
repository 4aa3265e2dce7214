"""The secrets rule: every connection and variable a DAG uses is declared in secrets.yaml.

What a DAG uses is found two ways: in the source (``Connection.get("x")``, ``Variable.get("x")``,
``BaseHook.get_connection("x")``, any ``*conn_id="x"`` argument, ``{{ var.value.x }}`` and
``{{ conn.x }}`` in templates) and on the loaded tasks (their ``*conn_id`` attributes).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ariel_airflow.rules.base import Finding

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


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _owner_name(func: ast.expr) -> str | None:
    return _call_name(func.value) if isinstance(func, ast.Attribute) else None


def _constant(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
