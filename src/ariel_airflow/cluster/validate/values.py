"""The values: Helm's own check against the chart's ``values.schema.json``, plus the keys that schema
lets through because it does not describe them (``executr:`` at the top level)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ariel_airflow.cluster.render import (
    schema_problems,
)
from ariel_airflow.cluster.validate.findings import Finding

# ---------------------------------------------------------------- the values


def dotted(parts: Iterable[str | int]) -> str:
    """A field path as a reader writes it: ``pgbouncer.maxClientConnn``, ``tolerations[0].key``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def source_of(parts: list[str | int], sources: list[tuple[Path, dict[str, Any]]]) -> Path | None:
    """The last values file that sets ``parts`` (the overlay wins, so it is the one to edit)."""
    for path, data in reversed(sources):
        node: Any = data
        for part in parts:
            found = isinstance(node, dict) and part in node
            if found or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
                node = node[part]
            else:
                break
        else:
            return path
    return None


HELM_PROBLEM = re.compile(r"at '(?P<at>[^']*)': (?P<what>.*)")
ADDITIONAL = re.compile(r"additional propert(?:y|ies) (?P<keys>.+) not allowed")


def helm_schema_findings(
    chart: Any, subject_values: dict[str, Any], sources: list[tuple[Path, dict]]
) -> list[Finding]:
    """Helm's schema check of the merged values, each problem traced to the file that sets it."""
    schema = chart.schema or {}
    findings = []
    for problem in schema_problems(chart, subject_values):
        match = HELM_PROBLEM.match(problem)
        if not match:
            findings.append(Finding("values-schema", problem, source_files(sources), "", _SCHEMA_FIX))
            continue
        parts: list[str | int] = [
            int(p) if p.isdigit() else p.replace("~1", "/").replace("~0", "~")
            for p in match["at"].strip("/").split("/")
            if p
        ]
        extra = ADDITIONAL.fullmatch(match["what"])
        for key in re.findall(r"'([^']*)'", extra["keys"]) if extra else [None]:
            path = [*parts, key] if key is not None else parts
            source = source_of(path, sources)
            fix = _SCHEMA_FIX
            if key is not None:
                fix = _rename_fix(key, _schema_properties(schema, parts))
            findings.append(
                Finding(
                    "values-schema",
                    f"the chart's schema refuses it: {match['what']}",
                    str(source) if source else _computed(sources),
                    dotted(path),
                    fix,
                )
            )
    return findings


_SCHEMA_FIX = (
    "correct the value to what the chart's values.schema.json takes (its values.yaml shows every key)"
)


def source_files(sources: list[tuple[Path, dict]]) -> str:
    return " + ".join(str(path) for path, _ in sources)


def _computed(sources: list[tuple[Path, dict]]) -> str:
    files = source_files(sources)
    return f"computed by `ariel platform render` from the environment and the registry, over {files}"


def _rename_fix(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"{hint}rename or remove `{key}` (the chart's values.yaml lists every key it reads)"


def _resolve(node: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema node as its alternatives: ``$ref`` followed, ``allOf``/``anyOf``/``oneOf`` flattened."""
    if not isinstance(node, dict):
        return []
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _resolve(target, schema)
    branches = [node]
    for combinator in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(combinator, []):
            branches += _resolve(branch, schema)
    return branches


def _schema_at(schema: dict[str, Any], parts: list[str | int]) -> list[dict[str, Any]]:
    nodes = _resolve(schema, schema)
    for part in parts:
        children = []
        for node in nodes:
            if isinstance(part, int):
                children += _resolve(node.get("items"), schema)
            else:
                children += _resolve(node.get("properties", {}).get(part), schema)
                additional = node.get("additionalProperties")
                children += _resolve(additional, schema) if isinstance(additional, dict) else []
        nodes = children
    return nodes


def _schema_properties(schema: dict[str, Any], parts: list[str | int]) -> list[str]:
    return sorted({key for node in _schema_at(schema, parts) for key in node.get("properties", {})})


def _for_objects(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)


def unknown_keys(schema: dict[str, Any], data: Any, parts: list[str | int] | None = None) -> Iterator[list]:
    """Paths in ``data`` where the schema lists the keys of an object but not this one, and still
    lets it through (no ``additionalProperties: false`` there, so Helm says nothing)."""
    parts = parts or []
    nodes = _schema_at(schema, parts)
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield from unknown_keys(schema, item, [*parts, index])
        return
    if not isinstance(data, dict):
        return
    objects = [node for node in nodes if _for_objects(node)]
    described = [node for node in objects if "properties" in node or "patternProperties" in node]
    free = [n for n in objects if n not in described and n.get("additionalProperties") is not False]
    refused = any(node.get("additionalProperties") is False for node in objects)
    for key, value in data.items():
        known = any(key in node.get("properties", {}) for node in described) or any(
            re.search(pattern, str(key))
            for node in described
            for pattern in node.get("patternProperties", {})
        )
        open_ = free or any(isinstance(node.get("additionalProperties"), dict) for node in described)
        if known or open_:
            yield from unknown_keys(schema, value, [*parts, key])
        elif described and not refused:
            yield [*parts, key]


def unknown_key_findings(schema: dict[str, Any], sources: list[tuple[Path, dict[str, Any]]]) -> list[Finding]:
    findings = []
    for path, data in sources:
        for parts in unknown_keys(schema, data):
            findings.append(
                Finding(
                    "unknown-key",
                    f"the chart has no value `{dotted(parts)}`: its schema passes it, the chart ignores it",
                    str(path),
                    dotted(parts),
                    _rename_fix(str(parts[-1]), _schema_properties(schema, parts[:-1])),
                )
            )
    return findings
