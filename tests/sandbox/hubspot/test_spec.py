"""The response validator itself: specs load, operations resolve, a wrong body is caught."""
from __future__ import annotations

import json

from tests.fixtures.sandbox import HUBSPOT_SPECS, hubspot_spec_validator


def test_specs_present_and_operations_resolve():
    assert sorted(HUBSPOT_SPECS.glob("*.json")), f"HubSpot specs missing at {HUBSPOT_SPECS}"
    v = hubspot_spec_validator()
    assert v.operation("GET", "/crm/v3/objects/deals/12").endswith("/crm/v3/objects/0-3/{dealId}")
    assert v.operation("POST", "/crm/v3/objects/contacts/batch/read").endswith("/crm/v3/objects/contacts/batch/read")
    assert v.operation("GET", "/crm/v3/objects/0-1").endswith("GET /crm/v3/objects/contacts")


def test_validator_flags_off_spec_bodies():
    v = hubspot_spec_validator()
    good = {"id": "1", "properties": {"email": "a@b.c"}, "createdAt": "2025-01-01T00:00:00.000Z",
            "updatedAt": "2025-01-01T00:00:00.000Z", "archived": False}
    assert v.check("GET", "/crm/v3/objects/contacts/1", 200, json.dumps(good).encode(), "application/json") == []
    bad = {**good, "properties": {"email": None}, "archived": "no"}
    problems = v.check("GET", "/crm/v3/objects/contacts/1", 200, json.dumps(bad).encode(), "application/json")
    assert any("archived" in p for p in problems) and any("properties/email" in p for p in problems)
    assert v.check("POST", "/crm/v3/objects/contacts/batch/archive", 204, b"x", "")  # 204 must be empty
    err = {"status": "error", "message": "m", "correlationId": "3ce37673-5293-466d-93b5-10095e47b232"}
    assert v.check("GET", "/crm/v3/objects/contacts/1", 404, json.dumps(err).encode(), "application/json")


def test_fixture_records_violations(hubspot_sandbox):
    hubspot_sandbox.configure(empty_properties="null")  # HubSpot's real nulls are not in its own spec
    hubspot_sandbox.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "n@example.com"}})
    r = hubspot_sandbox.api("GET", "/crm/v3/objects/contacts", params={"properties": "phone"})
    assert r.json()["results"][0]["properties"]["phone"] is None
    assert any("phone" in v for v in hubspot_sandbox.violations)
    hubspot_sandbox.validate = False  # deliberately off-spec
