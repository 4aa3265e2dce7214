"""The teams' git host (Azure DevOps Repos) for the local cluster: git's smart HTTP over TLS, with a
personal access token per repository, served by git's own ``git http-backend``.

Each repository named in ``ARIEL_STANDIN_REPOS`` (``{url path: {"bundle": FILE, "user": NAME,
"token": PAT}}``) is cloned bare from its bundle at start. A request without that repository's
credentials gets 401 and a Basic challenge, as Azure DevOps answers; with them, git http-backend
(CGI) answers. The cluster DNS sends the registry's repository host here.

    python -m ariel_airflow.localkube.git_standin --cert FILE --key FILE [--root DIR] [--port 8445]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from ariel_airflow.localkube.standin_server import StandInHandler, tls_server

log = logging.getLogger("git-standin")

REPOS_SETTING = "ARIEL_STANDIN_REPOS"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"  # Debian's git


def prepare(root: Path, repos: dict[str, dict[str, str]]) -> None:
    """A bare clone of each repository's bundle under ``root`` at its URL path."""
    for path, repo in repos.items():
        target = root / path.strip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "clone", "--quiet", "--bare", repo["bundle"], str(target)], check=True)
        log.info("serving %s", path)


def repository_of(path: str, repos: dict[str, dict[str, str]]) -> str | None:
    """The repository a request path is under (``/org/project/_git/repo/info/refs`` -> its path)."""
    for repo in repos:
        if path == repo or path.startswith(repo.rstrip("/") + "/"):
            return repo
    return None


def handler(root: Path, repos: dict[str, dict[str, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(StandInHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self._git()

        def do_POST(self) -> None:  # noqa: N802
            self._git()

        def _git(self) -> None:
            url = urlsplit(self.path)
            repo = repository_of(url.path, repos)
            if repo is None:
                self._answer(404, b"no such repository\n")
                return
            if not self._authorized(repos[repo]):
                log.warning("refused %s %s", self.command, url.path)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="Azure DevOps"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": url.path,
                "QUERY_STRING": url.query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": repos[repo]["user"],
                "REMOTE_ADDR": self.client_address[0],
            }
            if encoding := self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = encoding
            if protocol := self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = protocol
            result = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorized(self, repo: dict[str, str]) -> bool:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            user, _, token = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
            return token == repo["token"]  # Azure DevOps takes any user name with a PAT

        def _answer(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ariel_airflow.localkube.git_standin", description=__doc__
    )
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--root", type=Path, default=Path("/tmp/git"))
    parser.add_argument("--port", type=int, default=8445)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    repos = json.loads(os.environ.get(REPOS_SETTING, "{}"))
    prepare(args.root, repos)
    server = tls_server(handler(args.root, repos), args.port, args.cert, args.key)
    log.info("serving on :%d", args.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
