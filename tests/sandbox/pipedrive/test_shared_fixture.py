"""The shared ``pipedrive_sandbox`` fixture (tests/fixtures/sandbox.py) other domains use."""
from __future__ import annotations


def test_shared_fixture_serves_a_fresh_seeded_account(pipedrive_sandbox):
    assert pipedrive_sandbox.app.state.counts() == {"person": 100, "organization": 20, "deal": 50, "activity": 100}
    persons = pipedrive_sandbox.list_all("persons", limit=500)
    assert len(persons) == 100
    pipedrive_sandbox.edit("person", persons[0]["id"], {"name": "Edited In UI"})
    pipedrive_sandbox.merge("person", 2, 3)
    assert pipedrive_sandbox.requests_log()["by_endpoint"]["GET /api/v2/persons"] == 1
    assert pipedrive_sandbox.api("GET", "/api/v2/persons/1").json()["data"]["name"] == "Edited In UI"
    assert pipedrive_sandbox.recorder.responses  # captured for the spec check at teardown


def test_shared_fixture_was_reset(pipedrive_sandbox):
    assert pipedrive_sandbox.api("GET", "/api/v2/persons/1").json()["data"]["name"] != "Edited In UI"
    assert pipedrive_sandbox.requests_log()["total"] == 1
