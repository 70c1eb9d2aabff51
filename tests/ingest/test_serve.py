"""`crmsync ingest serve` (the development server) as a user starts it: what it logs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid

import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_development_server_logs_a_salesforce_webhook_without_its_token(crmsync_env):
    """A Salesforce Outbound Message's endpoint URL carries the config's webhook secret as
    `?token=` (Salesforce signs nothing); the access log names the path without it, as the
    gunicorn format does (crmsync.ingest.gunicorn_conf)."""
    port = _free_port()
    code = "from crmsync.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "ingest", "serve", "--port", str(port)],
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines: list[str] = []
        while not any("Running on" in line for line in lines):      # listening from here on
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        path = f"/webhooks/salesforce/{uuid.uuid4()}"
        answer = requests.post(f"http://127.0.0.1:{port}{path}?token=the-webhook-secret-value", data=b"<x/>",
                               headers={"Content-Type": "text/xml"}, timeout=10)
        assert answer.status_code in (401, 403, 404), answer.text
        while not any(path in line for line in lines):              # the request's access log line
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        logged = "".join(lines)
        assert f"POST {path} HTTP/1.1" in logged, logged
        assert "the-webhook-secret-value" not in logged and "token=" not in logged, logged
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
