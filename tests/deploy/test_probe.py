"""`ordersaga probe URL`: the containers' healthcheck (the slim image has no
curl). Docker reads exit 0 as healthy and 1 as unhealthy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ordersaga.cli import main
from ordersaga.ports import free_port
from tests.http_server import serving_in_a_thread

ORDERSAGA = Path(sys.executable).parent / "ordersaga"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/readyz": 200, "/down": 503, "/missing": 404}.get(self.path, 500)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serving_in_a_thread(_Handler) as url:
        yield url


@pytest.mark.parametrize(("path", "status"), [("/down", 503), ("/missing", 404)])
def test_unhealthy_answer_exits_1_with_the_status(
    server_url: str, path: str, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", server_url + path]) == 1
    assert f"answered {status}" in capsys.readouterr().err


def test_nothing_listening_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/readyz"
    assert main(["probe", "--timeout", "2", url]) == 1
    err = capsys.readouterr().err
    assert url in err and "refused" in err.lower()


def test_not_a_url_exits_1_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "127.0.0.1:8000/readyz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ordersaga probe: ") and "Traceback" not in err


def test_a_timeout_that_is_not_positive_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--timeout", "0", "http://127.0.0.1:1/"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_healthy_answer_exits_0_from_the_console_script(server_url: str) -> None:
    result = subprocess.run(
        [str(ORDERSAGA), "probe", server_url + "/readyz"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
