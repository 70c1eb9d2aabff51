"""Notes through the Salesforce adapter, against the sandbox over HTTP: classic Notes ("Salesforce
Object Reference: Note") are activities of type note. Pull (fields, the one parent as the
association, incremental by SystemModstamp, the sweep's listing), push (create on the contact, deal
or company, title from the body, update, delete, a move made again on the new parent), and a note
with nothing to hang on refused with its reason."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.platforms.base import OutboundRecord
from crmsync.platforms.errors import ValidationError

from .test_adapter import _all_ids, _drain


def _note(sf, parent: str, title: str, body: str | None = None) -> dict:
    rid = sf.api("POST", "/sobjects/Note/", json={"ParentId": parent, "Title": title,
                                                   **({"Body": body} if body is not None else {})}).json()["id"]
    return next(n for n in sf.records("Note") if n["Id"] == rid)


def _notes(records):
    return {r.external_id: r for r in records if r.fields["type"] == "note"}


def test_pull_reads_notes_with_their_one_parent(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    contact, account, deal = sf.records("Contact")[0]["Id"], sf.records("Account")[0]["Id"], \
        sf.records("Opportunity")[0]["Id"]
    on_contact = _note(sf, contact, "Call notes", "Talked pricing.\nSend the deck.")
    on_account = _note(sf, account, "Talked pricing", "Talked pricing\nagain")   # a title made from the body
    on_deal = _note(sf, deal, "Deal note")
    pulled = _notes(_drain(adapter, "activity"))
    assert set(pulled) == {on_contact["Id"], on_account["Id"], on_deal["Id"]}
    first = pulled[on_contact["Id"]]
    assert (first.fields["subject"], first.fields["body"]) == ("Call notes", "Talked pricing.\nSend the deck.")
    assert first.fields["occurred_at"] == on_contact["CreatedDate"] and first.updated_at == on_contact["SystemModstamp"]
    # The association is the parent's kind only: the others are not held by a Note, so not reported.
    assert first.associations == {"contact_id": contact}
    assert pulled[on_account["Id"]].associations == {"company_id": account}
    assert pulled[on_account["Id"]].fields["subject"] is None
    assert pulled[on_deal["Id"]].associations == {"deal_id": deal} and pulled[on_deal["Id"]].fields["body"] is None
    assert [r.external_id for r in adapter.get_many("activity", [on_deal["Id"]])] == [on_deal["Id"]]
    assert adapter.get_many("task", [on_deal["Id"]]) == []


def test_incremental_pull_reads_an_edited_note(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    sf.seed(notes=15)
    assert len(_notes(_drain(adapter, "activity"))) == 15
    since = datetime.now(UTC) - timedelta(seconds=1)
    edited = sf.records("Note")[3]["Id"]
    sf.edit("Note", edited, {"Body": "Budget approved.\nSign in May."})
    adapter.lookback = timedelta(0)
    changed = _drain(adapter, "activity", since=since)
    assert [r.external_id for r in changed] == [edited]
    assert changed[0].fields["body"] == "Budget approved.\nSign in May." and changed[0].fields["type"] == "note"


def test_push_creates_updates_and_deletes_a_note(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    contact, account = sf.records("Contact")[0]["Id"], sf.records("Account")[0]["Id"]
    when = datetime(2024, 5, 4, 10, 30, tzinfo=UTC)
    body = "<p>Renewal &amp; upsell " + "x" * 100 + "</p><p>Second paragraph</p>"
    [made, titled] = adapter.create_many("activity", [
        OutboundRecord("N1", {"type": "note", "subject": None, "body": body, "occurred_at": when},
                       associations={"contact_id": contact, "company_id": account, "deal_id": None}),
        OutboundRecord("N2", {"type": "note", "subject": "Q3 plan", "body": "text"},
                       associations={"company_id": account})])
    assert made.ok and titled.ok, (made.error, titled.error)
    stored = {n["Id"]: n for n in sf.records("Note")}
    note = stored[made.external_id]
    # Contact first; the title is the body's first line (tags dropped) cut to Note.Title's 80 characters.
    assert made.external_id.startswith("002") and note["ParentId"] == contact
    assert note["Title"] == ("Renewal & upsell " + "x" * 100)[:80] and note["Body"] == body
    assert stored[titled.external_id]["ParentId"] == account and stored[titled.external_id]["Title"] == "Q3 plan"
    # Read back as written: no subject, the contact; occurred_at is not held (CreatedDate is now).
    assert made.record.fields["subject"] is None and made.record.fields["type"] == "note"
    assert made.record.associations == {"contact_id": contact} and "occurred_at" not in made.record.fields

    [edited] = adapter.update_many("activity", [OutboundRecord("N1", {"body": "Signed.\nKick-off in June"},
                                                               external_id=made.external_id)])
    assert edited.ok, edited.error
    note = next(n for n in sf.records("Note") if n["Id"] == made.external_id)
    assert (note["Title"], note["Body"]) == ("Signed.", "Signed.\nKick-off in June")   # still titled by its body
    assert edited.record.fields["subject"] is None
    [retitled] = adapter.update_many("activity", [OutboundRecord("N1", {"subject": "Contract"},
                                                                 external_id=made.external_id)])
    assert retitled.ok and retitled.record.fields["subject"] == "Contract"
    [kept] = adapter.update_many("activity", [OutboundRecord("N1", {"body": "Other text"},
                                                             external_id=made.external_id)])
    assert kept.record.fields["subject"] == "Contract"     # a real title does not follow the body

    assert all(r.ok for r in adapter.archive_many("activity", [made.external_id]))
    assert adapter.get_many("activity", [made.external_id]) == []
    assert made.external_id not in {i for i, _ in _all_ids(adapter, "activity")}
    assert titled.external_id in {i for i, _ in _all_ids(adapter, "activity")}


def test_a_note_on_no_record_is_refused_with_its_reason(adapter, salesforce_sandbox):
    adapter.account_id()
    log = salesforce_sandbox.app.log
    served = log.total
    [alone] = adapter.create_many("activity", [OutboundRecord("N9", {"type": "note", "body": "Orphan"},
                                                               associations={"contact_id": None})])
    assert isinstance(alone.error, ValidationError) and alone.external_id is None
    assert "ParentId is required" in str(alone.error) and "contact, deal or company" in str(alone.error)
    assert log.total - served == 1          # the describe only: nothing was sent to be refused
    assert salesforce_sandbox.records("Note") == []


def test_a_note_moved_to_another_record_is_made_again_there(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    first, second = (c["Id"] for c in sf.records("Contact")[:2])
    deal = sf.records("Opportunity")[0]["Id"]
    [made] = adapter.create_many("activity", [OutboundRecord("N1", {"type": "note", "subject": "Plan", "body": "b"},
                                                              associations={"contact_id": first})])
    [moved] = adapter.update_many("activity", [OutboundRecord("N1", {"body": "b2"}, external_id=made.external_id,
                                                              associations={"contact_id": second})])
    assert moved.ok, moved.error
    assert moved.external_id != made.external_id and moved.record.associations == {"contact_id": second}
    notes = sf.records("Note")
    assert [(n["ParentId"], n["Title"], n["Body"]) for n in notes] == [(second, "Plan", "b2")]
    # Another association than the parent's changes nothing there.
    [stays] = adapter.update_many("activity", [OutboundRecord("N1", {}, external_id=moved.external_id,
                                                              associations={"deal_id": deal})])
    assert stays.ok and stays.external_id == moved.external_id and not stays.association_errors
    # A parent cleared with nowhere to go: the Note keeps it, and the association is reported refused.
    [cleared] = adapter.update_many("activity", [OutboundRecord("N1", {"subject": "Plan B"},
                                                                external_id=moved.external_id,
                                                                associations={"contact_id": None})])
    assert cleared.ok and cleared.record.fields["subject"] == "Plan B"
    assert "exactly one parent" in str(cleared.association_errors["contact_id"])
    assert [n["ParentId"] for n in sf.records("Note")] == [second]
    # The contact cleared and a deal given: the note goes to the deal.
    [to_deal] = adapter.update_many("activity", [OutboundRecord("N1", {}, external_id=moved.external_id,
                                                                associations={"contact_id": None, "deal_id": deal})])
    assert to_deal.ok and to_deal.record.associations == {"deal_id": deal}
    assert [(n["Id"], n["ParentId"]) for n in sf.records("Note")] == [(to_deal.external_id, deal)]


def test_a_lost_note_create_is_found_by_parent_title_and_body(adapter, salesforce_sandbox):
    sf = salesforce_sandbox
    contact = sf.records("Contact")[0]["Id"]
    record = OutboundRecord("N1", {"type": "note", "body": "Met at the fair\nLikes the API"},
                            associations={"contact_id": contact, "company_id": None})
    assert adapter.find_existing("activity", record) is None
    [made] = adapter.create_many("activity", [record])
    assert made.ok, made.error
    assert adapter.find_existing("activity", record) == made.external_id
    other = OutboundRecord("N2", {"type": "note", "body": "Met at the fair\nSomething else"},
                           associations={"contact_id": contact})
    assert adapter.find_existing("activity", other) is None      # same title, another body


def test_a_bulk_pull_of_activities_reads_the_notes_too(adapter, salesforce_sandbox):
    salesforce_sandbox.seed(notes=9)
    by_soql = {r.external_id: r for r in _drain(adapter, "activity")}
    adapter.bulk_threshold = 1
    by_bulk = {r.external_id: r for r in _drain(adapter, "activity", page_size=7)}
    assert by_bulk.keys() == by_soql.keys() and len(_notes(by_bulk.values())) == 9
    for ext, record in _notes(by_soql.values()).items():
        assert by_bulk[ext].fields == record.fields and by_bulk[ext].associations == record.associations
