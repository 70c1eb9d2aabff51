"""CRM v3 object endpoints of the HubSpot sandbox: shapes, status codes and error bodies."""
from __future__ import annotations

import re


def _contact(sb, **props):
    r = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": props})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_get_update_archive_roundtrip(hubspot_sandbox):
    sb = hubspot_sandbox
    c = _contact(sb, email="Ada@Example.com", firstname="Ada", crm_score=7)
    assert c["properties"]["hs_object_id"] == c["id"]
    assert c["properties"]["crm_score"] == "7"  # values are strings
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", c["createdAt"])
    assert c["updatedAt"] == c["properties"]["lastmodifieddate"]

    r = sb.api("GET", "/crm/v3/objects/contacts/ada%40example.com", params={"idProperty": "email"})
    assert r.status_code == 200 and r.json()["id"] == c["id"]
    assert set(r.json()["properties"]) == {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate"}

    r = sb.api("PATCH", f"/crm/v3/objects/contacts/{c['id']}", json={"properties": {"firstname": "", "phone": "1"}})
    assert r.status_code == 200
    assert "firstname" not in r.json()["properties"] and r.json()["properties"]["phone"] == "1"
    assert r.json()["updatedAt"] >= c["updatedAt"]

    assert sb.api("DELETE", f"/crm/v3/objects/contacts/{c['id']}").status_code == 204
    assert sb.api("GET", f"/crm/v3/objects/contacts/{c['id']}").status_code == 404
    r = sb.api("GET", f"/crm/v3/objects/contacts/{c['id']}", params={"archived": "True"})
    assert r.status_code == 200 and r.json()["archived"] is True and "archivedAt" in r.json()
    listed = sb.api("GET", "/crm/v3/objects/contacts", params={"archived": "true"}).json()["results"]
    assert [x["id"] for x in listed] == [c["id"]]
    assert sb.api("GET", "/crm/v3/objects/contacts").json()["results"] == []


def test_error_bodies(hubspot_sandbox):
    sb = hubspot_sandbox
    c = _contact(sb, email="dup@example.com")
    r = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "DUP@example.com"}})
    assert r.status_code == 409
    assert r.json()["category"] == "CONFLICT"
    assert r.json()["message"] == f"Contact already exists. Existing ID: {c['id']}"
    other = _contact(sb, email="other@example.com")
    r = sb.api("PATCH", f"/crm/v3/objects/contacts/{other['id']}", json={"properties": {"email": "dup@example.com"}})
    assert r.status_code == 409

    r = sb.api("GET", "/crm/v3/objects/contacts/424242")
    assert r.status_code == 404 and r.json()["category"] == "OBJECT_NOT_FOUND"
    assert r.json()["context"] == {"id": ["424242"]}

    r = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"nope": "x"}})
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    assert r.json()["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    assert r.json()["message"].startswith("Property values were not valid")

    r = sb.api("POST", "/crm/v3/objects/deals", json={"properties": {"dealname": "x"}})
    assert r.status_code == 400  # dealstage and pipeline are required

    r = sb.http.get(sb.base_url + "/crm/v3/objects/contacts")
    assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"
    r = sb.http.get(sb.base_url + "/crm/v3/objects/contacts", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_list_paging_properties_and_associations(hubspot_sandbox):
    sb = hubspot_sandbox
    sb.seed(seed=3, contacts=25, companies=5, deals=4)
    seen, after = [], None
    while True:
        params = [("limit", "10"), ("properties", "email,crm_tier"), ("properties", "phone"),
                  ("associations", "companies")]
        if after:
            params.append(("after", after))
        page = sb.api("GET", "/crm/v3/objects/0-1", params=params).json()
        seen += page["results"]
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after:
            break
    assert len(seen) == 25 and len({r["id"] for r in seen}) == 25
    assert [int(r["id"]) for r in seen] == sorted(int(r["id"]) for r in seen)
    assert {"email", "phone", "hs_object_id", "createdate", "lastmodifieddate"} <= set(seen[0]["properties"])
    with_company = [r for r in seen if "associations" in r]
    assert with_company, "the generator links most contacts to a company"
    types = {a["type"] for a in with_company[0]["associations"]["companies"]["results"]}
    assert types == {"contact_to_company", "contact_to_company_unlabeled"}
    assert sb.api("GET", "/crm/v3/objects/contacts", params={"limit": 101}).status_code == 400


def test_batch_endpoints(hubspot_sandbox):
    sb = hubspot_sandbox
    r = sb.api("POST", "/crm/v3/objects/contacts/batch/create",
               json={"inputs": [{"properties": {"email": f"b{i}@example.com"}} for i in range(3)]})
    assert r.status_code == 201 and len(r.json()["results"]) == 3 and r.json()["status"] == "COMPLETE"
    ids = [x["id"] for x in r.json()["results"]]

    r = sb.api("POST", "/crm/v3/objects/contacts/batch/read",
               json={"properties": ["email"], "inputs": [{"id": ids[0]}, {"id": "999999"}]})
    assert r.status_code == 207
    err = r.json()["errors"][0]
    assert err["category"] == "OBJECT_NOT_FOUND" and err["context"]["ids"] == ["999999"]
    assert r.json()["numErrors"] == 1

    r = sb.api("POST", "/crm/v3/objects/contacts/batch/read",
               json={"idProperty": "email", "properties": ["email"], "inputs": [{"id": "b1@example.com"}]})
    assert r.status_code == 200 and r.json()["results"][0]["id"] == ids[1]

    r = sb.api("POST", "/crm/v3/objects/contacts/batch/update",
               json={"inputs": [{"id": ids[0], "properties": {"phone": "1"}}, {"id": ids[0], "properties": {}}]})
    assert r.status_code == 400 and "Duplicate IDs" in r.json()["message"]
    assert r.json()["context"] == {"ids": [ids[0]]}

    r = sb.api("POST", "/crm/v3/objects/contacts/batch/upsert", json={"inputs": [
        {"id": "b2@example.com", "idProperty": "email", "properties": {"firstname": "Up"}},
        {"id": "new@example.com", "idProperty": "email", "properties": {"firstname": "New"}}]})
    assert r.status_code == 200
    assert sorted(x["new"] for x in r.json()["results"]) == [False, True]

    # one duplicate email fails the whole batch with a 409 naming the existing contact
    r = sb.api("POST", "/crm/v3/objects/contacts/batch/create",
               json={"inputs": [{"properties": {"email": "fresh@example.com"}},
                                {"properties": {"email": "b0@example.com"}}]})
    assert r.status_code == 409 and r.json()["message"] == f"Contact already exists. Existing ID: {ids[0]}"
    # with objectWriteTraceIds the good inputs are created and the bad one is reported: 207
    r = sb.api("POST", "/crm/v3/objects/contacts/batch/create",
               json={"inputs": [{"properties": {"email": "fresh@example.com"}, "objectWriteTraceId": "t1"},
                                {"properties": {"nope": "x"}, "objectWriteTraceId": "t2"}]})
    assert r.status_code == 207 and r.json()["errors"][0]["context"] == {"objectWriteTraceId": ["t2"]}

    too_many = {"inputs": [{"id": str(i)} for i in range(101)]}
    assert sb.api("POST", "/crm/v3/objects/contacts/batch/read", json=too_many).status_code == 400
    r = sb.api("POST", "/crm/v3/objects/contacts/batch/archive", json={"inputs": [{"id": ids[0]}]})
    assert r.status_code == 204 and r.content == b""


def test_merge_moves_emails_and_resolves_old_id(hubspot_sandbox):
    sb = hubspot_sandbox
    a = _contact(sb, email="a@example.com", firstname="A")
    b = _contact(sb, email="b@example.com", lastname="B")
    r = sb.api("POST", "/crm/v3/objects/contacts/merge", json={"primaryObjectId": a["id"], "objectIdToMerge": b["id"]})
    assert r.status_code == 200
    r = sb.api("GET", f"/crm/v3/objects/contacts/{a['id']}",
               params={"properties": "hs_merged_object_ids,hs_additional_emails,lastname"}).json()
    assert r["properties"]["hs_merged_object_ids"] == b["id"]
    assert r["properties"]["hs_additional_emails"] == "b@example.com"
    assert r["properties"]["lastname"] == "B"
    listed = [x["id"] for x in sb.api("GET", "/crm/v3/objects/contacts").json()["results"]]
    assert listed == [a["id"]]
    assert sb.api("PATCH", f"/crm/v3/objects/contacts/{b['id']}", json={"properties": {"phone": "2"}}).json()["id"] \
        == a["id"]
    r = sb.api("POST", "/crm/v3/objects/contacts", json={"properties": {"email": "b@example.com"}})
    assert r.status_code == 409  # additional emails stay unique identifiers


def test_associations_v4(hubspot_sandbox):
    sb = hubspot_sandbox
    c = _contact(sb, email="c@example.com")
    co = sb.api("POST", "/crm/v3/objects/companies", json={"properties": {"name": "Acme"}}).json()
    deal = sb.api("POST", "/crm/v3/objects/deals", json={
        "properties": {"dealname": "D", "dealstage": "closedwon", "pipeline": "default", "amount": "10"},
        "associations": [{"to": {"id": c["id"]}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                             "associationTypeId": 3}]}]}).json()
    r = sb.api("PUT", f"/crm/v4/objects/contacts/{c['id']}/associations/default/companies/{co['id']}")
    assert r.status_code == 200 and r.json()["results"][0]["associationSpec"]["associationTypeId"] == 279
    r = sb.api("PUT", f"/crm/v4/objects/deals/{deal['id']}/associations/companies/{co['id']}",
               json=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}])
    assert r.status_code == 201 and r.json()["labels"] == ["Primary"]
    r = sb.api("GET", f"/crm/v4/objects/deals/{deal['id']}/associations/companies").json()
    assert r["results"][0]["toObjectId"] == co["id"]
    assert {t["typeId"] for t in r["results"][0]["associationTypes"]} == {5, 341}
    r = sb.api("GET", f"/crm/v4/objects/contacts/{c['id']}/associations/deals").json()
    assert r["results"][0]["associationTypes"][0]["typeId"] == 4
    r = sb.api("POST", "/crm/v4/associations/contacts/companies/batch/read",
               json={"inputs": [{"id": c["id"]}, {"id": "999999"}]})
    assert r.status_code == 207 and len(r.json()["results"]) == 1
    assert sb.api("DELETE", f"/crm/v4/objects/contacts/{c['id']}/associations/companies/{co['id']}").status_code == 204
    r = sb.api("GET", f"/crm/v4/objects/contacts/{c['id']}/associations/companies").json()
    assert r["results"] == []


def test_v4_association_batches_are_partial(hubspot_sandbox):
    """One unknown id among good ones fails that pair only: batch/create answers 207 with
    errors[] (201 when all are made), associate/default 200 with the same errors[] (the only
    status its spec declares); the good pairs are made either way."""
    sb = hubspot_sandbox
    c1, c2 = _contact(sb, email="c1@example.com"), _contact(sb, email="c2@example.com")
    co = sb.api("POST", "/crm/v3/objects/companies", json={"properties": {"name": "Acme"}}).json()
    spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]
    r = sb.api("POST", "/crm/v4/associations/contacts/companies/batch/create", json={"inputs": [
        {"from": {"id": c1["id"]}, "to": {"id": co["id"]}, "types": spec},
        {"from": {"id": c2["id"]}, "to": {"id": "999999"}, "types": spec}]})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [(x["fromObjectId"], x["toObjectId"]) for x in body["results"]] == [(c1["id"], co["id"])]
    [err] = body["errors"]
    assert body["numErrors"] == 1 and err["category"] == "OBJECT_NOT_FOUND"
    assert (err["context"]["fromObjectId"], err["context"]["toObjectId"], err["context"]["id"]) == (
        [c2["id"]], ["999999"], ["999999"])
    assert sb.state.associations_of("contacts", int(c1["id"]), "companies") == {int(co["id"]): {279}}
    assert sb.state.associations_of("contacts", int(c2["id"]), "companies") == {}
    r = sb.api("POST", "/crm/v4/associations/contacts/companies/batch/create", json={"inputs": [
        {"from": {"id": c2["id"]}, "to": {"id": co["id"]}, "types": spec}]})
    assert r.status_code == 201 and "errors" not in r.json()
    r = sb.api("POST", "/crm/v4/associations/companies/contacts/batch/associate/default", json={"inputs": [
        {"from": {"id": "888888"}, "to": {"id": c1["id"]}}, {"from": {"id": co["id"]}, "to": {"id": c1["id"]}}]})
    assert r.status_code == 200, r.text
    assert [x["from"]["id"] for x in r.json()["results"]] == [co["id"]]
    assert r.json()["errors"][0]["context"]["fromObjectId"] == ["888888"]
    bad = sb.api("POST", "/crm/v4/associations/contacts/companies/batch/create", json={"inputs": [
        {"from": {"id": c1["id"]}, "to": {"id": co["id"]}, "types": [{"associationTypeId": 3}]}]})
    assert bad.status_code == 207 and bad.json()["errors"][0]["category"] == "VALIDATION_ERROR"


def test_metadata_endpoints(hubspot_sandbox):
    sb = hubspot_sandbox
    props = sb.api("GET", "/crm/v3/properties/contacts").json()["results"]
    assert {"email", "lifecyclestage", "crm_tier"} <= {p["name"] for p in props}
    assert next(p for p in props if p["name"] == "crm_tier")["hubspotDefined"] is False
    pipes = sb.api("GET", "/crm/v3/pipelines/deals").json()["results"]
    assert pipes[0]["id"] == "default" and any(s["id"] == "closedwon" for s in pipes[0]["stages"])
    assert sb.api("GET", "/account-info/v3/details").json()["portalId"] == sb.app.options.portal_id


def test_property_groups_and_ticket_pipelines(hubspot_sandbox):
    sb = hubspot_sandbox
    r = sb.api("GET", "/crm/v3/properties/contacts/groups")
    assert r.status_code == 200, r.text
    groups = [g["name"] for g in r.json()["results"]]
    assert groups[0] == "contactinformation" and "custom" in groups
    props = sb.api("GET", "/crm/v3/properties/contacts").json()["results"]
    assert {p["groupName"] for p in props} == set(groups)          # every property's group is served
    assert sb.api("GET", "/crm/v3/properties/deals/groups/dealinformation").json()["label"]
    assert sb.api("GET", "/crm/v3/properties/deals/groups/nope").status_code == 404
    [pipeline] = sb.api("GET", "/crm/v3/pipelines/tickets").json()["results"]
    assert pipeline["id"] == "0" and [s["metadata"]["ticketState"] for s in pipeline["stages"]] == [
        "OPEN", "OPEN", "OPEN", "CLOSED"]
    assert sb.api("GET", "/crm/v3/pipelines/0-5/0/stages/4").json()["label"] == "Closed"


def test_property_create_validates_as_the_spec_says(hubspot_sandbox):
    sb = hubspot_sandbox
    good = {"name": "crmsync_id", "label": "crmsync id", "type": "string", "fieldType": "text",
            "groupName": "contactinformation", "hasUniqueValue": True}
    for broken, message in (({**good, "label": ""}, "Missing required field(s): label"),
                            ({k: v for k, v in good.items() if k not in ("type", "groupName")},
                             "Missing required field(s): type, groupName"),
                            ({**good, "name": "Crmsync ID"}, "must start with a lowercase letter"),
                            ({**good, "type": "text"}, "type 'text' is not one of"),
                            ({**good, "fieldType": "dropdown"}, "fieldType 'dropdown' is not one of"),
                            ({**good, "groupName": "dealinformation"}, "Property group dealinformation does not exist"),
                            ({**good, "type": "enumeration", "fieldType": "select"}, "options are required")):
        r = sb.api("POST", "/crm/v3/properties/contacts", json=broken)
        assert r.status_code == 400 and message in r.json()["message"], (broken, r.text)
    r = sb.api("POST", "/crm/v3/properties/contacts", json=good)
    assert r.status_code == 201, r.text
    assert (r.json()["name"], r.json()["hasUniqueValue"], r.json()["hubspotDefined"]) == ("crmsync_id", True, False)
    assert sb.api("GET", "/crm/v3/properties/contacts/crmsync_id").json()["groupName"] == "contactinformation"
    again = sb.api("POST", "/crm/v3/properties/contacts", json=good)
    assert again.status_code == 409 and again.json()["category"] == "CONFLICT"
    # the new property holds values and is a unique identifier
    c = _contact(sb, email="m@example.com", crmsync_id="local-1")
    r = sb.api("GET", "/crm/v3/objects/contacts/local-1", params={"idProperty": "crmsync_id",
                                                                  "properties": "crmsync_id"})
    assert r.json()["id"] == c["id"] and r.json()["properties"]["crmsync_id"] == "local-1"
    assert sb.api("POST", "/crm/v3/objects/companies", json={
        "properties": {"name": "X", "crmsync_id": "1"}}).status_code == 400     # contacts only


def test_oauth_refresh_and_expiry(hubspot_sandbox):
    sb = hubspot_sandbox
    o = sb.app.options
    r = sb.http.post(sb.base_url + "/oauth/v1/token", data={
        "grant_type": "refresh_token", "client_id": o.client_id, "client_secret": o.client_secret,
        "refresh_token": o.refresh_token})
    assert r.status_code == 200 and r.json()["expires_in"] == 1800
    token = r.json()["access_token"]
    r = sb.http.get(sb.base_url + "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert "X-HubSpot-RateLimit-Daily" not in r.headers  # not sent for OAuth requests
    sb.admin("POST", "oauth/expire", {"seconds_ago": 7})
    r = sb.http.get(sb.base_url + "/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["category"] == "EXPIRED_AUTHENTICATION"
    assert "expired" in r.json()["message"]
    r = sb.http.post(sb.base_url + "/oauth/v1/token", data={
        "grant_type": "refresh_token", "client_id": o.client_id, "client_secret": o.client_secret,
        "refresh_token": "bogus"})
    assert r.status_code == 400 and r.json()["status"] == "BAD_REFRESH_TOKEN"


def test_admin_edit_acts_like_a_person(hubspot_sandbox):
    sb = hubspot_sandbox
    c = _contact(sb, email="p@example.com")
    edited = sb.edit("contacts", c["id"], {"firstname": "Pat"})
    assert edited["properties"]["firstname"] == "Pat"
    assert edited["updatedAt"] >= c["updatedAt"]
    assert sb.state.records["contacts"][int(c["id"])].props["firstname"] == "Pat"
    log = sb.requests_log()
    assert log["by_endpoint"]["POST /crm/v3/objects/{type}"] == 1
    sb.delete("contacts", c["id"])
    assert sb.api("GET", f"/crm/v3/objects/contacts/{c['id']}").status_code == 404
