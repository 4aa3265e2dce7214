"""Progress lines for long operations, on stderr (stdout is kept for --json)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # never break paths


class Progress:
    def __init__(self, console: Console = err_console) -> None:
        self.console = console
        self.started = time.monotonic()

    def info(self, message: str) -> None:
        self.console.print(f"  {message}")

    def done(self, message: str, seconds: float) -> None:
        self.console.print(f"[green]✔[/] {message} [dim]({seconds:.1f}s)[/]")

    def failed(self, message: str) -> None:
        self.console.print(f"[red]✘[/] {message}")

    @contextmanager
    def step(self, starting: str, finished: str) -> Iterator[None]:
        """Print ``starting``; on success ``finished`` with the seconds taken."""
        self.console.print(f"[cyan]…[/] {starting}")
        t0 = time.monotonic()
        try:
            yield
        except BaseException:
            self.failed(f"{starting} (after {time.monotonic() - t0:.1f}s)")
            raise
        self.done(finished, time.monotonic() - t0)

    def elapsed(self) -> float:
        return time.monotonic() - self.started
