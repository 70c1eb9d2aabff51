"""A thin Pipedrive API client on API v2 (v1 only where v2 has nothing: users/me, activity types,
the *Fields lists), over the one request loop of `crmsync.platforms.http.CRMClient`.

Pipedrive's parts of the loop: an API token or OAuth with refresh (`auth`), Pipedrive answers as
typed errors (`errors.error_for`), the plan's limits, each endpoint's token cost and the rate
headers (`limits`). A call takes 1 from the 2-second burst window ("search" calls from the search
window too) and its token cost from the company's daily budget; a 429 stops every worker of the
account for the window (or until the daily reset).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from crmsync.platforms.errors import PlatformError, ValidationError
from crmsync.platforms.http import Call, CRMClient
from crmsync.ratelimit import SEARCH, STANDARD, Demand, Observation

from . import limits as pipedrive_limits
from .auth import OAUTH_TOKEN_URL, PipedriveAuth
from .errors import PLATFORM, error_for, message_of
from .limits import (
    COST_V1_ACTIVITY_TYPES,
    COST_V1_FIELD_CREATE,
    COST_V1_FIELDS,
    COST_V1_USERS_ME,
    COST_V2_DELETE,
    COST_V2_GET,
    COST_V2_LIST,
    COST_V2_PIPELINES,
    COST_V2_SEARCH,
    COST_V2_WRITE,
)

DEFAULT_BASE_URL = "https://api.pipedrive.com"
MAX_PAGE = 500

# Pipedrive object -> path segment of its collection, and the *Fields list (v1) that describes it.
PATHS = {"person": "persons", "organization": "organizations", "deal": "deals", "activity": "activities"}
FIELD_LISTS = {"person": "personFields", "organization": "organizationFields", "deal": "dealFields",
               "activity": "activityFields"}


@dataclass
class ListPage:
    items: list[dict]
    next_cursor: str | None


class PipedriveClient(CRMClient):
    """One Pipedrive company account, reached with an API token or OAuth credentials.

    `oauth` is a dict {"access_token", "refresh_token", "expires_at" (epoch s), "client_id",
    "client_secret", "api_domain"?}; a 401 or an expired token refreshes it once (then
    `save_credentials(new dict)` is called; `load_credentials()` and `redis_client`, see
    `PipedriveAuth`). `account` keys the rate budget (the company id);
    until it is known a hash of the token stands in. `limits` replace the Lite defaults whole (an
    account may run with some kinds off).
    """
    platform = PLATFORM
    default_max_attempts = 3

    def __init__(self, api_token: str | None = None, *, oauth: Mapping | None = None,
                 base_url: str | None = DEFAULT_BASE_URL, budget: Any = None, wait: bool = True,
                 account: str | None = None, limits: Mapping[str, Any] | None = None,
                 max_wait: float = 30.0, timeout: float = 30.0, session: requests.Session | None = None,
                 save_credentials: Callable[[dict], None] | None = None,
                 load_credentials: Callable[[], Mapping | None] | None = None, redis_client: Any = None,
                 token_url: str | None = None, max_attempts: int | None = None):
        if base_url is None:
            base_url = (oauth or {}).get("api_domain") or DEFAULT_BASE_URL
        base_url = base_url.rstrip("/")
        # Pipedrive's OAuth server is its own host; a local stand-in serves /oauth/token itself.
        token_url = token_url or (OAUTH_TOKEN_URL if base_url.endswith(".pipedrive.com") else base_url + "/oauth/token")
        self.auth = PipedriveAuth(api_token, oauth, token_url=token_url, save_credentials=save_credentials,
                                  load_credentials=load_credentials, redis_client=redis_client, timeout=timeout)
        super().__init__(base_url, budget=budget, wait=wait,
                         limits=limits if limits is not None else pipedrive_limits.default_limits(oauth=bool(oauth)),
                         max_wait=max_wait, timeout=timeout, max_attempts=max_attempts, session=session)
        self.account = account

    # ------------------------------------------------------------------ the request loop's hooks
    @property
    def budget_account(self) -> str:
        return self.account or f"token-{self.auth.key}"

    def auth_headers(self) -> dict[str, str]:
        return self.auth.headers(self.session, self.budget_account)

    def refresh_auth(self, response: requests.Response) -> bool:
        if not self.auth.can_refresh:
            return False
        failed = response.request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.auth.refresh(self.session, self.budget_account, failed_token=failed)
        return True

    def demands(self, call: Call) -> list[Demand]:
        # every call counts in the token's burst window; a search in the search window as well
        out = super().demands(call)
        if call.kind == SEARCH and STANDARD in self.limits:
            out.insert(0, Demand(STANDARD, self.limits[STANDARD]))
        return out

    def observations(self, response: requests.Response, call: Call) -> dict[str, Observation]:
        return pipedrive_limits.observations(response.headers, call.kind)

    def error_for(self, response: requests.Response, call: Call) -> PlatformError:
        try:
            body = response.json()
        except ValueError:
            body = None
        return error_for(response.status_code, body, response.headers, where=call.where, reason=response.reason,
                         entity=call.entity, external_id=call.external_id)

    def decode(self, response: requests.Response, call: Call) -> dict:
        body = super().decode(response, call)
        if isinstance(body, dict) and body.get("success") is False:
            raise ValidationError(message_of(body, "request refused"), platform=PLATFORM,
                                  status=response.status_code, entity=call.entity, external_id=call.external_id)
        return body if isinstance(body, dict) else {"data": body}

    def request(self, method: str, path: str, *, params: Mapping | None = None, json: Any = None,
                cost: int = COST_V2_GET, search: bool = False, entity: str | None = None,
                external_id: str | None = None) -> dict:
        """Send one API call (`path` like "/api/v2/persons") and return the decoded JSON body; `cost`
        is its daily token cost. A POST is never retried after a 5xx or a dropped connection (its
        outcome is unknown: the caller asks `find_existing`)."""
        return super().request(method, path, params=params, json=json, kind=SEARCH if search else STANDARD,
                               cost=cost, entity=entity, external_id=external_id)

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

    # ------------------------------------------------------------------ deleted records
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

    def create_field(self, obj: str, name: str, field_type: str = "varchar") -> dict:
        """POST /api/v1/personFields (organizationFields, dealFields): a custom field of `obj`;
        its definition, with the 40-character `key` its values go under."""
        return self.request("POST", f"/api/v1/{FIELD_LISTS[obj]}", json={"name": name, "field_type": field_type},
                            cost=COST_V1_FIELD_CREATE, entity=obj).get("data") or {}

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
