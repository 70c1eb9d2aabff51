"""Tests of deploy/: alert rules, the dashboard against a live scrape, the Kubernetes manifests."""
from __future__ import annotations

import shutil

import pytest


def tool(name: str) -> str:
    """The path of a command these tests need; a missing one fails the test loudly (`make services`
    installs promtool and prometheus; kubectl comes with the machine)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make services` (deploy/ensure-services.sh)", pytrace=False)
    return path
