"""`sandbox serve` runs a sandbox until Ctrl-C and prints its base URL and token on stderr."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
import requests


@pytest.mark.parametrize("platform", ["hubspot", "pipedrive", "salesforce"])
def test_serve_prints_url_and_token_and_stops_on_ctrl_c(platform):
    code = "from crmsync.sandbox.commands import sandbox; sandbox()"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--platform", platform, "--contacts", "5",
                             "--companies", "2", "--deals", "1", "--token", "tok-123", "--rate-limit", "0"],
                            stderr=subprocess.PIPE, text=True,
                            # A shell's background job starts with SIGINT ignored, and Python then
                            # never raises KeyboardInterrupt: give the child a terminal's Ctrl-C.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines, deadline = [], time.monotonic() + 20
        while not any(line.startswith("token:") for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(proc.stderr.readline())
        base = re.search(r"(http://127\.0\.0\.1:\d+)", "".join(lines)).group(1)
        assert "token: tok-123" in "".join(lines)
        assert requests.get(f"{base}/_sandbox/", timeout=5).json()["platform"] == platform
        if platform == "hubspot":
            r = requests.get(f"{base}/crm/v3/objects/contacts", headers={"Authorization": "Bearer tok-123"},
                             timeout=5)
            assert r.status_code == 200 and len(r.json()["results"]) == 5
        if platform == "salesforce":
            r = requests.get(f"{base}/services/data/v62.0/query", params={"q": "SELECT Id FROM Contact"},
                             headers={"Authorization": "Bearer tok-123"}, timeout=5)
            assert r.status_code == 200 and r.json()["totalSize"] == 5
            assert r.headers["Sforce-Limit-Info"].startswith("api-usage=1/")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
