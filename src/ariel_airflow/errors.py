"""Errors the user can fix: the CLI prints them without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or machine, with the fix spelled out.

    ``where`` names the file (and field) at fault, ``fix`` says what to do about it.
    """

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text
