"""What the local cluster's Azure stand-ins share: an HTTPS server, JSON answers, quiet logs."""

from __future__ import annotations

import json
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHandler(BaseHTTPRequestHandler):
    def answer_json(self, document: dict, status: int = 200, content_type: str = "application/json") -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass  # each stand-in logs what it decides, not every request


def tls_server(handler: type[BaseHTTPRequestHandler], port: int, cert: str, key: str) -> ThreadingHTTPServer:
    """A threading HTTPS server on ``port`` with the certificate ``cert`` and its ``key`` (PEM files)."""
    server = ThreadingHTTPServer(("0.0.0.0", port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
