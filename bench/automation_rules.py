"""Automation costs on the real PostgreSQL: what the engine's hook `on_record_changes` adds to a
page of 100 changes (tenant without rules; with rules for other triggers; with a listening rule),
rule validation, template rendering, and `run_for_event` throughput for the original design's email rule
(create contact + deal, run row, per event).

Run: .venv/bin/python bench/automation_rules.py   (needs PostgreSQL at 127.0.0.1:5432, user postgres)
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ADMIN = os.environ.get("CRMSYNC_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"median {statistics.median(ms):.3f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.3f} ms"


def main() -> None:
    name = f"crmsync_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    os.environ["CRMSYNC_DATABASE_URL"] = url
    for key in ("CRMSYNC_BROKER_URL", "CRMSYNC_REDIS_URL"):
        os.environ.pop(key, None)
    try:
        run(url)
    finally:
        from crmsync.db import dispose_engines
        dispose_engines()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(url: str) -> None:
    from crmsync.automation.rules import apply_rules, validate_rule
    from crmsync.automation.runner import run_for_event
    from crmsync.automation.templates import parse
    from crmsync.automation.triggers import RuleChange, on_record_changes
    from crmsync.configs import create_tenant
    from crmsync.db import session_scope
    from crmsync.db.migrate import upgrade
    from crmsync.db.models import Deal, WebhookEvent
    from tests.automation.seed import EMAIL_REPLY_RULE, MEETING_RULE, seed_rules
    upgrade(url)
    with session_scope(url) as s:
        quiet = create_tenant(s, "quiet").id
        other = create_tenant(s, "other-triggers").id
        busy = create_tenant(s, "busy").id
        apply_rules(s, other, seed_rules())
        apply_rules(s, busy, seed_rules() + [{"name": "stage", "trigger": {"type": "deal_stage_changed"},
                                              "conditions": [{"field": "new_stage", "operator": "equals",
                                                              "value": "never"}],
                                              "actions": [{"type": "create_task", "params": {"title": "t"}}]}])
        deals = []
        for _ in range(100):
            d = Deal(tenant_id=busy, name="d", stage="a", status="open")
            s.add(d)
            deals.append(d)
        s.flush()
        deal_ids = [d.id for d in deals]

    page = [RuleChange("deal", i, "updated", {"stage": ("a", "b"), "amount": (1, 2)}) for i in deal_ids]
    for label, tenant in (("no rules", quiet), ("rules for other triggers", other)):
        with session_scope(url) as s:
            s.connection()
            ms = timed(lambda s=s, tenant=tenant: on_record_changes(s, tenant, page, "sync:hubspot"), 300)
        print(f"on_record_changes, 100 changes, tenant with {label}: {summary(ms)}")
    ms = []
    for i in range(30):
        fresh = [RuleChange("deal", d, "updated", {"stage": ("a", f"b{i}")}) for d in deal_ids]
        with session_scope(url) as s:
            s.connection()
            ms += timed(lambda fresh=fresh, s=s: on_record_changes(s, busy, fresh, "sync:hubspot"), 1)
            s.rollback()      # keep the bench from running 100 rule evaluations inline
    print(f"on_record_changes, 100 changes, a listening rule (100 events stored): {summary(ms[1:])}, "
          f"first call {ms[0]:.1f} ms")

    ms = timed(lambda: validate_rule(MEETING_RULE), 300)
    print(f"validate_rule (seed meeting rule): {summary(ms)}")
    ctx = {"meeting_date": datetime(2025, 3, 14, tzinfo=UTC), "contact_name": "Ada"}
    ms = timed(lambda: parse("{meeting_date - 1 day}").render(ctx), 3000)
    print(f"template render (cached parse) '{{meeting_date - 1 day}}': {summary(ms)}")

    n = 200
    with session_scope(url) as s:
        ids = []
        for i in range(n):
            e = WebhookEvent(tenant_id=busy, platform="product", account_id=busy, event_key=f"b{i}",
                             event_type="email_replied", payload={"sender_email": f"lead{i}@example.org"})
            s.add(e)
            ids.append(e)
        s.flush()
        ids = [e.id for e in ids]
    started = time.perf_counter()
    per = []
    for event_id in ids:
        t = time.perf_counter()
        with session_scope(url) as s:
            run_for_event(s, event_id)
        per.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - started
    print(f"run_for_event, seed email rule (contact + deal + run row, own transaction each): "
          f"{n / wall:.0f} events/s, {summary(per)}")
    _ = EMAIL_REPLY_RULE


if __name__ == "__main__":
    main()
