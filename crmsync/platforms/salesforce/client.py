"""Salesforce REST API client on one keep-alive `requests.Session`.

`SalesforceClient.request` is the one request loop (kept in one method so a shared HTTP base can
replace it): it takes a call from the org's daily budget, sends it to the session's
`instance_url`, learns the allocation from the `Sforce-Limit-Info: api-usage=used/max` header every
answer carries ("API Usage", https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm),
refreshes the session once on 401 INVALID_SESSION_ID, and turns every other non-2xx answer into a
typed error in `error_for`.

Limits ("API Request Limits and Allocations",
https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm):
the org's allocation is counted over a rolling 24 hours, org-wide, shared with every other
integration; a spent allocation answers 403 REQUEST_LIMIT_EXCEEDED ("TotalRequests Limit
exceeded."), never 429, with no Retry-After, so retrying soon is pointless: the budget parks the
whole org until the daily bucket resets, and the call raises RateLimited with `resume_at`. The
same code with "ConcurrentPerOrgLongTxn" is the concurrent long-request limit: a short wait.
Our budget models the allocation as a daily bucket (UTC days; the default below is the base
allocation of a paid edition) and takes the real numbers from each answer's header.

Retries: 5xx and dropped connections are retried (with `wait=True`) only for calls that are safe to
repeat: reads, updates, deletes and upserts by external id; never a plain create.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from crmsync.platforms.base import http_session
from crmsync.platforms.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    PlatformError,
    RateLimited,
    TransientError,
    ValidationError,
)

from .auth import PLATFORM, SalesforceAuth

log = logging.getLogger(__name__)

API_VERSION = "62.0"
DAILY = "daily"
# The base allocation of Enterprise/Professional-with-API orgs before per-licence additions; a
# smaller org (Developer Edition: 15,000) shows its own maximum in the first answer's header.
DEFAULT_DAILY_ALLOCATION = 100_000
COLLECTION_LIMIT = 200        # sObject Collections: records per call
RETRIEVE_LIMIT = 2000         # sObject Collections retrieve (POST): ids per call
CONCURRENT_WAIT = 30.0        # seconds before retrying after ConcurrentPerOrgLongTxn
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


def parse_limit_info(value: str | None) -> tuple[int, int] | None:
    """(used, max) from ``Sforce-Limit-Info: api-usage=10018/100000`` (other parts ignored)."""
    m = _LIMIT_INFO.search(value or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def default_limits(allocation: int | None = None) -> dict:
    from crmsync.ratelimit import Limit
    return {DAILY: Limit.daily(int(allocation or DEFAULT_DAILY_ALLOCATION))}


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (unquoted), to the millisecond: SystemModstamp ties are exact."""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def soql_string(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceClient:
    def __init__(self, credentials: dict, *, base_url: str | None = None, budget: Any = None,
                 account_id: str | None = None, wait: bool = True,
                 save_credentials: Callable[[dict], None] | None = None, redis_client: Any = None,
                 limits: dict | None = None, max_wait: float = 30.0, timeout: float = 60.0,
                 max_attempts: int = 4, session: requests.Session | None = None, api_version: str | None = None):
        self.auth = SalesforceAuth(credentials, base_url=base_url, redis_client=redis_client,
                                   save_credentials=save_credentials)
        if account_id and not self.auth.org_id:
            self.auth.org_id = account_id
        self.api_version = str(api_version or credentials.get("api_version") or API_VERSION).lstrip("v")
        self.budget = budget
        self.wait = wait
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.limits = limits if limits is not None else default_limits()
        self.session = session or http_session(self.auth.instance_url or self.auth.login_url)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "crmsync/0.1"})
        self.requests_sent = 0
        self.api_usage: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"SalesforceClient(instance_url={self.auth.instance_url!r}, org={self.auth.org_id!r})"

    @property
    def budget_account(self) -> str:
        return self.auth.key

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if not self.auth.instance_url:
            self.auth.header(self.session)   # the token answer names the instance
        base = self.auth.instance_url or self.auth.login_url
        if path.startswith("/services/"):
            return base + path
        return f"{base}/services/data/v{self.api_version}{path}"

    # ------------------------------------------------------------------ budget
    def _take_budget(self) -> Any:
        if self.budget is None or DAILY not in self.limits:
            return None
        from crmsync.ratelimit import Demand, RateLimitWait
        demands = [Demand(DAILY, self.limits[DAILY])]
        if self.wait:
            try:
                return self.budget.acquire_many(PLATFORM, self.budget_account, demands, max_wait=self.max_wait)
            except RateLimitWait as exc:
                raise RateLimited("the org's API request allocation is spent", platform=PLATFORM,
                                  retry_after=exc.wait_seconds, resume_at=exc.resume_at, policy=DAILY) from None
        grant = self.budget.try_acquire_many(PLATFORM, self.budget_account, demands)
        if not grant.granted:
            raise RateLimited("the org's API request allocation is spent", platform=PLATFORM,
                              retry_after=grant.wait_seconds, resume_at=grant.resume_at, policy=DAILY)
        return grant

    def _observe(self, response: requests.Response, grant: Any) -> None:
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.api_usage = usage
        if self.budget is None:
            return
        try:
            # The budget reads a daily quota's remaining and maximum under these (Pipedrive's) names.
            seen = {} if usage is None or DAILY not in self.limits else {
                "x-daily-ratelimit-token-remaining": str(max(0, usage[1] - usage[0])),
                "x-daily-ratelimit-token-limit": str(usage[1])}
            self.budget.observe(PLATFORM, self.budget_account, seen, kind=DAILY, grant=grant)
        except Exception:  # the budget's bookkeeping must never fail a call that succeeded
            log.warning("salesforce rate budget observe failed", exc_info=True)

    def _park(self, err: RateLimited) -> RateLimited:
        """A spent allocation stops every worker of the org until the daily bucket resets."""
        if self.budget is not None and err.policy == DAILY:
            try:
                until = self.budget.penalize(PLATFORM, self.budget_account, kind=DAILY, limit=self.limits.get(DAILY))
                err.resume_at = until
                err.retry_after = max(1.0, (until - datetime.now(UTC)).total_seconds())
            except Exception:
                log.warning("salesforce rate budget penalize failed", exc_info=True)
        return err

    # ------------------------------------------------------------------ the request loop
    def request(self, method: str, path: str, *, params: Any = None, json: Any = None, safe: bool | None = None,
                entity: str | None = None, external_id: str | None = None, headers: dict | None = None,
                raw: bool = False) -> Any:
        """One API call; the parsed JSON ({} for 204), or the response itself with `raw`. `safe`:
        may a 5xx or dropped connection be retried (default: every method but POST)."""
        safe = method != "POST" if safe is None else safe
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            grant = self._take_budget()
            url = self.url(path)
            authorization = self.auth.header(self.session)
            send = {"Authorization": authorization, **(headers or {})}
            try:
                resp = self.session.request(method, url, params=params, json=json, headers=send, timeout=self.timeout)
            except requests.RequestException as exc:
                if grant is not None and self.budget is not None:
                    self.budget.complete(grant)
                if safe and self.wait and attempt < self.max_attempts:
                    time.sleep(min(0.2 * 2 ** attempt, 2.0))
                    continue
                raise TransientError(f"{method} {_shown(path)}: {type(exc).__name__}", platform=PLATFORM,
                                     entity=entity, external_id=external_id) from None
            finally:
                self.requests_sent += 1
            self._observe(resp, grant)
            if resp.status_code < 300:
                if raw:
                    return resp
                return resp.json() if resp.content and resp.status_code != 204 else {}
            if resp.status_code == 401 and not refreshed and _error_code(resp) == "INVALID_SESSION_ID":
                refreshed = self.auth.force_refresh(self.session, authorization)
                if refreshed:
                    continue
            err = error_for(resp, method, path, entity=entity, external_id=external_id)
            if isinstance(err, RateLimited):
                if err.policy != DAILY and self.wait and err.retry_after <= self.max_wait \
                        and attempt < self.max_attempts:
                    time.sleep(err.retry_after)
                    continue
                raise self._park(err)
            if isinstance(err, TransientError) and safe and self.wait and attempt < self.max_attempts:
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
                continue
            raise err

    # ------------------------------------------------------------------ identity & metadata
    def org_id(self) -> str:
        if self.auth.org_id:
            return self.auth.org_id
        info = self.request("GET", "/services/oauth2/userinfo")
        if not info.get("organization_id"):
            raise AuthenticationError("userinfo did not name an organization", platform=PLATFORM)
        self.auth.org_id = str(info["organization_id"])
        return self.auth.org_id

    def describe(self, obj: str) -> dict:
        return self.request("GET", f"/sobjects/{obj}/describe", entity=obj)

    def limits_info(self) -> dict:
        return self.request("GET", "/limits")

    # ------------------------------------------------------------------ reading
    def query(self, soql: str, *, include_deleted: bool = False) -> dict:
        return self.request("GET", "/queryAll" if include_deleted else "/query", params={"q": soql})

    def query_more(self, next_records_url: str) -> dict:
        return self.request("GET", next_records_url)

    def query_records(self, soql: str, *, include_deleted: bool = False) -> list[dict]:
        """Every record of a query, following nextRecordsUrl until done."""
        body = self.query(soql, include_deleted=include_deleted)
        records = list(body.get("records") or [])
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            body = self.query_more(body["nextRecordsUrl"])
            records += body.get("records") or []
        return records

    def retrieve(self, obj: str, ids: list[str], fields: list[str]) -> list[dict]:
        """The records among `ids` that exist (sObject Collections retrieve, ≤2,000 per call)."""
        out: list[dict] = []
        for start in range(0, len(ids), RETRIEVE_LIMIT):
            chunk = ids[start:start + RETRIEVE_LIMIT]
            found = self.request("POST", f"/composite/sobjects/{obj}", json={"ids": chunk, "fields": fields},
                                 safe=True, entity=obj)
            out += [r for r in found or [] if r]
        return out

    def get_by_external_id(self, obj: str, field: str, value: str) -> dict | None:
        try:
            return self.request("GET", f"/sobjects/{obj}/{field}/{quote(str(value), safe='')}", entity=obj)
        except NotFound:
            return None

    def updated(self, obj: str, start: datetime, end: datetime) -> dict:
        return self.request("GET", f"/sobjects/{obj}/updated/", entity=obj,
                            params={"start": _iso(start), "end": _iso(end)})

    def deleted(self, obj: str, start: datetime, end: datetime) -> dict:
        return self.request("GET", f"/sobjects/{obj}/deleted/", entity=obj,
                            params={"start": _iso(start), "end": _iso(end)})

    def bulk_query(self, soql: str, *, include_deleted: bool = False, page_records: int = 50_000,
                   poll_seconds: float = 1.0) -> Iterator[dict]:
        """Rows of a Bulk API 2.0 query job (for big first pulls): create, poll until JobComplete,
        read the CSV pages by Sforce-Locator. Values arrive as text ('' for null)."""
        job = self.request("POST", "/jobs/query", json={"operation": "queryAll" if include_deleted else "query",
                                                        "query": soql}, safe=True)
        while job.get("state") not in ("JobComplete", "Failed", "Aborted"):
            time.sleep(poll_seconds if job.get("state") == "InProgress" else 0)
            job = self.request("GET", f"/jobs/query/{job['id']}")
        if job["state"] != "JobComplete":
            raise ValidationError(f"bulk query job {job['state']}: {job.get('errorMessage') or ''}"[:300],
                                  platform=PLATFORM)
        locator = None
        while locator != "null":
            params = {"maxRecords": page_records, **({"locator": locator} if locator else {})}
            resp = self.request("GET", f"/jobs/query/{job['id']}/results", params=params, raw=True)
            yield from csv.DictReader(io.StringIO(resp.text))
            locator = resp.headers.get("Sforce-Locator") or "null"

    # ------------------------------------------------------------------ writing (sObject Collections)
    def collection_create(self, records: list[dict]) -> list[dict]:
        return self._collection("POST", "/composite/sobjects", records, safe=False)

    def collection_update(self, records: list[dict]) -> list[dict]:
        return self._collection("PATCH", "/composite/sobjects", records, safe=True)

    def collection_upsert(self, obj: str, field: str, records: list[dict]) -> list[dict]:
        """Upsert by an external id field: safe to repeat, the value finds what a lost answer made."""
        return self._collection("PATCH", f"/composite/sobjects/{obj}/{field}", records, safe=True)

    def _collection(self, method: str, path: str, records: list[dict], *, safe: bool) -> list[dict]:
        out: list[dict] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start:start + COLLECTION_LIMIT]
            results = self.request(method, path, json={"allOrNone": False, "records": chunk}, safe=safe)
            out += list(results or [])
        return out

    def collection_delete(self, ids: list[str]) -> list[dict]:
        out: list[dict] = []
        for start in range(0, len(ids), COLLECTION_LIMIT):
            chunk = ids[start:start + COLLECTION_LIMIT]
            out += list(self.request("DELETE", "/composite/sobjects",
                                     params={"ids": ",".join(chunk), "allOrNone": "false"}) or [])
        return out


# ---------------------------------------------------------------------- errors
def _error_code(resp: requests.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode")
    return None


def _shown(path: str) -> str:
    return path.split("?", 1)[0][:120]


def _seconds_to_utc_midnight() -> float:
    now = datetime.now(UTC)
    return ((now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0) - now).total_seconds()


def error_for(resp: requests.Response, method: str, path: str, *, entity: str | None = None,
              external_id: str | None = None) -> PlatformError:
    """THE place where a non-2xx Salesforce answer becomes a typed error ("Status Codes and Error
    Responses", https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm)."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    code = str(first.get("errorCode") or "")
    message = f"{method} {_shown(path)}: {code or resp.reason or 'error'}: {str(first.get('message') or '')[:200]}"
    kw = {"platform": PLATFORM, "status": status, "entity": entity, "external_id": external_id}
    if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        if "concurrent" in str(first.get("message", "")).lower():
            return RateLimited(message, retry_after=CONCURRENT_WAIT, policy="concurrent", **kw)
        wait = _seconds_to_utc_midnight()
        return RateLimited(message, retry_after=wait, policy=DAILY,
                           resume_at=datetime.now(UTC) + timedelta(seconds=wait), **kw)
    if status in (401, 403):
        return AuthenticationError(message, **kw)
    if status == 300:
        return Conflict(f"{method} {_shown(path)}: the external id matches several records", **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 409 or code == "DUPLICATE_VALUE":
        return Conflict(message, **kw)
    if status >= 500 or status == 429:
        return TransientError(message, **kw)
    return ValidationError(message, **kw)


def record_error(result: dict, *, entity: str | None = None, external_id: str | None = None) -> PlatformError:
    """The error of one failed record of an sObject Collections call (`statusCode` errors)."""
    errors = result.get("errors") or [{}]
    code = str(errors[0].get("statusCode") or "UNKNOWN")
    message = f"{code}: {str(errors[0].get('message') or '')[:200]}"
    kw = {"platform": PLATFORM, "entity": entity, "external_id": external_id}
    if code in ("ENTITY_IS_DELETED", "NOT_FOUND"):
        return NotFound(message, **kw)
    if code == "DUPLICATE_VALUE":
        return Conflict(message, **kw)
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimited(message, retry_after=CONCURRENT_WAIT, policy="concurrent", **kw)
    return ValidationError(message, **kw)


def _iso(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
