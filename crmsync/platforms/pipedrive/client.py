"""A thin Pipedrive API client on API v2 (v1 only where v2 has nothing: users/me, activity types,
the *Fields lists).

Every request first asks the account's rate budget (`crmsync.ratelimit.RateBudget`) for one call
from the 2-second burst window and the endpoint's token cost from the daily budget, then feeds the
response's x-ratelimit-* headers back to it; a 429 stops every worker of the account for the
window (or until the daily reset). `_error_for` is the one place where an HTTP answer becomes a
`crmsync.platforms.errors` exception. The API token travels only in the `x-api-token` header and
is never part of a URL, message or log line.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from crmsync import metrics
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

log = logging.getLogger(__name__)

PLATFORM = "pipedrive"
DEFAULT_BASE_URL = "https://api.pipedrive.com"
OAUTH_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"
MAX_PAGE = 500

# Pipedrive object -> path segment of its collection, and the *Fields list (v1) that describes it.
PATHS = {"person": "persons", "organization": "organizations", "deal": "deals", "activity": "activities"}
FIELD_LISTS = {"person": "personFields", "organization": "organizationFields", "deal": "dealFields",
               "activity": "activityFields"}

# Daily token cost per call (x-token-cost of the official specs; reference §5.1).
COST_V2_LIST = 10
COST_V2_GET = 1
COST_V2_WRITE = 5
COST_V2_DELETE = 3
COST_V2_SEARCH = 20
COST_V2_PIPELINES = 5
COST_V1_FIELDS = 20
COST_V1_USERS_ME = 2
COST_V1_ACTIVITY_TYPES = 20

# Budget kinds (crmsync.ratelimit): the per-token 2 s burst, the search burst, the company's day.
KIND_BURST = "standard"
KIND_SEARCH = "search"
KIND_DAILY = "daily"

_SECRET_QUERY = re.compile(r"(api_token|access_token|refresh_token|client_secret)=[^&\s]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove credentials that might sit in a URL's query (the legacy `api_token=` form)."""
    return _SECRET_QUERY.sub(r"\1=***", text)


# Burst requests per 2 s by plan (API token, OAuth) and the daily token multiplier (reference §7).
PLANS = {"lite": (20, 80, 1), "growth": (40, 160, 2), "premium": (100, 400, 5), "ultimate": (120, 480, 7)}


def plan_limits(plan: str | None, *, oauth: bool = False, seats: int | None = None) -> dict:
    """Budget limits for a Pipedrive plan (the config's credentials may name "plan" and "seats");
    unknown or absent plan: {} (the client's Lite defaults). The budget also learns lower burst
    limits from x-ratelimit-limit headers, never higher ones."""
    if not plan or str(plan).lower() not in PLANS:
        return {}
    from crmsync.ratelimit import Limit

    token_burst, oauth_burst, multiplier = PLANS[str(plan).lower()]
    seats = max(1, int(seats or 1))
    return {KIND_BURST: Limit(oauth_burst if oauth else token_burst, 2.0),
            KIND_DAILY: Limit.daily(30_000 * multiplier * seats)}


@dataclass
class ListPage:
    items: list[dict]
    next_cursor: str | None


class PipedriveClient:
    """One Pipedrive company account, reached with an API token or OAuth credentials.

    `oauth` is a dict {"access_token", "refresh_token", "expires_at" (epoch s), "client_id",
    "client_secret", "api_domain"?}; a 401 or an expired token refreshes it once (then
    `save_credentials(new dict)` is called). `account` keys the rate budget (the company id);
    until it is known a hash of the token stands in. `wait=True` sleeps out short budget waits
    (up to `max_wait` s); `wait=False` raises `RateLimited` at once so a task can reschedule.
    """

    def __init__(self, api_token: str | None = None, *, oauth: Mapping | None = None,
                 base_url: str | None = DEFAULT_BASE_URL, budget: Any = None, wait: bool = True,
                 account: str | None = None, limits: Mapping[str, Any] | None = None,
                 max_wait: float = 30.0, timeout: float = 30.0, session: requests.Session | None = None,
                 save_credentials: Callable[[dict], None] | None = None,
                 token_url: str | None = None, retries: int = 2):
        if not api_token and not (oauth and oauth.get("access_token")):
            raise AuthenticationError("no Pipedrive API token or OAuth access token given", platform=PLATFORM)
        self._api_token = api_token
        self._oauth = dict(oauth) if oauth else None
        if base_url is None:
            base_url = (self._oauth or {}).get("api_domain") or DEFAULT_BASE_URL
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.wait = wait
        secret = api_token or (self._oauth or {}).get("refresh_token") or ""
        self.account = account or "token-" + hashlib.sha256(secret.encode()).hexdigest()[:16]
        self.max_wait = max_wait
        self.timeout = timeout
        self.session = session or http_session(self.base_url)
        self.save_credentials = save_credentials
        # Pipedrive's OAuth server is its own host; a local stand-in serves /oauth/token itself.
        self.token_url = token_url or (OAUTH_TOKEN_URL if self.base_url.endswith(".pipedrive.com")
                                       else self.base_url + "/oauth/token")
        self.retries = retries
        self.requests_made = 0
        # Given limits replace the defaults whole: an account may run with some kinds off.
        self._limits = dict(limits) if limits is not None else self._default_limits(bool(self._oauth))

    # ------------------------------------------------------------------ rate budget plumbing
    @staticmethod
    def _default_limits(oauth: bool) -> dict:
        from crmsync.ratelimit import Limit

        # Lite plan, the lowest (reference §7); the budget learns lower numbers from headers.
        return {KIND_BURST: Limit(80 if oauth else 20, 2.0), KIND_SEARCH: Limit(10, 2.0),
                KIND_DAILY: Limit.daily(30_000)}

    def _acquire(self, cost: int, search: bool) -> Any:
        """The grant for one call (None without a budget), handed back to `observe` so the slot
        is counted from when Pipedrive answered."""
        if self.budget is None:
            return None
        from crmsync.ratelimit import Demand, RateBudgetUnavailable

        demands = []
        if KIND_BURST in self._limits:
            demands.append(Demand(KIND_BURST, self._limits[KIND_BURST], 1))
        if search and KIND_SEARCH in self._limits:
            demands.append(Demand(KIND_SEARCH, self._limits[KIND_SEARCH], 1))
        if KIND_DAILY in self._limits:
            demands.append(Demand(KIND_DAILY, self._limits[KIND_DAILY], min(cost, self._limits[KIND_DAILY].capacity)))
        if not demands:
            return None
        deadline = time.monotonic() + (self.max_wait if self.wait else 0.0)
        while True:
            try:
                grant = self.budget.try_acquire_many(PLATFORM, self.account, demands)
            except RateBudgetUnavailable as exc:
                raise TransientError(f"rate budget store unavailable: {type(exc).__name__}",
                                     platform=PLATFORM) from None
            if grant.granted:
                return grant
            left = deadline - time.monotonic()
            if grant.daily_exhausted or grant.wait_seconds > left:
                raise RateLimited(
                    "daily token budget spent" if grant.daily_exhausted else f"{grant.limited_by} budget spent",
                    platform=PLATFORM, retry_after=grant.wait_seconds,
                    resume_at=grant.resume_at if grant.daily_exhausted else None,
                    policy=KIND_DAILY if grant.daily_exhausted else grant.limited_by)
            time.sleep(grant.wait_seconds)

    def _observe(self, response: requests.Response, search: bool, grant: Any = None) -> None:
        if self.budget is None:
            return
        try:
            self.budget.observe(PLATFORM, self.account, response.headers,
                                kind=KIND_SEARCH if search else KIND_BURST, grant=grant)
        except Exception as exc:  # noqa: BLE001 - a budget hiccup must not fail a call that succeeded
            log.warning("pipedrive rate budget observe failed: %s", type(exc).__name__)

    # ------------------------------------------------------------------ auth
    def _auth_headers(self) -> dict:
        if self._oauth:
            expires_at = self._oauth.get("expires_at")
            if expires_at and float(expires_at) - 60 < time.time() and self._oauth.get("refresh_token"):
                self.refresh_oauth()
            return {"Authorization": f"Bearer {self._oauth['access_token']}"}
        return {"x-api-token": self._api_token}

    def refresh_oauth(self) -> dict:
        """Exchange the refresh token for a new access token (Basic client auth, form body)."""
        oauth = self._oauth or {}
        if not (oauth.get("refresh_token") and oauth.get("client_id") and oauth.get("client_secret")):
            raise AuthenticationError("OAuth access token expired and cannot be refreshed", platform=PLATFORM)
        try:
            response = self.session.post(
                self.token_url, data={"grant_type": "refresh_token", "refresh_token": oauth["refresh_token"]},
                auth=(oauth["client_id"], oauth["client_secret"]), timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientError(f"OAuth refresh failed: {type(exc).__name__}", platform=PLATFORM) from None
        if response.status_code >= 500:
            raise TransientError("OAuth refresh failed", platform=PLATFORM, status=response.status_code)
        if response.status_code != 200:
            raise AuthenticationError("OAuth refresh refused; the app must be reinstalled",
                                      platform=PLATFORM, status=response.status_code)
        token = response.json()
        oauth = dict(oauth, access_token=token["access_token"],
                     refresh_token=token.get("refresh_token", oauth["refresh_token"]),
                     expires_at=time.time() + float(token.get("expires_in", 3600)))
        if token.get("api_domain"):
            oauth["api_domain"] = token["api_domain"]
        self._oauth = oauth
        if self.save_credentials is not None:
            self.save_credentials(dict(oauth))
        return oauth

    # ------------------------------------------------------------------ the one request path
    def request(self, method: str, path: str, *, params: Mapping | None = None, json: Any = None,
                cost: int = COST_V2_GET, search: bool = False, entity: str | None = None,
                external_id: str | None = None) -> dict:
        """Send one API call (`path` like "/api/v2/persons") and return the decoded JSON body.

        Idempotent calls (GET, PATCH, DELETE) are retried `retries` times after a 5xx or a dropped
        connection; a POST is not (its outcome is unknown: the caller asks `find_existing`).
        A 429 that names a short wait is waited out when `wait` is set; else `RateLimited`.
        """
        url = self.base_url + path
        refreshed = False
        attempt = 0
        while True:
            grant = self._acquire(cost, search)
            self.requests_made += 1
            try:
                response = self.session.request(method, url, params=params, json=json,
                                                headers=self._auth_headers(), timeout=self.timeout)
            except requests.RequestException as exc:
                error: PlatformError = TransientError(
                    f"{method} {scrub(path)}: {type(exc).__name__}", platform=PLATFORM, entity=entity,
                    external_id=external_id)
            else:
                metrics.observe_crm_response(PLATFORM, response.status_code)
                self._observe(response, search, grant)
                if 200 <= response.status_code < 300:
                    return self._decode(response, method, path, entity, external_id)
                error = self._error_for(response, method, path, entity=entity, external_id=external_id)
                if response.status_code == 429:
                    self._penalize(response, search)
                if isinstance(error, AuthenticationError) and self._oauth and not refreshed \
                        and response.status_code == 401 and self._oauth.get("refresh_token"):
                    refreshed = True
                    self.refresh_oauth()
                    continue
            if isinstance(error, RateLimited):
                if self.wait and error.resume_at is None and error.retry_after <= self.max_wait \
                        and attempt < self.retries:
                    attempt += 1
                    time.sleep(error.retry_after)
                    continue
                raise error
            if isinstance(error, TransientError) and method != "POST" and attempt < self.retries:
                attempt += 1
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
                continue
            raise error

    def _penalize(self, response: requests.Response, search: bool) -> None:
        if self.budget is None:
            return
        try:
            self.budget.penalize_response(PLATFORM, self.account, response.headers, response.content,
                                          kind=KIND_SEARCH if search else KIND_BURST)
        except Exception as exc:  # noqa: BLE001 - same: the 429 is raised either way
            log.warning("pipedrive rate budget penalize failed: %s", type(exc).__name__)

    @staticmethod
    def _decode(response: requests.Response, method: str, path: str, entity, external_id) -> dict:
        try:
            body = response.json()
        except ValueError:
            raise TransientError(f"{method} {scrub(path)}: answer is not JSON", platform=PLATFORM,
                                 status=response.status_code, entity=entity, external_id=external_id) from None
        if isinstance(body, dict) and body.get("success") is False:
            raise ValidationError(_message(body, "request refused"), platform=PLATFORM,
                                  status=response.status_code, entity=entity, external_id=external_id)
        return body if isinstance(body, dict) else {"data": body}

    @staticmethod
    def _error_for(response: requests.Response, method: str, path: str, *, entity: str | None = None,
                   external_id: str | None = None) -> PlatformError:
        """THE place where a non-2xx Pipedrive answer becomes a typed error."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        message = f"{method} {scrub(path)}: " + _message(body, response.reason or "error")
        kw = {"platform": PLATFORM, "status": status, "entity": entity, "external_id": external_id}
        headers = {k.lower(): v for k, v in response.headers.items()}
        if status == 429:
            retry_after = _seconds(headers.get("retry-after"))
            reset = _seconds(headers.get("x-ratelimit-reset"))
            text = (body or {}).get("error", "") if isinstance(body, dict) else ""
            daily = "daily" in str(text).lower() or headers.get("x-daily-ratelimit-token-remaining") == "0"
            if daily:
                wait = retry_after if retry_after is not None else _seconds_to_midnight_utc()
                return RateLimited(message, retry_after=wait, policy=KIND_DAILY,
                                   resume_at=datetime.fromtimestamp(time.time() + wait, UTC), **kw)
            wait = retry_after if retry_after is not None else (reset if reset is not None else 2.0)
            return RateLimited(message, retry_after=max(wait, 0.05), policy=KIND_BURST, **kw)
        if status == 401:
            return AuthenticationError(message, **kw)
        if status == 402:
            return AuthenticationError(message + " (company account not open)", **kw)
        if status == 403:
            if body is None:  # Cloudflare's HTML page: the abuse block after ignoring 429s
                return RateLimited(message + " (blocked; back off)", retry_after=60.0, policy="abuse", **kw)
            if isinstance(body, dict) and body.get("code"):
                return ValidationError(message, **kw)  # an account limit such as open deals
            return AuthenticationError(message, **kw)
        if status in (404, 410):
            return NotFound(message, **kw)
        if status == 409:
            return Conflict(message, **kw)
        if status in (400, 405, 415, 422):
            return ValidationError(message, **kw)
        if status >= 500:
            return TransientError(message, **kw)
        return ValidationError(message, **kw)

    # ------------------------------------------------------------------ generic entity calls
    def list_records(self, obj: str, *, updated_since: datetime | str | None = None,
                     updated_until: datetime | str | None = None, cursor: str | None = None,
                     limit: int = 100, sort_by: str = "update_time", sort_direction: str = "asc",
                     **filters: Any) -> ListPage:
        """One page of GET /api/v2/{objects}; `next_cursor` is None on the last page."""
        params: dict[str, Any] = {"limit": max(1, min(int(limit), MAX_PAGE)), "sort_by": sort_by,
                                  "sort_direction": sort_direction}
        if updated_since is not None:
            params["updated_since"] = _rfc3339(updated_since)
        if updated_until is not None:
            params["updated_until"] = _rfc3339(updated_until)
        if cursor:
            params["cursor"] = cursor
        params.update({k: _param(v) for k, v in filters.items() if v is not None})
        body = self.request("GET", f"/api/v2/{PATHS[obj]}", params=params, cost=COST_V2_LIST, entity=obj)
        return ListPage(list(body.get("data") or []), (body.get("additional_data") or {}).get("next_cursor"))

    def iter_records(self, obj: str, **kw: Any) -> Iterator[dict]:
        cursor = kw.pop("cursor", None)
        while True:
            page = self.list_records(obj, cursor=cursor, **kw)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_record(self, obj: str, record_id: int | str) -> dict:
        body = self.request("GET", f"/api/v2/{PATHS[obj]}/{int(record_id)}", cost=COST_V2_GET,
                            entity=obj, external_id=str(record_id))
        return body.get("data") or {}

    def get_records(self, obj: str, ids: list[int | str]) -> list[dict]:
        """Records by id through the list endpoint's `ids` filter (≤100 per call); missing ids,
        deleted ones and ones the token cannot see are simply absent."""
        out: list[dict] = []
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            out.extend(self.iter_records(obj, ids=",".join(map(str, chunk)), sort_by="id", limit=100))
        return out

    def create_record(self, obj: str, body: Mapping) -> dict:
        answer = self.request("POST", f"/api/v2/{PATHS[obj]}", json=dict(body), cost=COST_V2_WRITE, entity=obj)
        return answer.get("data") or {}

    def update_record(self, obj: str, record_id: int | str, body: Mapping) -> dict:
        answer = self.request("PATCH", f"/api/v2/{PATHS[obj]}/{int(record_id)}", json=dict(body),
                              cost=COST_V2_WRITE, entity=obj, external_id=str(record_id))
        return answer.get("data") or {}

    def delete_record(self, obj: str, record_id: int | str) -> dict:
        answer = self.request("DELETE", f"/api/v2/{PATHS[obj]}/{int(record_id)}", cost=COST_V2_DELETE,
                              entity=obj, external_id=str(record_id))
        return answer.get("data") or {}

    def search(self, obj: str, term: str, *, fields: str | None = None, exact_match: bool = True,
               limit: int = 10, **filters: Any) -> list[dict]:
        """GET /api/v2/{persons|organizations|deals}/search: the found items ({id, name, emails...})."""
        params: dict[str, Any] = {"term": term, "exact_match": "true" if exact_match else "false",
                                  "limit": max(1, min(int(limit), MAX_PAGE))}
        if fields:
            params["fields"] = fields
        params.update({k: _param(v) for k, v in filters.items() if v is not None})
        body = self.request("GET", f"/api/v2/{PATHS[obj]}/search", params=params, cost=COST_V2_SEARCH,
                            search=True, entity=obj)
        return [hit.get("item") or {} for hit in ((body.get("data") or {}).get("items") or [])]

    # ------------------------------------------------------------------ per-entity names
    def list_persons(self, **kw: Any) -> ListPage:
        return self.list_records("person", **kw)

    def get_person(self, person_id: int | str) -> dict:
        return self.get_record("person", person_id)

    def create_person(self, body: Mapping) -> dict:
        return self.create_record("person", body)

    def update_person(self, person_id: int | str, body: Mapping) -> dict:
        return self.update_record("person", person_id, body)

    def delete_person(self, person_id: int | str) -> dict:
        return self.delete_record("person", person_id)

    def search_persons(self, term: str, **kw: Any) -> list[dict]:
        return self.search("person", term, **kw)

    def list_organizations(self, **kw: Any) -> ListPage:
        return self.list_records("organization", **kw)

    def get_organization(self, org_id: int | str) -> dict:
        return self.get_record("organization", org_id)

    def create_organization(self, body: Mapping) -> dict:
        return self.create_record("organization", body)

    def update_organization(self, org_id: int | str, body: Mapping) -> dict:
        return self.update_record("organization", org_id, body)

    def delete_organization(self, org_id: int | str) -> dict:
        return self.delete_record("organization", org_id)

    def search_organizations(self, term: str, **kw: Any) -> list[dict]:
        return self.search("organization", term, **kw)

    def list_deals(self, **kw: Any) -> ListPage:
        return self.list_records("deal", **kw)

    def get_deal(self, deal_id: int | str) -> dict:
        return self.get_record("deal", deal_id)

    def create_deal(self, body: Mapping) -> dict:
        return self.create_record("deal", body)

    def update_deal(self, deal_id: int | str, body: Mapping) -> dict:
        return self.update_record("deal", deal_id, body)

    def delete_deal(self, deal_id: int | str) -> dict:
        return self.delete_record("deal", deal_id)

    def search_deals(self, term: str, **kw: Any) -> list[dict]:
        return self.search("deal", term, **kw)

    def list_deleted_deals(self, *, updated_since: datetime | str | None = None, cursor: str | None = None,
                           limit: int = 500) -> ListPage:
        """Deals deleted within the last 30 days (`status=deleted`); `update_time` is the delete time."""
        return self.list_records("deal", status="deleted", updated_since=updated_since, cursor=cursor,
                                 limit=limit)

    def list_activities(self, **kw: Any) -> ListPage:
        return self.list_records("activity", **kw)

    def get_activity(self, activity_id: int | str) -> dict:
        return self.get_record("activity", activity_id)

    def create_activity(self, body: Mapping) -> dict:
        return self.create_record("activity", body)

    def update_activity(self, activity_id: int | str, body: Mapping) -> dict:
        return self.update_record("activity", activity_id, body)

    def delete_activity(self, activity_id: int | str) -> dict:
        return self.delete_record("activity", activity_id)

    # ------------------------------------------------------------------ account & metadata
    def users_me(self) -> dict:
        """GET /api/v1/users/me (no v2): the token's user, with `company_id` and `company_domain`."""
        return self.request("GET", "/api/v1/users/me", cost=COST_V1_USERS_ME).get("data") or {}

    def list_fields(self, obj: str) -> list[dict]:
        """Every field definition of `obj` from the v1 *Fields list (offset pages of 500)."""
        out: list[dict] = []
        start = 0
        while True:
            body = self.request("GET", f"/api/v1/{FIELD_LISTS[obj]}", params={"start": start, "limit": MAX_PAGE},
                                cost=COST_V1_FIELDS, entity=obj)
            out.extend(body.get("data") or [])
            pagination = (body.get("additional_data") or {}).get("pagination") or {}
            if not pagination.get("more_items_in_collection"):
                return out
            start = pagination.get("next_start") or start + MAX_PAGE

    def field_names(self, obj: str) -> dict[str, str]:
        """{field key (40-char hash for custom fields): field name} of `obj`."""
        return {f["key"]: f.get("name") or f["key"] for f in self.list_fields(obj) if f.get("key")}

    def _all_v2(self, path: str, cost: int) -> list[dict]:
        out: list[dict] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": MAX_PAGE}
            if cursor:
                params["cursor"] = cursor
            body = self.request("GET", path, params=params, cost=cost)
            out.extend(body.get("data") or [])
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return out

    def list_pipelines(self) -> list[dict]:
        return self._all_v2("/api/v2/pipelines", COST_V2_PIPELINES)

    def list_stages(self) -> list[dict]:
        return self._all_v2("/api/v2/stages", COST_V2_PIPELINES)

    def list_activity_types(self) -> list[dict]:
        """GET /api/v1/activityTypes (no v2): [{id, name, key_string, active_flag, ...}]."""
        return list(self.request("GET", "/api/v1/activityTypes", cost=COST_V1_ACTIVITY_TYPES).get("data") or [])


# ---------------------------------------------------------------------- helpers
def _message(body: Any, default: str) -> str:
    if isinstance(body, dict):
        text = body.get("error") or body.get("message") or default
        info = body.get("error_info")
        if info and "developers.pipedrive.com" not in str(info):
            text = f"{text}: {info}"
        return scrub(str(text))[:300]
    return default


def _seconds(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _seconds_to_midnight_utc() -> float:
    # The budget resets at midnight server time; without a Retry-After we assume UTC.
    now = time.time()
    return 86400.0 - (now % 86400.0)


def _rfc3339(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _rfc3339(value)
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    return value
