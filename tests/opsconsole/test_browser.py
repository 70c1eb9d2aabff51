"""The console in a real browser (Debian's chromium, driven by Playwright): sign in, filter, open a
conflict, resolve one field each way, bulk-resolve, save a field rule, the health page — and the
CRM sandbox receiving the writes. Set CRMSYNC_TEST_SCREENSHOT_DIR to keep the pages' screenshots
(docs/screenshots/ holds the README's)."""
import os
import re
from pathlib import Path

from sqlalchemy import select

from crmsync.db import session_scope
from crmsync.db.models import ConflictRecord, ConflictResolution, WebhookDelivery
from crmsync.sync.conflicts import resolve_conflict_record


def _shot(page, name: str, tmp_path: Path) -> None:
    target = Path(os.environ.get("CRMSYNC_TEST_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)
    assert (target / f"{name}.png").stat().st_size > 10_000


def _remote(world, ext):
    return world.hs.state.records["contacts"][int(ext)].props


def _local(world, ext):
    local_id = world.links()[ext]
    return next(r for r in world.rows() if r["id"] == local_id)


def _status(db_url, conflict_id):
    with session_scope(db_url) as s:
        return s.get(ConflictRecord, conflict_id).status


def test_filter_open_and_resolve_one_field_each_way(page_for, two_tenants, db_url, tmp_path):
    a = two_tenants.a
    page = page_for(two_tenants.emails["a"])
    assert page.inner_text("[data-testid=total]") == "3"
    _shot(page, "queue", tmp_path)
    # filtering swaps the results in place (htmx) and keeps the filter in the address
    page.select_option("select[name=field]", "phone")
    page.wait_for_url(re.compile(r".*field=phone.*"))
    assert page.inner_text("[data-testid=total]") == "3"
    page.select_option("select[name=age]", "gt1d")
    page.wait_for_url(re.compile(r".*age=gt1d.*"))
    page.wait_for_selector("text=No pending conflicts match.")
    assert page.inner_text("[data-testid=total]") == "0"
    page.select_option("select[name=age]", "")
    page.wait_for_selector(f"a[href='/conflicts/{a.conflict_ids[0]}']").click()

    page.wait_for_selector("tr.conflicting[data-field=first_name]")
    assert page.locator("details.equal").get_attribute("open") is None      # equal fields behind a toggle
    page.check("input[name='choice.first_name'][value=local]")
    page.check("input[name='choice.phone'][value=remote]")
    preview = page.locator("[data-testid=preview]")
    preview.locator("text=Ours 0").wait_for()
    assert "Ours 0" in preview.inner_text() and "+44 20 0000" in preview.inner_text()
    _shot(page, "conflict", tmp_path)
    page.click("button:has-text('Resolve and push')")
    page.wait_for_selector("text=Resolved; the push followed.")
    assert page.inner_text("[data-testid=status]") == "resolved"
    audit = page.inner_text("[data-testid=audit]")
    assert "ada@tenant-a.example" in audit and "fields" in audit and "succeeded" in audit

    ext = a.externals[0]
    assert _remote(a, ext)["firstname"] == "Ours 0"              # ours went to HubSpot
    assert _remote(a, ext)["phone"] == "+44 20 0000"
    local = _local(a, ext)
    assert local["first_name"] == "Ours 0" and local["phone"] == "+44 20 0000"   # theirs came here


def test_bad_input_and_a_stale_page_write_nothing(page_for, two_tenants, db_url):
    a = two_tenants.a
    page = page_for(two_tenants.emails["a"])
    page.goto(f"/conflicts/{a.conflict_ids[1]}")
    page.check("input[name='choice.phone'][value=value]")
    page.fill("input[name='value.phone']", "9" * 150)
    page.locator("[data-testid=preview-error]").wait_for()
    page.click("button:has-text('Resolve and push')")
    assert "phone: at most 100 characters" in page.inner_text("[data-testid=error]")
    assert _status(db_url, a.conflict_ids[1]) == "pending"

    # someone else resolves it while this page is open
    page.goto(f"/conflicts/{a.conflict_ids[1]}")
    with session_scope(db_url) as s:
        resolve_conflict_record(s, a.conflict_ids[1], take="remote", resolved_by="someone@else.example")
    before = _local(a, a.externals[1])
    page.check("input[name='choice.first_name'][value=local]")
    page.click("button:has-text('Resolve and push')")
    assert "already resolved" in page.inner_text("[data-testid=error]")
    assert _local(a, a.externals[1])["first_name"] == before["first_name"]
    with session_scope(db_url) as s:
        by = s.scalars(select(ConflictResolution.resolved_by).where(
            ConflictResolution.conflict_id == a.conflict_ids[1])).all()
    assert by == ["someone@else.example"]


def test_bulk_take_ours_reaches_the_crm(page_for, two_tenants, db_url):
    a = two_tenants.a
    page = page_for(two_tenants.emails["a"])
    for conflict_id in a.conflict_ids[1:]:
        page.check(f"input[name=ids][value='{conflict_id}']")
    page.click("button:has-text('Keep our data')")
    page.wait_for_selector("text=Resolved 2 conflict(s) taking our data")
    assert page.inner_text("[data-testid=total]") == "1"
    for n, ext in enumerate(a.externals[1:], start=1):
        assert _remote(a, ext)["firstname"] == f"Ours {n}"
        assert _remote(a, ext)["phone"] == f"+1 555 0{n:03d}"
    assert [_status(db_url, c) for c in a.conflict_ids] == ["pending", "resolved", "resolved"]


def test_always_prefer_the_crm_for_a_field_saves_a_rule(page_for, two_tenants, db_url):
    a = two_tenants.a
    page = page_for(two_tenants.emails["a"])
    page.goto(f"/conflicts?config={a.config_id}&entity=contact&field=phone")
    page.select_option("form.rule select[name=prefer]", "remote")
    page.click("button:has-text('Save the rule')")
    page.wait_for_selector("text=From now on HubSpot wins contact phone conflicts")
    # phone is settled in every pending conflict (HubSpot's value); first_name is still held
    with session_scope(db_url) as s:
        rows = s.scalars(select(ConflictRecord).where(ConflictRecord.tenant_id == a.tenant_id)).all()
    assert {tuple(r.conflicting_fields) for r in rows} == {("first_name",)}
    assert all(_local(a, ext)["phone"] == f"+44 20 0{n:03d}" for n, ext in enumerate(a.externals))
    # the same conflict does not come back: both sides edit phone again, HubSpot wins at once
    ext = a.externals[0]
    a.local_edit("contact", a.links()[ext], phone="+1 999")
    a.hs.edit("contacts", ext, {"phone": "+44 999"})
    a.sync()
    assert _local(a, ext)["phone"] == "+44 999"
    with session_scope(db_url) as s:
        rows = s.scalars(select(ConflictRecord).where(ConflictRecord.tenant_id == a.tenant_id,
                                                      ConflictRecord.status == "pending")).all()
    assert all("phone" not in r.conflicting_fields for r in rows)


def test_health_page_shows_runs_and_replays_a_failed_delivery(page_for, two_tenants, db_url, tmp_path):
    a = two_tenants.a
    with session_scope(db_url) as s:
        s.add(WebhookDelivery(tenant_id=a.tenant_id, config_id=a.config_id, platform="hubspot", account_id="1",
                              event_account_id="1", body="[]", events=0, attempts=3, error="split failed: boom"))
    page = page_for(two_tenants.emails["a"])
    page.click("nav >> text=Sync health")
    card = page.locator(f"section.health[data-config='{a.config_id}']")
    assert "1 deliveries" in card.locator("[data-testid=failed]").inner_text()
    assert "succeeded" in card.locator("table.runs").inner_text()
    assert "no budget kept" in card.locator("[data-testid=budget]").inner_text()   # the sandbox runs without limits
    assert page.locator(f"section.health[data-config='{two_tenants.b.config_id}']").count() == 0
    _shot(page, "health", tmp_path)
    card.locator("button:has-text('Replay failed')").click()
    page.wait_for_selector("text=Replaying 0 failed event(s) and 1 failed delivery(ies).")
    with session_scope(db_url) as s:
        assert s.scalars(select(WebhookDelivery.error).where(WebhookDelivery.config_id == a.config_id)).all() in ([], [None])
    # a job's page lists its steps
    page.locator("table.runs a").first.click()
    steps = page.inner_text("[data-testid=steps]")
    assert "pull contact" in steps and "push contact" in steps and "done" in steps


def test_another_tenants_user_gets_nothing(page_for, two_tenants):
    a = two_tenants.a
    page = page_for(two_tenants.emails["b"])
    assert page.inner_text("[data-testid=total]") == "1"
    assert all(page.locator(f"input[value='{cid}']").count() == 0 for cid in a.conflict_ids)
    answer = page.goto(f"/conflicts/{a.conflict_ids[0]}")
    assert answer.status == 404 and "nothing here you can see" in page.content()
    answer = page.goto(f"/conflicts?config={a.config_id}")
    assert page.inner_text("[data-testid=total]") == "0"
