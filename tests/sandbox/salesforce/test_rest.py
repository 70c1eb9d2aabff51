"""The Salesforce sandbox's REST API read through plain HTTP: versions, describe, records, SOQL
query paging, replication listings, writes and sObject Collections, Bulk API 2.0 query jobs."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest


def _all(sf, soql, all_rows=False, **kw):
    r = sf.query(soql, all_rows=all_rows, **kw)
    assert r.status_code == 200, r.text
    body, pages = r.json(), 1
    records = list(body["records"])
    while not body["done"]:
        r = sf.api("GET", body["nextRecordsUrl"])
        assert r.status_code == 200, r.text
        body, pages = r.json(), pages + 1
        records += body["records"]
    return records, pages


def test_versions_need_no_session_and_list_the_api(salesforce_sandbox):
    r = salesforce_sandbox.http.get(salesforce_sandbox.base_url + "/services/data/")
    assert r.status_code == 200
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in r.json()
    assert salesforce_sandbox.api("GET", "/services/data/v12.0/sobjects").status_code == 404
    resources = salesforce_sandbox.api("GET", "/").json()
    assert resources["query"] == "/services/data/v62.0/query"


def test_describe_field_types_flags_and_custom_fields(salesforce_sandbox):
    sf = salesforce_sandbox
    names = {o["name"] for o in sf.api("GET", "/sobjects").json()["sobjects"]}
    assert {"Contact", "Account", "Opportunity", "Task", "Event"} <= names
    fields = {f["name"]: f for f in sf.api("GET", "/sobjects/Contact/describe").json()["fields"]}
    assert fields["AccountId"]["type"] == "reference" and fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["Interests__c"]["type"] == "multipicklist" and fields["Interests__c"]["custom"] is True
    assert [p["value"] for p in fields["Tier__c"]["picklistValues"]] == ["Gold", "Silver", "Bronze"]
    assert fields["SystemModstamp"]["type"] == "datetime" and not fields["SystemModstamp"]["updateable"]
    assert fields["crmsync_id__c"]["externalId"] is True
    opp = {f["name"]: f for f in sf.api("GET", "/sobjects/opportunity/describe").json()["fields"]}
    assert (opp["Amount"]["type"], opp["CloseDate"]["type"], opp["StageName"]["type"]) == ("currency", "date",
                                                                                           "picklist")
    assert opp["ContactId"]["createable"] and not opp["ContactId"]["updateable"]


def test_record_read_write_and_the_multipicklist_join(salesforce_sandbox):
    sf = salesforce_sandbox
    account = sf.records("Account")[0]["Id"]
    r = sf.api("POST", "/sobjects/Contact/", json={"LastName": "Tamm", "Email": "liis@northwind.test",
                                                   "AccountId": account, "Interests__c": "Mobile;Cloud"})
    assert r.status_code == 201 and r.json()["success"] is True
    rid = r.json()["id"]
    got = sf.api("GET", f"/sobjects/Contact/{rid}").json()
    assert got["attributes"] == {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{rid}"}
    assert got["Interests__c"] == "Mobile;Cloud" and got["AccountId"] == account
    assert got["SystemModstamp"].endswith("+0000")
    assert sf.api("GET", f"/sobjects/Contact/{rid[:15]}", params={"fields": "Id,Email"}).json() == {
        "attributes": got["attributes"], "Id": rid, "Email": "liis@northwind.test"}
    assert sf.api("PATCH", f"/sobjects/Contact/{rid}", json={"Title": "CTO"}).status_code == 204
    bad = sf.api("PATCH", f"/sobjects/Contact/{rid}", json={"Tier__c": "Platinum"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    missing = sf.api("POST", "/sobjects/Contact/", json={"Email": "x@y.org"})
    assert missing.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    readonly = sf.api("PATCH", f"/sobjects/Contact/{rid}", json={"SystemModstamp": "2020-01-01T00:00:00Z"})
    assert readonly.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sf.api("DELETE", f"/sobjects/Contact/{rid}").status_code == 204
    gone = sf.api("GET", f"/sobjects/Contact/{rid}")
    assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_upsert_by_external_id_creates_updates_and_refuses_ambiguity(salesforce_sandbox):
    sf = salesforce_sandbox
    first = sf.api("PATCH", "/sobjects/Contact/crmsync_id__c/L-1", json={"LastName": "One"})
    assert first.status_code == 201 and first.json()["created"] is True
    second = sf.api("PATCH", "/sobjects/Contact/crmsync_id__c/L-1", json={"LastName": "Uno"})
    assert second.status_code == 200 and second.json() == {"id": first.json()["id"], "success": True,
                                                            "errors": [], "created": False}
    assert sf.api("GET", "/sobjects/Contact/crmsync_id__c/L-1").json()["LastName"] == "Uno"
    with sf.app.state.lock:  # two records sharing a value (only possible when the field is not unique)
        clash = sf.app.state.create("Contact", {"LastName": "Two"})
        clash["crmsync_id__c"] = "L-1"
    many = sf.api("PATCH", "/sobjects/Contact/crmsync_id__c/L-1", json={"LastName": "Which"})
    assert many.status_code == 300 and len(many.json()) == 2
    assert sf.api("PATCH", "/sobjects/Contact/Email/x", json={}).status_code == 404


def test_query_pages_with_next_records_url_in_the_order_asked(salesforce_sandbox):
    sf = salesforce_sandbox
    sf.configure(query_batch_size=7)
    records, pages = _all(sf, "select Id, Name, systemmodstamp FROM contact ORDER BY SystemModstamp, Id")
    assert pages == 15 and len(records) == len({r["Id"] for r in records}) == 100
    stamps = [(r["SystemModstamp"], r["Id"].lower()) for r in records]
    assert stamps == sorted(stamps)
    assert list(records[0]) == ["attributes", "Id", "Name", "SystemModstamp"]   # canonical names, asked order
    big = sf.query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=200"}).json()
    assert len(big["records"]) == 7   # a hint, never more than the server's own batch


def test_soql_subset_cursor_conditions(salesforce_sandbox):
    sf = salesforce_sandbox
    everything, _ = _all(sf, "SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp DESC, Id DESC")
    pivot = everything[50]
    since = pivot["SystemModstamp"]
    later, _ = _all(sf, f"SELECT Id FROM Contact WHERE (SystemModstamp > {since}) OR "
                        f"(SystemModstamp = {since} AND Id > '{pivot['Id']}') ORDER BY SystemModstamp, Id")
    assert len(later) == 50
    two = [r["Id"] for r in everything[:2]]
    inside, _ = _all(sf, f"SELECT Id FROM Contact WHERE Id IN ('{two[0]}', '{two[1][:15]}') LIMIT 5")
    assert sorted(r["Id"] for r in inside) == sorted(two)
    limited = sf.query("SELECT Id FROM Contact WHERE Email LIKE '%example.org' LIMIT 3").json()
    assert limited["totalSize"] == 3 and limited["done"] is True
    assert sf.query("SELECT COUNT() FROM Account").json()["totalSize"] == 20
    assert sf.query("SELECT Id FROM Contact WHERE SystemModstamp >= '2025-01-01'").json()[0]["errorCode"] == \
        "INVALID_FIELD"
    assert sf.query("SELECT Id FROM Contact WHERE").json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert sf.query("SELECT Nope FROM Contact").json()[0]["errorCode"] == "INVALID_FIELD"
    assert sf.query("SELECT Id FROM Lead__x").json()[0]["errorCode"] == "INVALID_TYPE"


def test_query_all_sees_the_recycle_bin_and_replication_lists_changes(salesforce_sandbox):
    sf = salesforce_sandbox
    start = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    victim = sf.records("Contact")[0]["Id"]
    sf.edit("Contact", sf.records("Contact")[1]["Id"], {"Title": "Edited"})
    sf.delete("Contact", victim)
    assert sf.query(f"SELECT Id FROM Contact WHERE Id = '{victim}'").json()["totalSize"] == 0
    bin_ = sf.query("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", all_rows=True).json()
    assert [(r["Id"], r["IsDeleted"]) for r in bin_["records"]] == [(victim, True)]
    # Seconds are ignored: a change is covered once its minute is over.
    assert sf.api("GET", "/sobjects/Contact/updated/", params={"start": start, "end": end}).json()["ids"] == []
    sf.admin("POST", "clock", {"advance_seconds": 61})
    updated = sf.api("GET", "/sobjects/Contact/updated/", params={"start": start, "end": end}).json()
    assert updated["ids"] == [sf.records("Contact")[0]["Id"]]
    deleted = sf.api("GET", "/sobjects/Contact/deleted/", params={"start": start, "end": end}).json()
    assert [d["id"] for d in deleted["deletedRecords"]] == [victim]
    assert deleted["latestDateCovered"][:16] <= end.replace("Z", "")[:16]
    too_old = sf.api("GET", "/sobjects/Contact/deleted/", params={"start": "2001-01-01T00:00:00Z", "end": end})
    assert too_old.status_code == 400 and too_old.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_delete_log_purged_early_moves_earliest_date_available(salesforce_sandbox):
    sf = salesforce_sandbox
    start = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    victim = sf.records("Account")[0]["Id"]
    sf.delete("Account", victim)
    sf.admin("POST", "deletelog/purge", {})
    deleted = sf.api("GET", "/sobjects/Account/deleted/", params={"start": start, "end": end}).json()
    assert deleted["deletedRecords"] == [] and deleted["earliestDateAvailable"] > start.replace("Z", "")
    assert sf.query(f"SELECT Id FROM Account WHERE Id = '{victim}'", all_rows=True).json()["totalSize"] == 0


def test_equal_modstamp_burst_and_late_commit_faults(salesforce_sandbox):
    sf = salesforce_sandbox
    burst = sf.admin("POST", "burst", {"object": "Contact", "count": 12, "changes": {"Department": "Ops"}})
    stamps = {r["SystemModstamp"] for r in sf.records("Contact") if r["Id"] in burst["ids"]}
    assert len(burst["ids"]) == 12 and len(stamps) == 1
    sf.configure(late_commit_seconds=120)
    before = datetime.now(UTC)
    rid = sf.api("POST", "/sobjects/Account/", json={"Name": "Late Ltd"}).json()["id"]
    assert sf.app.state.records["Account"][rid]["SystemModstamp"] <= before - timedelta(seconds=119)


def test_collections_per_record_errors_all_or_none_and_the_200_cap(salesforce_sandbox):
    sf = salesforce_sandbox
    ok = {"attributes": {"type": "Account"}, "Name": "Fine"}
    bad = {"attributes": {"type": "Account"}, "Website": "no name"}
    r = sf.api("POST", "/composite/sobjects", json={"allOrNone": False, "records": [ok, bad, ok]})
    results = r.json()
    assert r.status_code == 200 and [x["success"] for x in results] == [True, False, True]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    before = len(sf.records("Account"))
    rolled = sf.api("POST", "/composite/sobjects", json={"allOrNone": True, "records": [ok, bad]}).json()
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert len(sf.records("Account")) == before
    update = sf.api("PATCH", "/composite/sobjects", json={"records": [
        {"attributes": {"type": "Account"}, "Id": results[0]["id"], "Name": "Renamed"},
        {"attributes": {"type": "Account"}, "Id": "001000000000000AAA", "Name": "Nobody"}]}).json()
    assert [x["success"] for x in update] == [True, False]
    upsert = sf.api("PATCH", "/composite/sobjects/Account/crmsync_id__c", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Account"}, "crmsync_id__c": "A1", "Name": "New"}]}).json()
    assert upsert[0]["created"] is True
    got = sf.api("GET", "/composite/sobjects/Account", params={"ids": f"{results[0]['id']},001000000000000AAA",
                                                               "fields": "Id,Name"}).json()
    assert got[0]["Name"] == "Renamed" and got[1] is None
    gone = sf.api("DELETE", "/composite/sobjects", params={"ids": results[2]["id"], "allOrNone": "false"}).json()
    assert gone[0]["success"] is True
    too_many = sf.api("POST", "/composite/sobjects", json={"records": [ok] * 201})
    assert too_many.status_code == 400 and too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_bulk_query_job_pages_results_with_sforce_locator(salesforce_sandbox):
    sf = salesforce_sandbox
    job = sf.api("POST", "/jobs/query", json={"operation": "query", "query": "SELECT Id, Email FROM Contact"}).json()
    assert job["state"] == "UploadComplete"
    assert sf.api("GET", f"/jobs/query/{job['id']}/results").status_code == 400   # not complete yet
    states = [sf.api("GET", f"/jobs/query/{job['id']}").json()["state"] for _ in range(2)]
    assert states == ["InProgress", "JobComplete"]
    rows, locator, pages = [], None, 0
    while locator != "null":
        r = sf.api("GET", f"/jobs/query/{job['id']}/results",
                   params={"maxRecords": 40, **({"locator": locator} if locator else {})})
        assert r.headers["Content-Type"].startswith("text/csv")
        page = list(csv.DictReader(io.StringIO(r.text)))
        assert int(r.headers["Sforce-NumberOfRecords"]) == len(page)
        rows += page
        locator, pages = r.headers["Sforce-Locator"], pages + 1
    assert pages == 3 and len({row["Id"] for row in rows}) == 100 and set(rows[0]) == {"Id", "Email"}


@pytest.mark.parametrize("status", [500, 503])
def test_server_fault_answers_the_documented_error_array(salesforce_sandbox, status):
    sf = salesforce_sandbox
    sf.configure(faults={"error_rate": 1.0, "error_statuses": [status]})
    r = sf.query("SELECT Id FROM Contact")
    assert r.status_code == status and r.json()[0]["errorCode"] in ("UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE")
