"""What a stack keeps between runs: ports, generated keys, chosen engine (``.ariel/stack.json``)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ariel_airflow.errors import UserError

DEFAULT_UI_PORT = 8080
DEFAULT_PARALLELISM = 4


class StackState(BaseModel):
    engine: str = "native"
    ui_port: int = DEFAULT_UI_PORT
    postgres_port: int = 0
    pgbouncer_port: int = 0
    parallelism: int = DEFAULT_PARALLELISM
    db_password: str = ""
    jwt_secret: str = ""
    api_secret_key: str = ""
    fernet_key: str = ""
    images: dict[str, str] = {}  # Docker engine: the image tags the stack was started with
    started_at: datetime | None = None  # the last `up`
    stopped_at: datetime | None = None  # the last `down` after it (None: still up, or it died)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.is_file():
            return None
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError) as exc:
            raise UserError(
                f"stack state is unreadable ({exc.__class__.__name__})",
                where=str(path),
                fix="stop the stack with `ariel local down` (the pid files suffice), then delete the file",
            ) from None

    def with_new_keys(self) -> StackState:
        """Fill in the keys generated once per stack (the fernet key must never change)."""
        return self.model_copy(
            update={
                "db_password": self.db_password or secrets.token_urlsafe(18),
                "jwt_secret": self.jwt_secret or secrets.token_urlsafe(64),  # PyJWT warns below 64 bytes
                "api_secret_key": self.api_secret_key or secrets.token_urlsafe(32),
                "fernet_key": self.fernet_key or base64.urlsafe_b64encode(os.urandom(32)).decode(),
            }
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = 0, *, avoid: set[int] = frozenset()) -> int:
    """``preferred`` when it is free, else a port the OS picks."""
    if preferred and preferred not in avoid and port_is_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
