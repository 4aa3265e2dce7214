"""Azure Key Vault for the local cluster: the secrets API azure-keyvault-secrets' SecretClient calls.

Airflow's ``AzureKeyVaultBackend`` reads a connection with ``SecretClient.get_secret``: a request
without a token gets Key Vault's 401 and its ``WWW-Authenticate: Bearer authorization=...,
resource=...`` challenge, naming the tenant; the client then asks Entra for a token of
``https://vault.azure.net/.default`` and sends it. The token is accepted when the Entra stand-in
issued it, for that scope, to a client allowed to read this vault (Azure's role assignment), and it
has not expired: the Entra stand-in writes each token it issues into the folder both share
(``--tokens``). Every ``*.vault.azure.net`` name the cluster DNS sends here is one vault, its
secrets the files of its folder (``--vaults``: ``<vault host>/<secret name>``, from a Secret).

    python -m ariel_airflow.localkube.keyvault_standin --cert FILE --key FILE --tokens DIR --vaults DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from ariel_airflow.localkube.entra_standin import ISSUED_DIR, token_file_name
from ariel_airflow.localkube.standin_server import StandInHandler, tls_server

log = logging.getLogger("keyvault-standin")

VAULT_SCOPE = "https://vault.azure.net/.default"
# {vault host: [client ids allowed to read it]}, and the tenant the challenge names.
READERS_SETTING = "ARIEL_STANDIN_VAULT_READERS"
TENANT_SETTING = "ARIEL_STANDIN_TENANT"


class Vaults:
    def __init__(self, folder: Path, tokens: Path, readers: dict[str, list[str]], tenant: str) -> None:
        self.folder, self.tokens, self.readers, self.tenant = folder, tokens, readers, tenant

    def caller(self, authorization: str | None) -> dict | None:
        """The issued token's record (client id, scope, expiry) of a bearer header, if any."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        record = self.tokens / ISSUED_DIR / token_file_name(authorization.removeprefix("Bearer "))
        try:
            issued = json.loads(record.read_text())
        except (OSError, ValueError):
            return None
        return issued if issued["expires"] > time.time() else None

    def secret(self, host: str, name: str) -> str | None:
        path = self.folder / host / name
        return path.read_text() if "/" not in name and path.is_file() else None


def handler(vaults: Vaults) -> type[BaseHTTPRequestHandler]:
    class Handler(StandInHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            host = self.headers.get("Host", "").split(":")[0]
            parts = urlsplit(self.path).path.strip("/").split("/")
            if parts[0] == "healthz":
                self.answer_json({"ok": True})
                return
            caller = vaults.caller(self.headers.get("Authorization"))
            if caller is None or caller["scope"] != VAULT_SCOPE:
                self._challenge()
                return
            if caller["client_id"] not in vaults.readers.get(host, []):
                log.warning("refused %s on %s", caller["client_id"], host)
                self._error(403, "Forbidden", f"{caller['client_id']} may not read secrets of {host}")
                return
            if len(parts) < 2 or parts[0] != "secrets":
                self._error(400, "BadParameter", f"not a secret: {self.path}")
                return
            value = vaults.secret(host, parts[1])
            if value is None:
                self._error(
                    404,
                    "SecretNotFound",
                    f"A secret with (name/id) {parts[1]} was not found in this key vault",
                )
                return
            log.info("secret %s of %s read by %s", parts[1], host, caller["client_id"])
            self.answer_json(
                {
                    "value": value,
                    "id": f"https://{host}/secrets/{parts[1]}/0",
                    "attributes": {"enabled": True, "created": 0, "updated": 0},
                }
            )

        def _challenge(self) -> None:
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer authorization="https://login.microsoftonline.com/{vaults.tenant}",'
                ' resource="https://vault.azure.net"',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _error(self, status: int, code: str, message: str) -> None:
            self.answer_json({"error": {"code": code, "message": message}}, status)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ariel_airflow.localkube.keyvault_standin", description=__doc__
    )
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--vaults", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8444)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    readers = json.loads(os.environ.get(READERS_SETTING, "{}"))
    vaults = Vaults(args.vaults, args.tokens, readers, os.environ.get(TENANT_SETTING, "common"))
    server = tls_server(handler(vaults), args.port, args.cert, args.key)
    log.info("serving %s on :%d", ", ".join(readers) or "no vault", args.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
