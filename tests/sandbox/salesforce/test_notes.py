"""The classic Note sObject in the Salesforce sandbox, through plain HTTP ("Salesforce Object
Reference: Note"): its describe, records on exactly one parent (ParentId required, not updateable),
Title required and at most 80 characters, SOQL paging by SystemModstamp, sObject Collections, and
deletions seen as other objects' are (gone from query, in queryAll, in the delete log)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _note(sf, **fields) -> str:
    r = sf.api("POST", "/sobjects/Note/", json=fields)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_note_describe(salesforce_sandbox):
    sf = salesforce_sandbox
    summary = {o["name"]: o for o in sf.api("GET", "/sobjects").json()["sobjects"]}
    assert summary["Note"]["keyPrefix"] == "002"
    fields = {f["name"]: f for f in sf.api("GET", "/sobjects/Note/describe").json()["fields"]}
    parent = fields["ParentId"]
    assert parent["type"] == "reference" and {"Account", "Contact", "Opportunity"} <= set(parent["referenceTo"])
    assert parent["createable"] and not parent["updateable"] and not parent["nillable"]
    assert (fields["Title"]["type"], fields["Title"]["length"], fields["Title"]["nillable"]) == ("string", 80, False)
    assert fields["Body"]["type"] == "textarea" and fields["Body"]["updateable"]
    assert fields["IsPrivate"]["type"] == "boolean" and fields["IsPrivate"]["defaultedOnCreate"]
    assert {"SystemModstamp", "CreatedDate", "IsDeleted", "OwnerId"} <= fields.keys()
    assert not any(f["custom"] for f in fields.values())       # no custom fields, no External ID


def test_a_note_has_exactly_one_parent_and_a_title(salesforce_sandbox):
    sf = salesforce_sandbox
    contact, other = (c["Id"] for c in sf.records("Contact")[:2])
    rid = _note(sf, ParentId=contact, Title="Call notes", Body="Line one\nLine two")
    got = sf.api("GET", f"/sobjects/Note/{rid}").json()
    assert rid.startswith("002") and got["ParentId"] == contact and got["IsPrivate"] is False
    assert got["Body"] == "Line one\nLine two" and got["CreatedDate"].endswith("+0000")

    missing = sf.api("POST", "/sobjects/Note/", json={"Title": "No parent"})
    assert missing.status_code == 400 and missing.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    untitled = sf.api("POST", "/sobjects/Note/", json={"ParentId": contact, "Body": "x"})
    assert untitled.status_code == 400 and untitled.json()[0]["fields"] == ["Title"]
    long = sf.api("POST", "/sobjects/Note/", json={"ParentId": contact, "Title": "x" * 81})
    assert long.status_code == 400 and long.json()[0]["errorCode"] == "STRING_TOO_LONG"
    task = sf.records("Task")[0]["Id"]
    wrong = sf.api("POST", "/sobjects/Note/", json={"ParentId": task, "Title": "On a task"})
    assert wrong.status_code == 400 and wrong.json()[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"

    moved = sf.api("PATCH", f"/sobjects/Note/{rid}", json={"ParentId": other})
    assert moved.status_code == 400 and moved.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sf.api("PATCH", f"/sobjects/Note/{rid}", json={"Body": "Edited"}).status_code == 204
    assert sf.api("GET", f"/sobjects/Note/{rid}").json()["ParentId"] == contact


def test_notes_page_by_system_modstamp_and_id(salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(query_batch_size=200)
    before = datetime.now(UTC) - timedelta(seconds=1)
    account = sf.records("Account")[0]["Id"]
    made = [_note(sf, ParentId=account, Title=f"Note {n}") for n in range(3)]
    stamp = before.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    r = sf.query(f"SELECT Id, Title, ParentId, SystemModstamp FROM Note WHERE SystemModstamp >= {stamp} "
                 "ORDER BY SystemModstamp, Id LIMIT 2")
    assert r.status_code == 200, r.text
    first = r.json()["records"]
    assert [n["Id"] for n in first] == made[:2] and first[0]["attributes"]["type"] == "Note"
    last = first[-1]
    after = sf.query(f"SELECT Id FROM Note WHERE SystemModstamp > {_soql(last['SystemModstamp'])} OR "
                     f"(SystemModstamp = {_soql(last['SystemModstamp'])} AND Id > '{last['Id']}') "
                     "ORDER BY SystemModstamp, Id").json()["records"]
    assert [n["Id"] for n in after] == made[2:]


def _soql(stamp: str) -> str:
    return stamp.replace("+0000", "Z")


def test_collections_write_notes_and_deletes_show_as_for_other_objects(salesforce_sandbox):
    sf = salesforce_sandbox
    contact, deal = sf.records("Contact")[0]["Id"], sf.records("Opportunity")[0]["Id"]
    made = sf.api("POST", "/composite/sobjects", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Note"}, "ParentId": contact, "Title": "A"},
        {"attributes": {"type": "Note"}, "ParentId": deal, "Title": "B", "Body": "b"},
        {"attributes": {"type": "Note"}, "Title": "no parent"}]}).json()
    assert [m["success"] for m in made] == [True, True, False]
    ids = [m["id"] for m in made[:2]]
    updated = sf.api("PATCH", "/composite/sobjects", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Note"}, "Id": ids[0], "Body": "now with a body"}]}).json()
    assert updated[0]["success"]
    got = sf.api("POST", "/composite/sobjects/Note", json={"ids": ids, "fields": ["Id", "Body", "ParentId"]}).json()
    assert [(n["Body"], n["ParentId"]) for n in got] == [("now with a body", contact), ("b", deal)]
    start = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    gone = sf.api("DELETE", "/composite/sobjects", params={"ids": ids[0], "allOrNone": "false"}).json()
    assert gone[0]["success"]
    live = {n["Id"] for n in sf.query("SELECT Id FROM Note ORDER BY Id").json()["records"]}
    assert live == {ids[1]}
    binned = sf.query(f"SELECT Id, IsDeleted FROM Note WHERE Id = '{ids[0]}'", all_rows=True).json()["records"]
    assert binned == [{"attributes": binned[0]["attributes"], "Id": ids[0], "IsDeleted": True}]
    sf.admin("POST", "clock", {"advance_seconds": 61})   # the delete log is read by whole minutes
    end = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    deleted = sf.api("GET", "/sobjects/Note/deleted/", params={"start": start, "end": end}).json()
    assert [d["id"] for d in deleted["deletedRecords"]] == [ids[0]]


def test_the_seed_makes_notes_when_asked(salesforce_sandbox):
    sf = salesforce_sandbox
    assert sf.records("Note") == []           # the default seed has none: existing counts stay
    sf.seed(notes=12)
    notes = sf.records("Note")
    assert len(notes) == 12
    assert {n["ParentId"][:3] for n in notes} <= {"001", "003", "006"} and all(n["Title"] for n in notes)
