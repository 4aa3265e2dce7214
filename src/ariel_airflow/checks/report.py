"""Check results for people (text grouped by file), machines (JSON) and CI annotations (JUnit XML)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from itertools import groupby
from pathlib import Path

from ariel_airflow.checks.runner import CheckResult
from ariel_airflow.rules.base import RULES


def as_text(result: CheckResult, root: Path) -> str:
    lines = []
    for file, group in groupby(result.findings, key=lambda f: f.file or ""):
        lines.append(_relative(file, root) or "(repository)")
        for f in group:
            where = f"{f.line}:" if f.line else ""
            subject = ".".join(p for p in (f.dag_id, f.task_id) if p)
            subject = f" [{subject}]" if subject else ""
            lines.append(f"  {where:>5} {f.severity:<7} {f.rule} {RULES[f.rule].name}{subject}: {f.message}")
    errors, warnings = len(result.errors), len(result.findings) - len(result.errors)
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)


def as_json(result: CheckResult, root: Path) -> str:
    return json.dumps([{**f.to_dict(), "file": _relative(f.file, root)} for f in result.findings], indent=2)


def as_junit(result: CheckResult, root: Path) -> str:
    suite = ET.Element(
        "testsuite",
        name="ariel check",
        tests=str(max(1, len(result.findings))),
        failures=str(len(result.errors)),
    )
    if not result.findings:
        ET.SubElement(suite, "testcase", classname="ariel", name="all rules")
    for f in result.findings:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_relative(f.file, root) or "repository",
            name=f"{f.rule} {RULES[f.rule].name} {f.dag_id or ''} {f.task_id or ''}".strip(),
            file=_relative(f.file, root) or "",
            line=str(f.line or 0),
        )
        tag = "failure" if f.severity == "error" else "system-out"
        node = ET.SubElement(case, tag, message=f.message) if tag == "failure" else ET.SubElement(case, tag)
        node.text = f"{_relative(f.file, root)}:{f.line or 0}: {f.rule} {f.message}"
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)


def _relative(file: str | None, root: Path) -> str | None:
    if not file:
        return None
    try:
        return str(Path(file).resolve().relative_to(root.resolve()))
    except ValueError:
        return file
