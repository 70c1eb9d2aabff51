"""HubSpot CRM v3 client on one keep-alive `requests.Session`.

Every request takes its cost from the account's rate budget first (`crmsync.ratelimit`: kind
"standard" 100 per 10 s or "search" 5 per s, plus "daily"), lowers the budget from the
X-HubSpot-RateLimit-* headers of the answer, and penalizes the whole account on a 429 so every
worker waits. Non-2xx answers become typed errors in one place (`errors.error_for`).

Retries: with `wait=True` a 429 is waited out (within `max_wait`) and retried for any request,
since HubSpot did not act on it; 5xx/timeouts are retried only for requests that are safe to
repeat (reads, search, updates, upserts, archives) - never for creates, whose outcome is then
unknown and left to the caller (`HubSpotAdapter.find_existing`). With `wait=False` every wait
raises `RateLimited` at once, for a Celery task to reschedule.

The seed's calls exist per object type under Python names: `search_contacts`, `get_contact`,
`create_contact`, `update_contact`, `archive_contact`, `batch_read_contacts`,
`batch_create_contacts`, `batch_update_contacts`, `batch_upsert_contacts`,
`batch_archive_contacts`, `get_recently_modified_contacts` - and the same for companies, deals,
tasks, notes, calls, meetings and emails (singular `get_company`, plural `search_companies`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from crmsync import metrics
from crmsync.platforms.base import http_session
from crmsync.platforms.errors import (
    Conflict,
    NotFound,
    PlatformError,
    RateLimited,
    TransientError,
    ValidationError,
)

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


def default_limits(oauth: bool, time_zone: str = "UTC"):
    """Free/Starter private-app numbers (reference §6.1); OAuth apps get 110 per 10 s and no
    daily cap. The budget learns lower numbers from the response headers."""
    from crmsync.ratelimit import Limit
    limits = {"standard": Limit(110 if oauth else 100, 10.0), "search": Limit(5, 1.0)}
    if not oauth:
        limits["daily"] = Limit.daily(250_000, time_zone)
    return limits


class HubSpotClient:
    def __init__(self, credentials: str | dict, base_url: str | None = DEFAULT_BASE_URL, *, budget: Any = None,
                 account_id: str | None = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, redis_client: Any = None,
                 limits: dict | None = None, time_zone: str | None = None, max_wait: float = 30.0,
                 timeout: float = 30.0, max_attempts: int = 5, session: requests.Session | None = None,
                 limit_overrides: Any = None):
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.auth = make_auth(credentials, redis_client=redis_client, account_id=account_id,
                              save_credentials=save_credentials)
        self.budget = budget
        self.account_id = account_id
        self.wait = wait
        self.time_zone = time_zone
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._limits = limits
        self._limit_overrides = limit_overrides
        self.session = session or http_session(self.base_url)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "crmsync/0.1"})
        self.requests_sent = 0
        self._interval_ms: str | None = None

    def __repr__(self) -> str:
        return f"HubSpotClient(base_url={self.base_url!r}, account_id={self.account_id!r})"

    def close(self) -> None:
        self.session.close()

    # --- plumbing -------------------------------------------------------------------------

    @property
    def budget_account(self) -> str:
        """The rate budget is per HubSpot account; before the portal id is known, per credential."""
        return str(self.account_id) if self.account_id else f"cred-{self.auth.key}"

    def set_account(self, account_id: str, time_zone: str | None = None) -> None:
        self.account_id = str(account_id)
        if time_zone:
            self.time_zone = time_zone
            self._limits = None if self._limits is None else self._limits
        if hasattr(self.auth, "set_account"):
            self.auth.set_account(self.account_id)

    @property
    def limits(self) -> dict:
        if self._limits is None:
            from crmsync.ratelimit import apply_limit_overrides
            self._limits = apply_limit_overrides(default_limits(self.auth.oauth, self.time_zone or "UTC"),
                                                 self._limit_overrides)
        return self._limits

    def _take_budget(self, kind: str) -> Any:
        """The grant for one call (None without a budget), handed back to `observe` so the slot
        is counted from when the CRM answered."""
        if self.budget is None:
            return None
        from crmsync.ratelimit import Demand, RateLimitWait
        demands = [Demand(k, self.limits[k]) for k in (kind, "daily") if k in self.limits]
        if not demands:
            return None
        if self.wait:
            try:
                return self.budget.acquire_many(PLATFORM, self.budget_account, demands, max_wait=self.max_wait)
            except RateLimitWait as exc:
                raise RateLimited(f"rate budget for {kind} calls spent", platform=PLATFORM,
                                  retry_after=exc.wait_seconds, resume_at=exc.resume_at,
                                  policy=exc.kind or kind) from None
        grant = self.budget.try_acquire_many(PLATFORM, self.budget_account, demands)
        if not grant.granted:
            raise RateLimited(f"rate budget for {grant.limited_by or kind} calls spent", platform=PLATFORM,
                              retry_after=grant.wait_seconds,
                              resume_at=grant.resume_at if grant.daily_exhausted else None,
                              policy="daily" if grant.daily_exhausted else (grant.limited_by or kind))
        return grant

    def request(self, method: str, path: str, *, params: Any = None, json: Any = None, kind: str = "standard",
                safe: bool | None = None, entity: str | None = None, external_id: str | None = None) -> Any:
        """One API call; returns the parsed JSON body ({} for 204). `safe`: may a 5xx/timeout be
        retried (default: every method but POST)."""
        if safe is None:
            safe = method != "POST"
        url = self.base_url + path
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            grant = self._take_budget(kind)
            headers = {"Authorization": self.auth.header(self.session, self.base_url)}
            try:
                resp = self.session.request(method, url, params=params, json=json, headers=headers,
                                            timeout=self.timeout)
            except requests.RequestException as exc:
                err = TransientError(f"{method} {path}: {type(exc).__name__}", platform=PLATFORM,
                                     entity=entity, external_id=external_id)
                if safe and self.wait and attempt < self.max_attempts:
                    time.sleep(min(0.1 * attempt, 2.0))
                    continue
                raise err from None
            finally:
                self.requests_sent += 1
            metrics.observe_crm_response(PLATFORM, resp.status_code)
            if self.budget is not None:
                try:
                    if kind == "search":  # search answers carry no rate headers: only restart the slot
                        if grant is not None:
                            self.budget.complete(grant)
                    else:
                        self.budget.observe(PLATFORM, self.budget_account, resp.headers, kind=kind, grant=grant)
                except Exception:  # the budget's bookkeeping must never fail the call that succeeded
                    log.warning("rate budget observe failed", exc_info=True)
            status = resp.status_code
            interval = resp.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
            if interval:
                self._interval_ms = interval  # 429 bodies lack it; the window seen last is the best guess
            if 200 <= status < 300:
                if status == 204 or not resp.content:
                    return {}
                return resp.json()
            body = parse_body(resp.content)
            if status == 401 and self.auth.oauth and not refreshed and \
                    body.get("category") in ("EXPIRED_AUTHENTICATION", "INVALID_AUTHENTICATION"):
                refreshed = self.auth.force_refresh(self.session, self.base_url)
                continue
            answer_headers = resp.headers.copy()
            if self._interval_ms and "X-HubSpot-RateLimit-Interval-Milliseconds" not in resp.headers:
                answer_headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = self._interval_ms
            err = error_for(status, resp.content, answer_headers, search=(kind == "search"), entity=entity,
                            external_id=external_id, time_zone=self.time_zone)
            if isinstance(err, RateLimited):
                self._penalize(err, kind)
                if self.wait and err.policy != "daily" and err.retry_after <= self.max_wait \
                        and attempt < self.max_attempts:
                    if self.budget is None:
                        time.sleep(err.retry_after)
                    continue  # the budget's acquire waits out the penalty
                raise err
            if isinstance(err, TransientError) and safe and self.wait and attempt < self.max_attempts:
                time.sleep(min(getattr(err, "retry_after", None) or 0.1 * attempt, self.max_wait))
                continue
            raise err

    def _penalize(self, err: RateLimited, kind: str) -> None:
        if self.budget is None:
            return
        bucket = err.policy if err.policy in self.limits else kind
        try:
            self.budget.penalize(PLATFORM, self.budget_account, err.retry_after, kind=bucket,
                                 limit=self.limits.get(bucket))
        except Exception:
            log.warning("rate budget penalize failed", exc_info=True)

    # --- account and metadata --------------------------------------------------------------

    def get_account_details(self) -> dict:
        """GET /account-info/v3/details: portalId, timeZone, uiDomain, ..."""
        return self.request("GET", "/account-info/v3/details")

    def get_properties(self, object_type: str) -> list[dict]:
        return self.request("GET", f"/crm/v3/properties/{object_type}").get("results", [])

    def create_property(self, object_type: str, definition: dict) -> dict:
        return self.request("POST", f"/crm/v3/properties/{object_type}", json=definition)

    def get_pipelines(self, object_type: str = "deals") -> list[dict]:
        return self.request("GET", f"/crm/v3/pipelines/{object_type}").get("results", [])

    def get_owners(self) -> list[dict]:
        owners, after = [], None
        while True:
            body = self.request("GET", "/crm/v3/owners", params={"limit": 100, **({"after": after} if after else {})})
            owners.extend(body.get("results", []))
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return owners

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
        from urllib.parse import quote
        return self.request("GET", f"/crm/v3/objects/{object_type}/{quote(str(object_id), safe='')}",
                            params=params, entity=object_type, external_id=str(object_id))

    def create_object(self, object_type: str, properties: dict, associations: list[dict] | None = None) -> dict:
        return self.request("POST", f"/crm/v3/objects/{object_type}",
                            json={"properties": properties, "associations": associations or []},
                            entity=object_type)

    def update_object(self, object_type: str, object_id: str, properties: dict,
                      id_property: str | None = None) -> dict:
        from urllib.parse import quote
        return self.request("PATCH", f"/crm/v3/objects/{object_type}/{quote(str(object_id), safe='')}",
                            params={"idProperty": id_property} if id_property else None,
                            json={"properties": properties}, entity=object_type, external_id=str(object_id))

    def archive_object(self, object_type: str, object_id: str) -> None:
        from urllib.parse import quote
        self.request("DELETE", f"/crm/v3/objects/{object_type}/{quote(str(object_id), safe='')}",
                     entity=object_type, external_id=str(object_id))

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int) -> None:
        """Add one HUBSPOT_DEFINED association (v4 labelled PUT)."""
        self.request("PUT", f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}/{to_id}",
                     json=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
                     entity=from_type, external_id=str(from_id))

    def dissociate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Remove every association between two records (v4)."""
        self.request("DELETE", f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}/{to_id}",
                     entity=from_type, external_id=str(from_id))

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

    def search_objects(self, object_type: str, query_or_value: str, *, properties: Iterable[str] | None = None,
                       limit: int = 100) -> list[dict]:
        """The seed's `searchContacts(query)`: an email (contacts) or domain (companies) is looked up
        exactly; anything else is HubSpot's free-text `query`."""
        text = str(query_or_value).strip()
        if object_type == "contacts" and "@" in text:
            groups = [{"filters": [{"propertyName": "email", "operator": "EQ", "value": text.lower()}]}]
            return self.search(object_type, filter_groups=groups, properties=properties, limit=limit)["results"]
        if object_type == "companies" and "." in text and " " not in text and "@" not in text:
            groups = [{"filters": [{"propertyName": "domain", "operator": "EQ", "value": text.lower()}]}]
            found = self.search(object_type, filter_groups=groups, properties=properties, limit=limit)["results"]
            if found:
                return found
        return self.search(object_type, query=text, properties=properties, limit=limit)["results"]

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

    def iter_changed(self, object_type: str, since: datetime, *, lookback: timedelta = DEFAULT_LOOKBACK,
                     limit: int = SEARCH_LIMIT, properties: Iterable[str] | None = None) -> Iterator[dict]:
        cursor: dict | None = self.changed_cursor(object_type, since, lookback)
        while cursor is not None:
            records, cursor, _ = self.search_changed(object_type, cursor, limit=limit, properties=properties)
            yield from records

    def get_recently_modified(self, object_type: str, since: datetime, limit: int = 100, *,
                              properties: Iterable[str] | None = None,
                              lookback: timedelta = timedelta(0)) -> list[dict]:
        """The seed's `getRecentlyModifiedContacts(since, limit)`: up to `limit` records modified
        at or after `since`, oldest first."""
        out: list[dict] = []
        for record in self.iter_changed(object_type, since, lookback=lookback, limit=min(max(limit, 2), 200),
                                        properties=properties):
            out.append(record)
            if len(out) >= limit:
                break
        return out

    # --- batch calls (split at 100; 207 partial failures become per-item results) ------------

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
                    failed[int(trace)] = batch_item_error(error, entity=object_type)
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
                    errors[str(bad)] = batch_item_error(error, entity=object_type, external_id=str(bad))
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


# --- the seed's per-object calls under Python names ---------------------------------------

_NAMES = {"contacts": "contact", "companies": "company", "deals": "deal", "tasks": "task", "notes": "note",
          "calls": "call", "meetings": "meeting", "emails": "email"}


def _install(plural: str, singular: str) -> None:
    def search(self, query_or_email: str, properties=None, limit: int = 100):
        return self.search_objects(plural, query_or_email, properties=properties, limit=limit)

    def get(self, object_id: str, properties=None, associations=None, id_property=None):
        return self.get_object(plural, object_id, properties=properties, associations=associations,
                               id_property=id_property)

    def create(self, properties: dict, associations=None):
        return self.create_object(plural, properties, associations)

    def update(self, object_id: str, properties: dict, id_property=None):
        return self.update_object(plural, object_id, properties, id_property)

    def archive(self, object_id: str):
        return self.archive_object(plural, object_id)

    def batch_read(self, ids, properties=None, id_property=None):
        return self.batch_read(plural, ids, properties=properties, id_property=id_property)

    def batch_create(self, inputs):
        return self.batch_create(plural, inputs)

    def batch_update(self, inputs):
        return self.batch_update(plural, inputs)

    def batch_upsert(self, inputs, id_property=("email" if plural == "contacts" else None)):
        """Upsert by a unique property (contacts: email). Inputs may be {"id", "properties"} or
        {"email": ..., "properties"}, or bare property dicts carrying the unique property."""
        fixed = []
        for i in inputs:
            props = dict(i.get("properties", i if "properties" not in i and "id" not in i else {}))
            prop = i.get("idProperty") or id_property
            key = i.get("id") or (props.get(prop) if prop else None) or (i.get(prop) if prop else None)
            if prop and prop not in props and key:
                props[prop] = key
            fixed.append({"id": key, "idProperty": prop, "properties": props})
        return self.batch_upsert(plural, fixed)

    def batch_archive(self, ids):
        return self.batch_archive(plural, ids)

    def recently_modified(self, since: datetime, limit: int = 100, properties=None):
        return self.get_recently_modified(plural, since, limit, properties=properties)

    for name, fn in ((f"search_{plural}", search), (f"get_{singular}", get), (f"create_{singular}", create),
                     (f"update_{singular}", update), (f"archive_{singular}", archive),
                     (f"batch_read_{plural}", batch_read), (f"batch_create_{plural}", batch_create),
                     (f"batch_update_{plural}", batch_update), (f"batch_upsert_{plural}", batch_upsert),
                     (f"batch_archive_{plural}", batch_archive),
                     (f"get_recently_modified_{plural}", recently_modified)):
        fn.__name__ = name
        fn.__qualname__ = f"HubSpotClient.{name}"
        setattr(HubSpotClient, name, fn)


for _plural, _singular in _NAMES.items():
    _install(_plural, _singular)


def utcnow() -> datetime:
    return datetime.now(UTC)
