"""The v2 search endpoints: /api/v2/persons/search, /organizations/search and /deals/search."""
from __future__ import annotations

import pytest


def _search(pd, resource: str, **params) -> dict:
    r = pd.api("GET", f"/api/v2/{resource}/search", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body


def _ids(body: dict) -> list[int]:
    return [hit["item"]["id"] for hit in body["data"]["items"]]


def _create(pd, resource: str, body: dict) -> dict:
    r = pd.api("POST", f"/api/v2/{resource}", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_spec_checker_knows_the_search_operations(pipedrive_spec):
    # the teardown check of every test below relies on this: search paths must not be taken for /{id}
    for resource in ("persons", "organizations", "deals"):
        op = pipedrive_spec.operation("GET", f"/api/v2/{resource}/search")
        assert op is not None and op.endswith(f"GET /api/v2/{resource}/search")
    bad = b'{"success": true, "data": {"items": [{"result_score": "high", "item": {"id": 1}}]}}'
    assert pipedrive_spec.check("GET", "/api/v2/persons/search", 200, bad)
    good = b'{"success": true, "data": {"items": [{"result_score": 1, "item": {"id": 1}}]}}'
    assert not pipedrive_spec.check("GET", "/api/v2/persons/search", 200, good)


def test_search_person_by_exact_email(pd):
    org = _create(pd, "organizations", {"name": "Analytical Engines Ltd"})
    ada = _create(pd, "persons", {"name": "Ada Lovelace", "org_id": org["id"],
                                  "emails": [{"value": "Ada@Analytical.test"}],
                                  "phones": [{"value": "+44 20 7946 0000"}]})
    longer = _create(pd, "persons", {"name": "Ada Byron", "emails": [{"value": "ada@analytical.test.example"}]})
    body = _search(pd, "persons", term="ada@analytical.test", fields="email", exact_match="true")
    assert _ids(body) == [ada["id"]]
    assert body["additional_data"] == {"next_cursor": None}
    [hit] = body["data"]["items"]
    assert isinstance(hit["result_score"], (int, float)) and hit["result_score"] > 0
    assert hit["item"] == {"id": ada["id"], "type": "person", "name": "Ada Lovelace",
                           "phones": ["+44 20 7946 0000"], "emails": ["Ada@Analytical.test"], "visible_to": 3,
                           "owner": {"id": 1},
                           "organization": {"id": org["id"], "name": "Analytical Engines Ltd", "address": None},
                           "custom_fields": [], "notes": []}
    # without exact_match the same term is a substring of both addresses
    loose = _search(pd, "persons", term="ada@analytical.test", fields="email")
    assert sorted(_ids(loose)) == sorted([ada["id"], longer["id"]])
    no_org = next(h["item"] for h in loose["data"]["items"] if h["item"]["id"] == longer["id"])
    assert no_org["organization"] is None


def test_search_by_name_substring(pd):
    made = [_create(pd, "persons", {"name": name})["id"] for name in ("Grace Hopper", "Hopper Grace", "GRACEHOPPERS")]
    stored = pd.admin("GET", "records/persons")["data"]
    expected = {p["id"] for p in stored if not p["is_deleted"] and "hopper" in p["name"].casefold()}
    assert set(made) <= expected
    body = _search(pd, "persons", term="hopper", fields="name")
    assert set(_ids(body)) == expected and len(_ids(body)) == len(expected)
    # the whole-name match ranks first; scores never rise down the list
    scores = [hit["result_score"] for hit in body["data"]["items"]]
    assert scores == sorted(scores, reverse=True)
    assert _ids(_search(pd, "persons", term="Grace Hopper", fields="name"))[0] == made[0]
    assert _ids(_search(pd, "persons", term="zzqx-no-such-name")) == []


def test_exact_match_is_a_case_insensitive_whole_value_match(pd):
    acme = _create(pd, "organizations", {"name": "Acme Robotics OÜ", "address": "Tartu mnt 1, Tallinn"})
    assert _ids(_search(pd, "organizations", term="aCME robotics oü", exact_match="true")) == [acme["id"]]
    assert _ids(_search(pd, "organizations", term="acme robotics", exact_match="true")) == []
    assert _ids(_search(pd, "organizations", term="acme robotics", exact_match="false")) == [acme["id"]]
    [hit] = _search(pd, "organizations", term="ACME ROBOTICS OÜ", exact_match="true")["data"]["items"]
    assert hit["result_score"] == 1.0
    assert hit["item"] == {"id": acme["id"], "type": "organization", "name": "Acme Robotics OÜ",
                           "address": "Tartu mnt 1, Tallinn", "visible_to": 3, "owner": {"id": 1},
                           "custom_fields": [], "notes": []}
    # one character is enough with exact_match
    one = _create(pd, "organizations", {"name": "Q"})
    assert _ids(_search(pd, "organizations", term="q", exact_match="true")) == [one["id"]]


@pytest.mark.parametrize("resource,body,term", [
    ("persons", {"name": "Vanishing Vera"}, "vanishing vera"),
    ("organizations", {"name": "Vanishing Ventures"}, "vanishing ventures"),
    ("deals", {"title": "Vanishing deal"}, "vanishing deal"),
])
def test_deleted_records_are_not_found(pd, resource, body, term):
    made = _create(pd, resource, body)
    assert _ids(_search(pd, resource, term=term, exact_match="true")) == [made["id"]]
    assert pd.api("DELETE", f"/api/v2/{resource}/{made['id']}").status_code == 200
    assert _ids(_search(pd, resource, term=term, exact_match="true")) == []
    assert _ids(_search(pd, resource, term=term)) == []


def test_paging_with_cursor(pd):
    made = {_create(pd, "persons", {"name": f"Pager Person {'x' * n}"})["id"] for n in range(7)}
    seen, cursors, pages = [], [], []
    cursor = None
    while True:
        params = {"term": "pager person", "limit": 3, **({"cursor": cursor} if cursor else {})}
        body = _search(pd, "persons", **params)
        pages.append(len(body["data"]["items"]))
        seen.extend(body["data"]["items"])
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
        assert len(pages) < 10
    assert pages == [3, 3, 1] and len(set(cursors)) == 2
    assert [h["item"]["id"] for h in seen] == [h["item"]["id"] for h in _search(
        pd, "persons", term="pager person", limit=500)["data"]["items"]]
    assert {h["item"]["id"] for h in seen} == made and len(seen) == 7
    scores = [h["result_score"] for h in seen]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    # a record created between pages does not shift later pages: the cursor is a position, not an offset
    first = _search(pd, "persons", term="pager person", limit=3)
    _create(pd, "persons", {"name": "Pager Person"})  # the best score: sorts before the cursor
    rest = _search(pd, "persons", term="pager person", limit=500, cursor=first["additional_data"]["next_cursor"])
    assert _ids(first) + _ids(rest) == [h["item"]["id"] for h in seen]


def test_term_too_short_is_400(pd):
    for params in ({"term": "a"}, {"term": " a "}, {"term": ""}, {}, {"term": "a", "exact_match": "false"}):
        r = pd.api("GET", "/api/v2/persons/search", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["success"] is False and "term" in r.json()["error"]
    assert pd.api("GET", "/api/v2/persons/search", params={"term": "a", "exact_match": "true"}).status_code == 200
    assert pd.api("GET", "/api/v2/persons/search", params={"term": "ab"}).status_code == 200


@pytest.mark.parametrize("resource,params", [
    ("persons", {"fields": "title"}), ("persons", {"fields": "name,bogus"}), ("organizations", {"fields": "email"}),
    ("deals", {"fields": "name"}), ("persons", {"exact_match": "yes"}), ("persons", {"limit": 501}),
    ("persons", {"limit": 0}), ("persons", {"cursor": "not-a-cursor"}), ("persons", {"organization_id": "x"}),
    ("deals", {"person_id": "one"}), ("deals", {"status": "deleted"}),
    ("persons", {"include_fields": "deal.cc_email"}),
])
def test_bad_search_parameters_are_400(pd, resource, params):
    r = pd.api("GET", f"/api/v2/{resource}/search", params={"term": "tamm", **params})
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False


def test_list_cursor_is_not_a_search_cursor(pd):
    cursor = pd.api("GET", "/api/v2/persons", params={"limit": 2}).json()["additional_data"]["next_cursor"]
    assert cursor
    assert pd.api("GET", "/api/v2/persons/search", params={"term": "tamm", "cursor": cursor}).status_code == 400


def test_fields_filter_is_respected(pd):
    fields = pd.api("GET", "/api/v1/personFields").json()["data"]
    linkedin = next(f["key"] for f in fields if f["name"] == "LinkedIn profile")
    person = _create(pd, "persons", {"name": "Orchid Keeper", "emails": [{"value": "marigold@flowers.test"}],
                                     "phones": [{"value": "+372 5555 0101"}],
                                     "custom_fields": {linkedin: "https://linkedin.test/in/tulip-grower"}})
    pid = person["id"]
    for term, field in (("orchid", "name"), ("marigold", "email"), ("5555 0101", "phone"),
                        ("tulip-grower", "custom_fields")):
        assert pid in _ids(_search(pd, "persons", term=term)), term  # default: every field
        assert pid in _ids(_search(pd, "persons", term=term, fields=field)), term
        others = ",".join(f for f in ("name", "email", "phone", "custom_fields", "notes") if f != field)
        assert pid not in _ids(_search(pd, "persons", term=term, fields=others)), term
    # a custom-field hit lists the matched value; notes are never matched (the sandbox keeps none)
    [hit] = _search(pd, "persons", term="tulip-grower", fields="custom_fields")["data"]["items"]
    assert hit["item"]["custom_fields"] == ["https://linkedin.test/in/tulip-grower"]
    assert _ids(_search(pd, "persons", term="orchid", fields="notes")) == []
    # organizations: address vs name
    org = _create(pd, "organizations", {"name": "Harbour Lights", "address": "Lighthouse Road 7, Tallinn"})
    assert org["id"] in _ids(_search(pd, "organizations", term="lighthouse road", fields="address"))
    assert org["id"] not in _ids(_search(pd, "organizations", term="lighthouse road", fields="name"))
    assert org["id"] in _ids(_search(pd, "organizations", term="harbour lights", fields="name,notes"))
    # deals: title vs custom fields (a monetary value is searched by its amount)
    deal_fields = pd.api("GET", "/api/v1/dealFields").json()["data"]
    money = next(f["key"] for f in deal_fields if f["name"] == "Contract value")
    deal = _create(pd, "deals", {"title": "Lantern 424242",
                                 "custom_fields": {money: {"value": 987654, "currency": "EUR"}}})
    assert deal["id"] in _ids(_search(pd, "deals", term="987654", fields="custom_fields"))
    assert deal["id"] not in _ids(_search(pd, "deals", term="987654", fields="title"))
    assert deal["id"] not in _ids(_search(pd, "deals", term="424242", fields="custom_fields"))


def test_deal_search_item_and_filters(pd):
    org = _create(pd, "organizations", {"name": "Filter Works"})
    person = _create(pd, "persons", {"name": "Fiona Filter", "org_id": org["id"]})
    deal = _create(pd, "deals", {"title": "Filter pilot", "value": 1200, "person_id": person["id"],
                                 "org_id": org["id"]})
    other = _create(pd, "deals", {"title": "Filter pilot"})
    both = sorted([deal["id"], other["id"]])
    assert sorted(_ids(_search(pd, "deals", term="filter pilot", exact_match="true"))) == both
    assert _ids(_search(pd, "deals", term="filter pilot", person_id=person["id"])) == [deal["id"]]
    assert _ids(_search(pd, "deals", term="filter pilot", organization_id=org["id"])) == [deal["id"]]
    assert _ids(_search(pd, "deals", term="filter pilot", status="won")) == []
    pd.api("PATCH", f"/api/v2/deals/{other['id']}", json={"status": "won", "is_archived": True})
    [won] = _search(pd, "deals", term="filter pilot", status="won")["data"]["items"]
    assert won["item"]["id"] == other["id"] and won["item"]["is_archived"] is True  # archived deals are found
    [hit] = _search(pd, "deals", term="filter pilot", person_id=person["id"],
                    include_fields="deal.cc_email")["data"]["items"]
    assert hit["item"] == {"id": deal["id"], "type": "deal", "title": "Filter pilot", "value": 1200,
                           "currency": "EUR", "status": "open", "visible_to": 3, "owner": {"id": 1},
                           "stage": {"id": 1, "name": "Qualified"},
                           "person": {"id": person["id"], "name": "Fiona Filter"},
                           "organization": {"id": org["id"], "name": "Filter Works"}, "custom_fields": [],
                           "notes": [], "is_archived": False,
                           "cc_email": f"sandbox-7788+deal{deal['id']}@pipedrivemail.com"}
    unlinked = next(h["item"] for h in _search(pd, "deals", term="filter pilot")["data"]["items"]
                    if h["item"]["id"] == other["id"])
    assert unlinked["person"] is None and unlinked["organization"] is None
    # persons: the organization filter
    assert _ids(_search(pd, "persons", term="fiona", organization_id=org["id"])) == [person["id"]]
    assert _ids(_search(pd, "persons", term="fiona", organization_id=org["id"] + 1000)) == []


def test_search_costs_20_tokens_and_is_logged_per_endpoint(pd):
    before = int(pd.api("GET", "/api/v2/persons/1").headers["x-daily-ratelimit-token-remaining"])
    for resource in ("persons", "organizations", "deals"):
        r = pd.api("GET", f"/api/v2/{resource}/search", params={"term": "tamm"})
        assert r.status_code == 200
        assert int(r.headers["x-daily-ratelimit-token-remaining"]) == before - 20
        before -= 20
    pd.api("GET", "/api/v2/deals/search", params={"term": "x"})  # a 400 is charged too, like any request
    counters = pd.admin("GET", "requests")
    assert counters["by_endpoint"]["GET /api/v2/persons/search"] == 1
    assert counters["by_endpoint"]["GET /api/v2/organizations/search"] == 1
    assert counters["by_endpoint"]["GET /api/v2/deals/search"] == 2
    assert "GET /api/v2/persons/{id}" in counters["by_endpoint"]
    assert pd.api("GET", "/api/v2/activities/search", params={"term": "call"}).status_code == 404


def test_admin_update_time_backdates_a_record(pd):
    made = pd.admin("POST", "records/persons", {"name": "Old Timer", "_update_time": "2025-03-01T10:00:00Z"})
    assert made["update_time"] == "2025-03-01T10:00:00Z" and made["add_time"] <= made["update_time"]
    got = pd.api("GET", f"/api/v2/persons/{made['id']}").json()["data"]
    assert got["update_time"] == "2025-03-01T10:00:00Z"
    recent = pd.list_all("persons", updated_since="2025-06-01T00:00:00Z")
    assert made["id"] not in {p["id"] for p in recent}
    edited = pd.admin("PATCH", f"records/persons/{made['id']}", {"name": "Older Timer",
                                                                 "_update_time": "2025-02-01T00:00:00Z"})
    assert edited["name"] == "Older Timer" and edited["update_time"] == "2025-02-01T00:00:00Z"
    assert edited["add_time"] == "2025-02-01T00:00:00Z"  # never after the update time
    by_time = pd.list_all("persons", sort_by="update_time", updated_until="2025-02-01T00:00:01Z")
    assert made["id"] in {p["id"] for p in by_time}
