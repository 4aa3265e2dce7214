"""Showing and following the services' log files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ariel_airflow.localdev.processes import tail


def show(files: dict[str, Path], lines: int, write: Callable[[str], None]) -> None:
    for name, path in files.items():
        for line in tail(path, lines).splitlines():
            write(f"{name} | {line}" if len(files) > 1 else line)


def follow(files: dict[str, Path], write: Callable[[str], None], poll: float = 0.5) -> None:
    """Print lines as they are appended to any of ``files`` until interrupted."""
    handles = {}
    for name, path in files.items():
        fh = open(path, errors="replace")  # noqa: SIM115 - kept open while following
        fh.seek(0, 2)
        handles[name] = fh
    try:
        while True:
            idle = True
            for name, fh in handles.items():
                while line := fh.readline():
                    idle = False
                    text = line.rstrip("\n")
                    write(f"{name} | {text}" if len(handles) > 1 else text)
            if idle:
                time.sleep(poll)
    finally:
        for fh in handles.values():
            fh.close()
