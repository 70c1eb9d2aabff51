"""Seeded data: deterministic, realistic, associated; the shared-timestamp knob."""
from __future__ import annotations

from crmsync.sandbox.hubspot import create_app


def _dump(app):
    with app.state.lock:
        return {t: [(r.id, dict(r.props), r.created, r.updated) for r in recs.values()]
                for t, recs in app.state.records.items()}, {k: {t: dict(v) for t, v in d.items()}
                                                            for k, d in app.state.assoc.items()}


def test_same_seed_same_records():
    kw = {"seed": 42, "contacts": 60, "companies": 10, "deals": 15, "tasks": 5, "notes": 5, "calls": 3,
          "meetings": 3, "emails": 3}
    assert _dump(create_app(**kw)) == _dump(create_app(**kw))
    assert _dump(create_app(**kw)) != _dump(create_app(**{**kw, "seed": 43}))


def test_realistic_and_associated():
    app = create_app(seed=1, contacts=50, companies=8, deals=12, tasks=4)
    contacts = list(app.state.records["contacts"].values())
    emails = [c.props["email"] for c in contacts]
    assert len(set(emails)) == 50 and all("@" in e and "." in e.split("@")[1] for e in emails)
    assert all(c.props["firstname"] and c.props["lastname"] for c in contacts)
    assert any("crm_tier" in c.props for c in contacts)  # custom properties
    linked = sum(1 for c in contacts if app.state.associations_of("contacts", c.id, "companies"))
    assert linked > 25
    for d in app.state.records["deals"].values():
        assert app.state.associations_of("deals", d.id, "contacts")
        assert app.state.associations_of("deals", d.id, "companies")
        assert d.props["pipeline"] == "default"
    for t in app.state.records["tasks"].values():
        assert app.state.associations_of("tasks", t.id, "contacts") and t.props["hs_timestamp"]


def test_shared_lastmodifieddate(hubspot_sandbox):
    out = hubspot_sandbox.seed(seed=2, contacts=300, same_modified=200, same_modified_at=1_750_000_000_000)
    assert out["created"]["contacts"] == 300
    stamps = [r.updated for r in hubspot_sandbox.state.records["contacts"].values()]
    assert stamps.count(1_750_000_000_000) == 200
    r = hubspot_sandbox.api("POST", "/crm/v3/objects/contacts/search", json={"filterGroups": [{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "EQ", "value": "1750000000000"}]}], "limit": 1})
    assert r.json()["total"] == 200
    assert r.json()["results"][0]["properties"]["lastmodifieddate"] == "2025-06-15T15:06:40.000Z"
