"""HubSpot CRM v3 client: the API calls the adapter makes, over the one request loop of
`crmsync.platforms.http.CRMClient`.

HubSpot's parts of the loop: a private-app token or OAuth with refresh (`auth`), HubSpot answers
as typed errors (`errors.error_for`), the account's limits and rate headers (`limits`). A call
takes 1 from "standard" (100 per 10 s) or "search" (5 per s) and 1 from "daily"; every worker of
the account waits after a 429. 5xx and timeouts are retried for calls that are safe to repeat
(reads, search, updates, upserts, archives), never for creates, whose outcome is then unknown and
left to the caller (`HubSpotAdapter.find_existing`).

Calls take the object type's plural ("contacts", "companies", "deals", "tasks", "notes", "calls",
"meetings", "emails"): `list_page`, `get_object`, `create_object`, `update_object`,
`archive_object`, `search`, `search_changed`, `batch_read`, `batch_create`, `batch_update`,
`batch_upsert`, `batch_archive`, `read_associations`, `associate`, `dissociate`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from crmsync.platforms.errors import Conflict, NotFound, PlatformError, TransientError, ValidationError
from crmsync.platforms.http import Call, CRMClient
from crmsync.ratelimit import Limit, Observation, apply_limit_overrides

from . import limits as hubspot_limits
from . import mapping as m
from .auth import make_auth
from .errors import PLATFORM, batch_item_error, error_for, parse_body

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.hubapi.com"
BATCH_LIMIT = 100            # batch read/create/update/upsert/archive
ASSOC_BATCH_LIMIT = 1000     # v4 association batch/read
LIST_LIMIT = 100
SEARCH_LIMIT = 200
DEFAULT_LOOKBACK = timedelta(minutes=5)
INTERVAL_HEADER = "X-HubSpot-RateLimit-Interval-Milliseconds"


def search_lookback() -> timedelta:
    """CRMSYNC_SEARCH_LOOKBACK_SECONDS (DEFAULT_LOOKBACK unless set): the search index shows writes
    late, so an incremental listing starts this long before its checkpoint."""
    from crmsync.settings import get_settings
    return timedelta(seconds=get_settings().search_lookback_seconds)


@dataclass
class BatchItem:
    """The outcome of one input of a batch call, at the input's position."""
    index: int
    object: dict | None = None
    error: PlatformError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _chunks(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


class HubSpotClient(CRMClient):
    platform = PLATFORM
    default_max_attempts = 5

    def __init__(self, credentials: str | dict, base_url: str | None = DEFAULT_BASE_URL, *, budget: Any = None,
                 account_id: str | None = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, redis_client: Any = None,
                 limits: dict | None = None, time_zone: str | None = None, max_wait: float = 30.0,
                 timeout: float = 30.0, max_attempts: int | None = None, session: requests.Session | None = None,
                 limit_overrides: Any = None):
        super().__init__(base_url or DEFAULT_BASE_URL, budget=budget, wait=wait, limits=limits, max_wait=max_wait,
                         timeout=timeout, max_attempts=max_attempts, session=session)
        self.auth = make_auth(credentials, redis_client=redis_client, account_id=account_id,
                              save_credentials=save_credentials)
        self.account_id = account_id
        self.time_zone = time_zone
        self._given_limits = limits is not None
        self._limit_overrides = limit_overrides
        self._limits_zone: str | None = None
        self.session.headers.update({"Accept": "application/json", "User-Agent": "crmsync/0.1"})
        self._interval_ms: str | None = None

    def __repr__(self) -> str:
        return f"HubSpotClient(base_url={self.base_url!r}, account_id={self.account_id!r})"

    # --- the request loop's hooks -----------------------------------------------------------

    @property
    def budget_account(self) -> str:
        """The rate budget is per HubSpot account; before the portal id is known, per credential."""
        return str(self.account_id) if self.account_id else f"cred-{self.auth.key}"

    def set_account(self, account_id: str, time_zone: str | None = None) -> None:
        self.account_id = str(account_id)
        if time_zone:
            self.time_zone = time_zone  # the daily quota resets at midnight there
        if hasattr(self.auth, "set_account"):
            self.auth.set_account(self.account_id)

    @property
    def limits(self) -> dict[str, Limit]:
        zone = self.time_zone or "UTC"
        if not self._given_limits and self._limits_zone != zone:
            self._limits = apply_limit_overrides(hubspot_limits.default_limits(oauth=self.auth.oauth, time_zone=zone),
                                                 self._limit_overrides)
            self._limits_zone = zone
        return self._limits

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self.auth.header(self.session, self.base_url)}

    def refresh_auth(self, response: requests.Response) -> bool:
        # HubSpot says which 401s a new access token cures.
        return self.auth.oauth and parse_body(response.content).get("category") in (
            "EXPIRED_AUTHENTICATION", "INVALID_AUTHENTICATION") and self.auth.force_refresh(self.session, self.base_url)

    def observations(self, response: requests.Response, call: Call) -> dict[str, Observation]:
        interval = response.headers.get(INTERVAL_HEADER)
        if interval:
            self._interval_ms = interval  # 429 bodies lack it; the window seen last is the best guess
        return hubspot_limits.observations(response.headers, call.kind)

    def error_for(self, response: requests.Response, call: Call) -> PlatformError:
        headers = response.headers
        if self._interval_ms and INTERVAL_HEADER not in headers:
            headers = headers.copy()
            headers[INTERVAL_HEADER] = self._interval_ms
        return error_for(response.status_code, response.content, headers, search=(call.kind == "search"),
                         entity=call.entity, external_id=call.external_id, time_zone=self.time_zone)

    # --- account and metadata --------------------------------------------------------------

    def get_account_details(self) -> dict:
        """GET /account-info/v3/details: portalId, timeZone, uiDomain, ..."""
        return self.request("GET", "/account-info/v3/details")

    def get_properties(self, object_type: str) -> list[dict]:
        return self.request("GET", f"/crm/v3/properties/{object_type}").get("results", [])

    def get_property_groups(self, object_type: str) -> list[dict]:
        return self.request("GET", f"/crm/v3/properties/{object_type}/groups").get("results", [])

    def create_property(self, object_type: str, definition: dict) -> dict:
        """POST /crm/v3/properties/{objectType}; a name already taken is a `Conflict` (409)."""
        return self.request("POST", f"/crm/v3/properties/{object_type}", json=definition, entity=object_type)

    def get_pipelines(self, object_type: str = "deals") -> list[dict]:
        return self.request("GET", f"/crm/v3/pipelines/{object_type}").get("results", [])

    # --- single-object calls ---------------------------------------------------------------

    def list_page(self, object_type: str, *, after: str | None = None, limit: int = LIST_LIMIT,
                  properties: Iterable[str] | None = None, associations: Iterable[str] | None = None,
                  archived: bool = False) -> dict:
        params: dict[str, Any] = {"limit": min(limit, LIST_LIMIT), "archived": "true" if archived else "false"}
        if after:
            params["after"] = after
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = ",".join(associations)
        return self.request("GET", f"/crm/v3/objects/{object_type}", params=params)

    def get_object(self, object_type: str, object_id: str, *, properties: Iterable[str] | None = None,
                   associations: Iterable[str] | None = None, id_property: str | None = None,
                   archived: bool = False) -> dict:
        params: dict[str, Any] = {}
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = ",".join(associations)
        if id_property:
            params["idProperty"] = id_property
        if archived:
            params["archived"] = "true"
        return self.request("GET", f"/crm/v3/objects/{object_type}/{quote(str(object_id), safe='')}",
                            params=params, entity=object_type, external_id=str(object_id))

    def create_object(self, object_type: str, properties: dict, associations: list[dict] | None = None) -> dict:
        return self.request("POST", f"/crm/v3/objects/{object_type}",
                            json={"properties": properties, "associations": associations or []},
                            entity=object_type)

    def update_object(self, object_type: str, object_id: str, properties: dict,
                      id_property: str | None = None) -> dict:
        return self.request("PATCH", f"/crm/v3/objects/{object_type}/{quote(str(object_id), safe='')}",
                            params={"idProperty": id_property} if id_property else None,
                            json={"properties": properties}, entity=object_type, external_id=str(object_id))

    def archive_object(self, object_type: str, object_id: str) -> None:
        self.request("DELETE", f"/crm/v3/objects/{object_type}/{quote(str(object_id), safe='')}",
                     entity=object_type, external_id=str(object_id))

    # --- search ----------------------------------------------------------------------------

    def search(self, object_type: str, *, filter_groups: list[dict] | None = None, sorts: list | None = None,
               properties: Iterable[str] | None = None, query: str | None = None, limit: int = SEARCH_LIMIT,
               after: str | int | None = None) -> dict:
        body: dict[str, Any] = {"filterGroups": filter_groups or [], "limit": min(limit, SEARCH_LIMIT)}
        if sorts:
            body["sorts"] = sorts
        if properties:
            body["properties"] = list(properties)
        if query:
            body["query"] = query
        if after not in (None, "", 0, "0"):
            body["after"] = str(after)
        return self.request("POST", f"/crm/v3/objects/{object_type}/search", json=body, kind="search", safe=True)

    # --- incremental listing safe against the 10,000-result search cap ------------------------

    def changed_cursor(self, object_type: str, since: datetime, lookback: timedelta = DEFAULT_LOOKBACK) -> dict:
        """The cursor of a search listing of records modified at or after `since - lookback`.

        The look-back re-reads a few minutes before `since` because the search index shows
        writes late; the engine is idempotent, so those re-reads cost requests, not correctness.
        """
        start = m.to_epoch_ms(since) - int(lookback.total_seconds() * 1000)
        return {"mode": "search", "object": object_type, "since": start, "ts": start, "op": "GTE",
                "tie_id": None}

    def search_changed(self, object_type: str, cursor: dict, *, limit: int = SEARCH_LIMIT,
                       properties: Iterable[str] | None = None) -> tuple[list[dict], dict | None, int]:
        """One step of the listing: (records, next cursor or None when done, requests spent).

        Keyset pagination, never `after`, so no request comes near the 10,000 cap:
        * "ts" step: modified `op` (GTE/GT) ts, sorted by modified ascending. A full page keeps
          back its last timestamp's records (more may share that timestamp beyond the page)
          and the next step starts at that timestamp (GTE), so it re-reads them whole.
        * when a whole page shares one timestamp t (a bulk update can stamp more than 10,000
          records with one ms), switch to the "tie" step: (modified EQ t AND hs_object_id GT
          last id), sorted by hs_object_id, until a short page; then continue at modified GT t.
        HubSpot honours one sort only, which is why ties are never ordered by id in a ts step.
        A static data set lists each record exactly once; a record modified during the listing
        may show again at its new timestamp (a new version: fine for the idempotent engine).
        """
        prop = m.modified_property(object_type)
        props = sorted(set(properties or ()) | {prop, "hs_object_id"})
        limit = max(2, min(limit, SEARCH_LIMIT))
        cur = dict(cursor)
        requests_spent = 0
        while True:
            if cur.get("tie_ts") is not None:
                filters = [{"propertyName": prop, "operator": "EQ", "value": str(cur["tie_ts"])}]
                if cur.get("tie_id"):
                    filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(cur["tie_id"])})
                body = self.search(object_type, filter_groups=[{"filters": filters}], properties=props, limit=limit,
                                   sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}])
                requests_spent += 1
                results = body.get("results") or []
                if len(results) < limit:
                    nxt = {**cur, "ts": cur["tie_ts"], "op": "GT", "tie_ts": None, "tie_id": None}
                else:
                    nxt = {**cur, "tie_id": str(results[-1]["id"])}
                if results:
                    return results, nxt, requests_spent
                cur = nxt
                continue
            filters = [{"propertyName": prop, "operator": cur.get("op", "GTE"), "value": str(cur["ts"])}]
            body = self.search(object_type, filter_groups=[{"filters": filters}], properties=props, limit=limit,
                               sorts=[{"propertyName": prop, "direction": "ASCENDING"}])
            requests_spent += 1
            results = body.get("results") or []
            if len(results) < limit:
                return results, None, requests_spent
            stamps = [_modified_ms(r, prop) for r in results]
            last = stamps[-1]
            if stamps[0] == last:
                cur = {**cur, "tie_ts": last, "tie_id": None}
                continue
            emitted = [r for r, ts in zip(results, stamps) if ts < last]
            return emitted, {**cur, "ts": last, "op": "GTE", "tie_ts": None, "tie_id": None}, requests_spent

    # --- batch calls (split at 100; 207 partial failures become per-item results) ------------
    # A 207's errors[] are the CRM's words in a 2xx answer, which the request loop does not mask:
    # each is masked here (`without_credentials`), or a token echoed there reaches the job's errors.

    def batch_read(self, object_type: str, ids: list[str], *, properties: Iterable[str] | None = None,
                   id_property: str | None = None, archived: bool = False) -> dict[str, dict]:
        """{requested id: object} for the ids that exist (missing ones are left out)."""
        found: dict[str, dict] = {}
        props = list(properties or [])
        for _, chunk in _chunks(list(dict.fromkeys(str(i) for i in ids)), BATCH_LIMIT):
            body = {"properties": props, "propertiesWithHistory": [], "inputs": [{"id": i} for i in chunk]}
            if id_property:
                body["idProperty"] = id_property
            resp = self.request("POST", f"/crm/v3/objects/{object_type}/batch/read",
                                params={"archived": "true" if archived else "false"}, json=body, safe=True)
            for obj in resp.get("results") or []:
                key = str(obj["id"]) if not id_property else str((obj.get("properties") or {}).get(id_property, obj["id"]))
                found[key] = obj
            if id_property:  # HubSpot may normalise the value (email case); match loosely
                lowered = {k.lower(): v for k, v in found.items()}
                for i in chunk:
                    if i not in found and i.lower() in lowered:
                        found[i] = lowered[i.lower()]
        return found

    def batch_create(self, object_type: str, inputs: list[dict]) -> list[BatchItem]:
        """Inputs: {"properties": {...}, "associations": [...]}. Each input gets an
        objectWriteTraceId so HubSpot answers 207 per item instead of failing the batch; a batch
        HubSpot still refuses whole (409 on an existing email, 400) is retried one by one so each
        input gets its own answer."""
        items: list[BatchItem] = []
        for start, chunk in _chunks(inputs, BATCH_LIMIT):
            payload = [{"properties": i.get("properties") or {}, "associations": i.get("associations") or [],
                        "objectWriteTraceId": str(start + n)} for n, i in enumerate(chunk)]
            try:
                resp = self.request("POST", f"/crm/v3/objects/{object_type}/batch/create",
                                    json={"inputs": payload}, entity=object_type)
            except (Conflict, ValidationError) as exc:
                if len(chunk) == 1:
                    items.append(BatchItem(start, error=exc))
                else:
                    items.extend(self._create_one_by_one(object_type, start, chunk))
                continue
            items.extend(self._match_created(object_type, start, chunk, resp))
        return items

    def _create_one_by_one(self, object_type: str, start: int, chunk: list[dict]) -> list[BatchItem]:
        out = []
        for n, i in enumerate(chunk):
            try:
                obj = self.create_object(object_type, i.get("properties") or {}, i.get("associations"))
                out.append(BatchItem(start + n, obj))
            except (Conflict, ValidationError, NotFound) as exc:
                out.append(BatchItem(start + n, error=exc))
        return out

    def _match_created(self, object_type: str, start: int, chunk: list[dict], resp: dict) -> list[BatchItem]:
        failed: dict[int, PlatformError] = {}
        for error in resp.get("errors") or []:
            traces = (error.get("context") or {}).get("objectWriteTraceId") or []
            for trace in traces if isinstance(traces, list) else [traces]:
                try:
                    failed[int(trace)] = self.without_credentials(batch_item_error(error, entity=object_type))
                except (TypeError, ValueError):
                    continue
        results = resp.get("results") or []
        by_trace = {int(r["objectWriteTraceId"]): r for r in results
                    if str(r.get("objectWriteTraceId", "")).isdigit()}
        pending = [r for r in results if not str(r.get("objectWriteTraceId", "")).isdigit()]
        # Results without trace ids: match contacts by email, else by input order.
        by_email = {str((r.get("properties") or {}).get("email") or "").lower(): r for r in pending
                    if (r.get("properties") or {}).get("email")}
        out = []
        for n, i in enumerate(chunk):
            idx = start + n
            if idx in by_trace:
                out.append(BatchItem(idx, by_trace[idx]))
            elif idx in failed:
                out.append(BatchItem(idx, error=failed[idx]))
            else:
                email = str((i.get("properties") or {}).get("email") or "").lower()
                obj = by_email.pop(email, None) if email else None
                if obj is not None:
                    pending.remove(obj)
                elif pending:
                    obj = pending.pop(0)
                out.append(BatchItem(idx, obj) if obj is not None else
                           BatchItem(idx, error=TransientError("batch create returned no result for this input",
                                                               platform=PLATFORM, entity=object_type)))
        return out

    def batch_update(self, object_type: str, inputs: list[dict], *, id_property: str | None = None) -> list[BatchItem]:
        """Inputs: {"id": ..., "properties": {...}}; one item per input, matched by id."""
        return self._batch_by_id(object_type, "update", inputs, id_property=id_property)

    def batch_upsert(self, object_type: str, inputs: list[dict], *, id_property: str | None = None) -> list[BatchItem]:
        """Inputs: {"id": unique value, "idProperty": name (or the id_property default), "properties"}."""
        fixed = []
        for i in inputs:
            prop = i.get("idProperty") or id_property
            if not prop:
                raise ValidationError("batch upsert needs an idProperty per input", platform=PLATFORM,
                                      entity=object_type)
            fixed.append({"id": str(i["id"]), "idProperty": prop, "properties": i.get("properties") or {}})
        return self._batch_by_id(object_type, "upsert", fixed, id_property=None, key_property=True)

    def _batch_by_id(self, object_type: str, op: str, inputs: list[dict], *, id_property: str | None,
                     key_property: bool = False) -> list[BatchItem]:
        items: list[BatchItem] = []
        for start, chunk in _chunks(inputs, BATCH_LIMIT):
            body: dict[str, Any] = {"inputs": [{**i, "id": str(i["id"])} for i in chunk]}
            if id_property:
                body["idProperty"] = id_property
            resp = self.request("POST", f"/crm/v3/objects/{object_type}/batch/{op}", json=body, safe=True,
                                entity=object_type)
            by_key: dict[str, dict] = {}
            for obj in resp.get("results") or []:
                by_key[str(obj["id"])] = obj
                props = obj.get("properties") or {}
                for i in chunk:
                    prop = i.get("idProperty") if key_property else id_property
                    if prop and str(props.get(prop) or "").lower() == str(i["id"]).lower():
                        by_key[str(i["id"])] = obj
            errors: dict[str, PlatformError] = {}
            for error in resp.get("errors") or []:
                for bad in (error.get("context") or {}).get("ids") or []:
                    errors[str(bad)] = self.without_credentials(
                        batch_item_error(error, entity=object_type, external_id=str(bad)))
            for n, i in enumerate(chunk):
                key = str(i["id"])
                if key in by_key:
                    items.append(BatchItem(start + n, by_key[key]))
                else:
                    items.append(BatchItem(start + n, error=errors.get(key) or batch_item_error(
                        {"category": "OBJECT_NOT_FOUND", "message": f"{key} not in the batch {op} results"},
                        entity=object_type, external_id=key)))
        return items

    def batch_archive(self, object_type: str, ids: list[str]) -> None:
        for _, chunk in _chunks([str(i) for i in ids], BATCH_LIMIT):
            self.request("POST", f"/crm/v3/objects/{object_type}/batch/archive",
                         json={"inputs": [{"id": i} for i in chunk]}, safe=True, entity=object_type)

    def associate_many(self, from_type: str, to_type: str, pairs: list[tuple[str, str]],
                       type_id: int) -> list[PlatformError | None]:
        """v4 batch/create of one HUBSPOT_DEFINED type for (from id, to id) pairs, 100 a call:
        one entry per pair, None when it was made. HubSpot answers a batch with some bad pairs
        (an unknown id) with 207 and errors[] naming them; the good ones are made."""
        out: list[PlatformError | None] = []
        for _, chunk in _chunks([(str(a), str(b)) for a, b in pairs], BATCH_LIMIT):
            spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]
            resp = self.request("POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/create",
                                json={"inputs": [{"from": {"id": a}, "to": {"id": b}, "types": spec}
                                                 for a, b in chunk]},
                                safe=True, entity=from_type)  # adding an existing association changes nothing
            made = {(str(r.get("fromObjectId")), str(r.get("toObjectId"))) for r in resp.get("results") or []}
            failed: dict[tuple[str, str], PlatformError] = {}
            for error in resp.get("errors") or []:
                ctx = error.get("context") or {}
                for a in ctx.get("fromObjectId") or []:
                    for b in ctx.get("toObjectId") or []:
                        failed[(str(a), str(b))] = self.without_credentials(batch_item_error(
                            {**error, "message": f"association to {to_type} {b}: {error.get('message')}"},
                            entity=from_type, external_id=str(a)))
            for a, b in chunk:
                if (a, b) in made:
                    out.append(None)
                else:
                    out.append(failed.get((a, b)) or batch_item_error(
                        {"category": "OBJECT_NOT_FOUND", "message": f"{from_type} {a} to {to_type} {b} "
                                                                    "not in the batch create results"},
                        entity=from_type, external_id=a))
        return out

    def dissociate_many(self, from_type: str, to_type: str, pairs: list[tuple[str, str]]) -> None:
        """v4 batch/archive: remove every association of each (from id, to id) pair; a pair that
        is not there (either record gone) is a no-op, as HubSpot's 204 says."""
        grouped: dict[str, list[str]] = {}
        for a, b in pairs:
            grouped.setdefault(str(a), []).append(str(b))
        inputs = [{"from": {"id": a}, "to": [{"id": b} for b in targets]} for a, targets in grouped.items()]
        for _, chunk in _chunks(inputs, BATCH_LIMIT):
            self.request("POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/archive",
                         json={"inputs": chunk}, safe=True, entity=from_type)

    def read_associations(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[dict]]:
        """v4 batch read: {from id: [{"toObjectId", "associationTypes": [...]}, ...]}; ids without
        associations map to []."""
        out: dict[str, list[dict]] = {str(i): [] for i in ids}
        for _, chunk in _chunks(list(out), ASSOC_BATCH_LIMIT):
            resp = self.request("POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
                                json={"inputs": [{"id": i} for i in chunk]}, safe=True)
            for row in resp.get("results") or []:
                out[str((row.get("from") or {}).get("id"))] = row.get("to") or []
        return out


def _modified_ms(obj: dict, prop: str) -> int:
    value = (obj.get("properties") or {}).get(prop) or obj.get("updatedAt")
    return m.to_epoch_ms(value)
