"""``cti health``: the check a container engine (or any supervisor) runs against a node.
It asks the node's own port, from the configuration, and says healthy only on a 200;
a node that answers 503 (a driver without its AMI link) or does not answer is unhealthy.
The node here is a plain HTTP server answering as the daemon does (the real daemon under
podman: tests/acceptance/test_compose.py)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.harness import free_port
from tests.integration.test_cli import run_cti


class _Node(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"ok": true}' if self.path == "/healthz" and self.status == 200 else b"{}"
        code = self.status if self.path in ("/healthz", "/readyz") else 404
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthy_on_200_unhealthy_on_503_or_no_answer(
    node: http.server.HTTPServer, tmp_path: Path
) -> None:
    port = node.server_address[1]
    cfg = tmp_path / "cti.toml"
    cfg.write_text(f'[http]\nhost = "0.0.0.0"\nport = {port}\n')  # asked on loopback
    _Node.status = 200
    done = run_cti("--config", str(cfg), "health", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("healthy"), done
    _Node.status = 503
    done = run_cti("--config", str(cfg), "health", "--ready", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout.startswith("unhealthy"), done
    cfg.write_text(f"[http]\nport = {free_port()}\n")  # nothing listens there
    done = run_cti("--config", str(cfg), "health", cwd=tmp_path)
    assert done.returncode == 1 and "unhealthy" in done.stdout, done
