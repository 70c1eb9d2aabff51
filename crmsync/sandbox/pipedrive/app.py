"""The fake Pipedrive as a WSGI app: API v2 entities, the v1 endpoints v2 lacks, OAuth token refresh,
auth, rate limits, faults and the ``/_sandbox/`` admin API.

Paths are Pipedrive's own: ``/api/v2/...`` and ``/api/v1/...`` (``/v1/...`` is accepted too, as the
old host form). Behaviour choices where the real API is undocumented (see the reference's
UNCONFIRMED list): ``limit`` above 500 is a 400; GET of a soft-deleted record answers 200 with
``is_deleted: true`` until it is purged (30 days), then 404; ``filter_id`` is refused with 400.

The v1 ``*Fields`` lists (``/v1/personFields`` ...) page with ``start``/``limit`` and answer
``additional_data.pagination`` (``start``, ``limit``, ``more_items_in_collection``, ``next_start``),
as Pipedrive does and the client relies on to read past the first page; the public v1 spec's
``GetFieldsResponse`` omits it (it lists only ``success`` and ``data``). A negative ``start`` is a 400
saying it must be ≥ 0.
"""
from __future__ import annotations

import base64
import binascii
import time
from dataclasses import asdict, dataclass, fields, replace
from dataclasses import field as dataclass_field
from urllib.parse import parse_qsl

from ..faults import FaultConfig, FaultInjector, serve_fault
from ..requestlog import RequestLog
from ..wsgi import BadJson, Request, dumps, respond, respond_json
from .admin import handle_admin
from .entities import SINGULAR
from .errors import ApiError, BadRequest, NotFound, PipedriveSandboxError, Unauthorized
from .fields import CREATABLE_FIELD_TYPES
from .generator import GeneratorOptions, generate
from .ratelimits import PipedriveLimits, RateLimitSettings
from .search import DEAL_STATUSES, ID_FILTERS, INCLUDE_FIELDS, SEARCH_FIELDS, SORT_KEY, SearchQuery, search
from .state import (
    DEFAULT_API_TOKEN,
    DEFAULT_COMPANY_ID,
    ListQuery,
    PipedriveState,
    decode_cursor,
    encode_cursor,
)
from .timefmt import parse_rfc3339, v1_time
from .webhooks import WebhookSender

SORTS = {"person": ("id", "update_time", "add_time"), "organization": ("id", "update_time", "add_time"),
         "deal": ("id", "update_time", "add_time"), "activity": ("id", "update_time", "add_time", "due_date")}
INT_FILTERS = {"person": ("owner_id", "org_id", "deal_id"), "organization": ("owner_id",),
               "deal": ("owner_id", "person_id", "org_id", "pipeline_id", "stage_id"),
               "activity": ("owner_id", "deal_id", "person_id", "org_id")}
FIELD_ENDPOINTS = {"personFields": "person", "organizationFields": "organization", "dealFields": "deal",
                   "activityFields": "activity"}
# x-token-cost of each operation, copied from the official specs (a test checks them against the spec).
COSTS = {
    "GET /api/v2/{entity}": 10, "POST /api/v2/{entity}": 5, "GET /api/v2/{entity}/{id}": 1,
    "PATCH /api/v2/{entity}/{id}": 5, "DELETE /api/v2/{entity}/{id}": 3, "GET /api/v2/deals/archived": 20,
    "GET /api/v2/persons/search": 20, "GET /api/v2/organizations/search": 20, "GET /api/v2/deals/search": 20,
    "GET /api/v2/stages": 5, "GET /api/v2/stages/{id}": 1, "GET /api/v2/pipelines": 5,
    "GET /api/v2/pipelines/{id}": 1,
    "GET /api/v1/webhooks": 10, "POST /api/v1/webhooks": 10, "DELETE /api/v1/webhooks/{id}": 6,
    "GET /api/v1/users": 20, "GET /api/v1/users/me": 2, "GET /api/v1/users/{id}": 2,
    "GET /api/v1/{fields}": 20, "GET /api/v1/activityTypes": 20, "GET /api/v1/stages": 10,
    "GET /api/v1/stages/{id}": 2, "GET /api/v1/pipelines": 10, "GET /api/v1/pipelines/{id}": 2,
}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# callables(method, raw_path, query, status, headers, body) run for every API response of every app in
# this process; the test suite checks them all against the official spec
GLOBAL_RESPONSE_HOOKS: list = []


class RawJson:
    """A response body already encoded as JSON bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


@dataclass
class Caller:
    kind: str      # api_token | oauth
    token: str
    user_id: int


def _integer_filters(arg, names: dict[str, str]) -> dict[str, int] | None:
    """{record key: value} of the integer filters given in the query ({query name: record key})."""
    equals = {}
    for name, key in names.items():
        value = arg(name)
        if value is not None and value != "":
            if not value.isdigit():
                raise BadRequest(f"Invalid value for {name}: expected an integer")
            equals[key] = int(value)
    return equals or None


class PipedriveApp:
    """WSGI callable; ``.state``, ``.limits``, ``.faults``, ``.log`` and ``.webhooks`` are public."""

    def __init__(self, state: PipedriveState, limits: PipedriveLimits, faults: FaultInjector,
                 webhooks: WebhookSender, options: PipedriveOptions):
        self.state, self.limits, self.faults, self.webhooks = state, limits, faults, webhooks
        self.log = RequestLog()
        self.response_hooks: list = []  # callables(method, raw_path, query, status, headers, body); tests
        self.initial = replace(options, faults=dict(options.faults))
        self.options = options
        self.ui_user_id = 2  # edits made "in the UI" come from this user

    # ----- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        started = time.perf_counter()
        req = Request(environ)
        seg = req.segments
        if seg and seg[0] == "_sandbox":
            return self._admin(req, start_response)
        if seg[:1] == ["v1"]:  # old host form https://api.pipedrive.com/v1/...
            seg = ["api", *seg]
        headers: dict = {}
        endpoint = req.method + " " + req.path
        try:
            if seg[:2] == ["oauth", "token"] and req.method == "POST":
                endpoint = "POST /oauth/token"
                status, body = self._oauth_token(req)
            else:
                endpoint, handler, cost, args = self._route(req.method, seg)
                fault = serve_fault(self.faults, self.log, req, endpoint)
                if fault.kind == "error":
                    raise ApiError({500: "Internal server error", 502: "Bad gateway",
                                    503: "Service unavailable"}.get(fault.status, "Server error"),
                                   status=fault.status)
                caller = self._authenticate(req)
                headers = self.limits.charge(caller.kind, caller.token, cost, req.method in WRITE_METHODS,
                                             storm=fault.kind == "rate_limited")
                status, body = handler(req, caller, *args)
        except ApiError as exc:
            status, body = exc.status, exc.to_body()
            headers.update(exc.headers)
        except BadJson as exc:
            status, body = 400, BadRequest(str(exc)).to_body()
        except PipedriveSandboxError as exc:
            status, body = 400, BadRequest(str(exc)).to_body()
        self.log.record(req.method, endpoint, status, req.path, req.query_string,
                        (time.perf_counter() - started) * 1000)
        if status == 429:
            self.log.peaks.update(self.limits.peaks())
        payload = body.data if isinstance(body, RawJson) else dumps(body)
        header_list = list(headers.items())
        for hook in self.response_hooks:
            hook(req.method, req.raw_path, req.query_string, status, header_list, payload)
        for hook in GLOBAL_RESPONSE_HOOKS:
            hook(req.method, req.raw_path, req.query_string, status, header_list, payload)
        return respond(start_response, status, payload, header_list)

    def _route(self, method: str, seg: list[str]):
        """(endpoint template, handler, token cost, handler args) for a request, or 404/405."""
        n = len(seg)
        if n >= 3 and seg[0] == "api" and seg[1] == "v2":
            res = seg[2]
            entity = SINGULAR.get(res)
            if entity is not None:
                if n == 3:
                    if method == "GET":
                        return f"GET /api/v2/{res}", self._v2_list, 10, (entity,)
                    if method == "POST":
                        return f"POST /api/v2/{res}", self._v2_create, 5, (entity,)
                elif n == 4 and seg[3] == "archived" and entity == "deal" and method == "GET":
                    return "GET /api/v2/deals/archived", self._v2_list, 20, (entity, True)
                elif n == 4 and seg[3] == "search" and entity in SEARCH_FIELDS and method == "GET":
                    return f"GET /api/v2/{res}/search", self._v2_search, 20, (entity,)
                elif n == 4 and seg[3].isdigit():
                    rid = int(seg[3])
                    tpl = f"/api/v2/{res}/{{id}}"
                    if method == "GET":
                        return "GET " + tpl, self._v2_get, 1, (entity, rid)
                    if method == "PATCH":
                        return "PATCH " + tpl, self._v2_update, 5, (entity, rid)
                    if method == "DELETE":
                        return "DELETE " + tpl, self._v2_delete, 3, (entity, rid)
            elif res in ("stages", "pipelines") and method == "GET":
                if n == 3:
                    return f"GET /api/v2/{res}", self._v2_catalog_list, 5, (res,)
                if n == 4 and seg[3].isdigit():
                    return f"GET /api/v2/{res}/{{id}}", self._v2_catalog_get, 1, (res, int(seg[3]))
        elif n >= 3 and seg[0] == "api" and seg[1] == "v1":
            res = seg[2]
            if res == "webhooks":
                if n == 3 and method == "GET":
                    return "GET /api/v1/webhooks", self._v1_webhooks, 10, ()
                if n == 3 and method == "POST":
                    return "POST /api/v1/webhooks", self._v1_webhook_create, 10, ()
                if n == 4 and method == "DELETE" and seg[3].isdigit():
                    return "DELETE /api/v1/webhooks/{id}", self._v1_webhook_delete, 6, (int(seg[3]),)
            elif res == "users" and method == "GET":
                if n == 3:
                    return "GET /api/v1/users", self._v1_users, 20, ()
                if n == 4 and seg[3] == "me":
                    return "GET /api/v1/users/me", self._v1_me, 2, ()
                if n == 4 and seg[3].isdigit():
                    return "GET /api/v1/users/{id}", self._v1_user, 2, (int(seg[3]),)
            elif res in FIELD_ENDPOINTS and n == 3 and method == "GET":
                return f"GET /api/v1/{res}", self._v1_fields, 20, (FIELD_ENDPOINTS[res],)
            elif res in FIELD_ENDPOINTS and res != "activityFields" and n == 3 and method == "POST":
                # activityFields is read-only in the v1 API: activities take no custom fields there.
                return f"POST /api/v1/{res}", self._v1_field_create, 10, (FIELD_ENDPOINTS[res],)
            elif res == "activityTypes" and n == 3 and method == "GET":
                return "GET /api/v1/activityTypes", self._v1_activity_types, 20, ()
            elif res in ("stages", "pipelines") and method == "GET":
                if n == 3:
                    return f"GET /api/v1/{res}", self._v1_catalog_list, 10, (res,)
                if n == 4 and seg[3].isdigit():
                    return f"GET /api/v1/{res}/{{id}}", self._v1_catalog_get, 2, (res, int(seg[3]))
        raise NotFound("Unknown method or path", status=404)

    # ----- auth ------------------------------------------------------------------------------
    def _authenticate(self, req: Request) -> Caller:
        token = req.header("x-api-token")
        if token:
            uid = self.state.user_for_api_token(token)
            if uid is None:
                raise Unauthorized()
            return Caller("api_token", token, uid)
        authz = req.header("authorization")
        if authz and authz[:7].lower() == "bearer ":
            access = authz[7:].strip()
            uid = self.state.user_for_access_token(access)
            if uid is None:
                raise Unauthorized("Invalid token: access_token is invalid")
            return Caller("oauth", access, uid)
        token = req.arg("api_token")
        if token:
            uid = self.state.user_for_api_token(token)
            if uid is None:
                raise Unauthorized()
            return Caller("api_token", token, uid)
        raise Unauthorized()

    def _oauth_token(self, req: Request):
        """``POST /oauth/token`` (form-encoded, client credentials as Basic): refresh_token grant."""
        form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        authz = req.header("authorization") or ""
        if authz[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(authz[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = None
        if not client_id or self.state.oauth_clients.get(client_id) != secret:
            return 401, {"error": "invalid_client", "error_description": "Invalid client: client is invalid"}
        if "x-www-form-urlencoded" not in (req.header("content-type") or ""):
            return 400, {"error": "invalid_request",
                         "error_description": "Invalid request: content must be application/x-www-form-urlencoded"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "The sandbox supports grant_type=refresh_token"}
        user_id = self.state.refresh_tokens.get(form.get("refresh_token", ""))
        if user_id is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: refresh_token is invalid"}
        return 200, self.state.issue_oauth_tokens(user_id, refresh_token=form["refresh_token"])

    # ----- v2 entities -----------------------------------------------------------------------
    def _list_query(self, req: Request, entity: str) -> ListQuery:
        q = ListQuery()
        arg = req.arg
        if arg("filter_id"):
            raise BadRequest("filter_id is not supported by the sandbox")
        raw = arg("limit")
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= 500:
                raise BadRequest("Invalid value for limit: expected an integer from 1 to 500")
            q.limit = int(raw)
        q.sort_by = arg("sort_by") or "id"
        if q.sort_by not in SORTS[entity]:
            raise BadRequest(f"Invalid value for sort_by: expected one of {', '.join(SORTS[entity])}")
        direction = arg("sort_direction") or "asc"
        if direction not in ("asc", "desc"):
            raise BadRequest("Invalid value for sort_direction: expected asc or desc")
        q.descending = direction == "desc"
        cursor = arg("cursor")
        if cursor:
            q.after = decode_cursor(cursor, q.sort_by, q.descending)
        if arg("updated_since"):
            q.updated_since = parse_rfc3339(arg("updated_since"), "updated_since")
        if arg("updated_until"):
            q.updated_until = parse_rfc3339(arg("updated_until"), "updated_until")
        if arg("ids"):
            q.ids = set(self._int_list(arg("ids"), "ids", 100))
        q.equals = _integer_filters(arg, {key: key for key in INT_FILTERS[entity]})
        if entity == "deal" and arg("status"):
            statuses = set(arg("status").split(","))
            if not statuses <= {"open", "won", "lost", "deleted"}:
                raise BadRequest("Invalid value for status: expected open, won, lost or deleted")
            q.statuses = statuses
        if entity == "activity" and arg("done") is not None:
            if arg("done") not in ("true", "false"):
                raise BadRequest("Invalid value for done: expected true or false")
            q.done = arg("done") == "true"
        return q

    @staticmethod
    def _int_list(raw: str, name: str, most: int) -> list[int]:
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts) or len(parts) > most:
            raise BadRequest(f"Invalid value for {name}: expected up to {most} comma-separated integers")
        return [int(p) for p in parts]

    @staticmethod
    def _custom_field_filter(req: Request):
        raw = req.arg("custom_fields")
        if not raw:
            return None
        keys = [k for k in raw.split(",") if k]
        if len(keys) > 15:
            raise BadRequest("Invalid value for custom_fields: at most 15 keys")
        return set(keys)

    @staticmethod
    def _shape(row: dict, only_custom: set | None) -> dict:
        if only_custom is None or "custom_fields" not in row:
            return row
        return {**row, "custom_fields": {k: v for k, v in row["custom_fields"].items() if k in only_custom}}

    def _v2_list(self, req: Request, caller: Caller, entity: str, archived: bool = False):
        q = self._list_query(req, entity)
        q.archived = archived
        only = self._custom_field_filter(req)
        rows, cursor = self.state.list(entity, q)
        if only is not None:
            rows = [self._shape(r, only) for r in rows]
            return 200, {"success": True, "data": rows, "additional_data": {"next_cursor": cursor}}
        # rows are immutable once stored, so each one's JSON is encoded once and reused (list speed)
        encoded = self.state.encoded
        parts = []
        for row in rows:
            key = (entity, row["id"])
            hit = encoded.get(key)
            if hit is None or hit[0] is not row:
                hit = encoded[key] = (row, dumps(row))
            parts.append(hit[1])
        tail = b'"' + cursor.encode() + b'"' if cursor else b"null"
        return 200, RawJson(b'{"success":true,"data":[' + b",".join(parts)
                            + b'],"additional_data":{"next_cursor":' + tail + b"}}")

    def _v2_get(self, req: Request, caller: Caller, entity: str, rid: int):
        return 200, {"success": True, "data": self._shape(self.state.get(entity, rid),
                                                          self._custom_field_filter(req))}

    def _v2_create(self, req: Request, caller: Caller, entity: str):
        row = self.state.create(entity, req.json(), caller.user_id, "api")
        return 200, {"success": True, "data": row}

    def _v2_update(self, req: Request, caller: Caller, entity: str, rid: int):
        row = self.state.update(entity, rid, req.json(), caller.user_id, "api")
        return 200, {"success": True, "data": row}

    def _v2_delete(self, req: Request, caller: Caller, entity: str, rid: int):
        self.state.delete(entity, rid, caller.user_id, "api")
        return 200, {"success": True, "data": {"id": rid}}

    def _search_query(self, req: Request, entity: str) -> SearchQuery:
        arg = req.arg
        exact = arg("exact_match")
        if exact not in (None, "true", "false"):
            raise BadRequest("Invalid value for exact_match: expected true or false")
        q = SearchQuery(term=(arg("term") or "").strip(), fields=SEARCH_FIELDS[entity], exact=exact == "true")
        if len(q.term) < (1 if q.exact else 2):
            raise BadRequest("Invalid value for term: at least 2 characters are required (1 with exact_match)")
        if arg("fields"):
            wanted = [f.strip() for f in arg("fields").split(",") if f.strip()]
            if not wanted or any(f not in SEARCH_FIELDS[entity] for f in wanted):
                raise BadRequest(f"Invalid value for fields: expected any of {', '.join(SEARCH_FIELDS[entity])}")
            q.fields = tuple(dict.fromkeys(wanted))
        raw = arg("limit")
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= 500:
                raise BadRequest("Invalid value for limit: expected an integer from 1 to 500")
            q.limit = int(raw)
        if arg("cursor"):
            q.after = decode_cursor(arg("cursor"), SORT_KEY, True)
        q.equals = _integer_filters(arg, ID_FILTERS[entity])
        if entity == "deal" and arg("status"):
            if arg("status") not in DEAL_STATUSES:
                raise BadRequest(f"Invalid value for status: expected one of {', '.join(DEAL_STATUSES)}")
            q.status = arg("status")
        if arg("include_fields") and INCLUDE_FIELDS[entity]:  # organizations take no include_fields
            include = {f.strip() for f in arg("include_fields").split(",") if f.strip()}
            if not include <= set(INCLUDE_FIELDS[entity]):
                raise BadRequest(f"Invalid value for include_fields: expected {', '.join(INCLUDE_FIELDS[entity])}")
            q.include = frozenset(include)
        return q

    def _v2_search(self, req: Request, caller: Caller, entity: str):
        items, last = search(self.state, entity, self._search_query(req, entity))
        cursor = encode_cursor(SORT_KEY, True, last) if last is not None else None
        return 200, {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": cursor}}

    def _v2_catalog_list(self, req: Request, caller: Caller, res: str):
        with self.state.lock:
            items = sorted((self.state.stages if res == "stages" else self.state.pipelines).values(),
                           key=lambda r: r["id"])
        if res == "stages" and req.arg("pipeline_id"):
            pid = self._int_list(req.arg("pipeline_id"), "pipeline_id", 1)[0]
            items = [s for s in items if s["pipeline_id"] == pid]
        items = [i for i in items if not i["is_deleted"]]
        start, limit = self._offset_cursor(req)
        page = items[start:start + limit]
        more = start + limit < len(items)
        cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None
        return 200, {"success": True, "data": page, "additional_data": {"next_cursor": cursor}}

    @staticmethod
    def _offset_cursor(req: Request) -> tuple[int, int]:
        raw_limit = req.arg("limit") or "100"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
            raise BadRequest("Invalid value for limit: expected an integer from 1 to 500")
        start = 0
        if req.arg("cursor"):
            try:
                start = int(base64.urlsafe_b64decode(req.arg("cursor")).decode())
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise BadRequest("Invalid cursor") from None
        return start, int(raw_limit)

    def _v2_catalog_get(self, req: Request, caller: Caller, res: str, rid: int):
        item = (self.state.stages if res == "stages" else self.state.pipelines).get(rid)
        if item is None:
            raise NotFound(f"{res[:-1].capitalize()} not found")
        return 200, {"success": True, "data": item}

    # ----- v1 --------------------------------------------------------------------------------
    def _hook_view(self, hook: dict) -> dict:
        last = self.webhooks.last_delivery(hook["id"])
        if last is None:
            return hook
        return {**hook, "last_delivery_time": v1_time(last["t"]), "last_http_status": last["status"]}

    def _v1_webhooks(self, req: Request, caller: Caller):
        with self.state.lock:
            hooks = [self._hook_view(h) for h in self.state.webhooks.values()]
        return 200, {"status": "ok", "success": True, "data": hooks}

    def _v1_webhook_create(self, req: Request, caller: Caller):
        ctype = req.header("content-type") or ""
        body = dict(parse_qsl(req.body.decode())) if "x-www-form-urlencoded" in ctype else req.json()
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        errors = {}
        url = body.get("subscription_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            errors["subscription_url"] = "A valid, publicly accessible URL is required"
        if body.get("event_action") not in ("create", "change", "delete", "added", "updated", "merged",
                                             "deleted", "*"):
            errors["event_action"] = "Must be one of create, change, delete, *"
        if body.get("event_object") not in ("activity", "deal", "lead", "note", "organization", "person",
                                            "pipeline", "product", "stage", "user", "*"):
            errors["event_object"] = "Invalid event_object"
        if body.get("version", "2.0") not in ("1.0", "2.0"):
            errors["version"] = "Must be 1.0 or 2.0"
        if not isinstance(body.get("name"), str) or not body["name"].strip() or len(body["name"]) > 255:
            errors["name"] = "A name of 1 to 255 characters is required"
        if "user_id" in body and body["user_id"] not in self.state.users_by_id:
            errors["user_id"] = "User not found"
        if errors:
            raise ApiError("Validation failed", status=400,
                           body={"success": False, "status": "error", "errors": errors})
        hook = self.state.add_webhook(body, caller.user_id)
        return 201, {"status": "ok", "success": True, "data": hook}

    def _v1_webhook_delete(self, req: Request, caller: Caller, wid: int):
        if wid not in self.state.webhooks:
            raise ApiError("Webhook not found", status=404,
                           body={"success": False, "status": "error", "errors": {"id": "Webhook not found"}})
        self.state.remove_webhook(wid)
        self.webhooks.forget(wid)
        return 200, {"status": "ok", "success": True}

    def _v1_user_view(self, user: dict, caller: Caller) -> dict:
        return {**user, "is_you": user["id"] == caller.user_id}

    def _v1_users(self, req: Request, caller: Caller):
        return 200, {"success": True, "data": [self._v1_user_view(u, caller) for u in self.state.users]}

    def _v1_user(self, req: Request, caller: Caller, uid: int):
        user = self.state.users_by_id.get(uid)
        if user is None:
            raise NotFound("User not found")
        return 200, {"success": True, "data": self._v1_user_view(user, caller)}

    def _v1_me(self, req: Request, caller: Caller):
        c = self.state.company
        data = {**self._v1_user_view(self.state.users_by_id[caller.user_id], caller),
                "company_id": c["id"], "company_name": c["name"], "company_domain": c["domain"],
                "company_country": c["country"], "company_industry": c["industry"],
                "language": {"language_code": "en", "country_code": "US"}}
        return 200, {"success": True, "data": data}

    def _v1_page(self, req: Request, items: list):
        for name in ("start", "limit"):
            raw = req.arg(name)
            if raw is not None and not raw.lstrip("-").isdigit():
                raise BadRequest(f"Invalid value for {name}: expected an integer")
        start, limit = int(req.arg("start") or 0), int(req.arg("limit") or 100)
        if start < 0:
            raise BadRequest(f"Invalid value for start: must be ≥ 0, got {start}")
        if not 1 <= limit <= 500:
            raise BadRequest("Invalid value for limit: expected an integer from 1 to 500")
        page = items[start:start + limit]
        more = start + limit < len(items)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return 200, {"success": True, "data": page, "additional_data": {"pagination": pagination}}

    def _v1_fields(self, req: Request, caller: Caller, entity: str):
        return self._v1_page(req, [f.v1() for f in self.state.fields.by_entity[entity]])

    def _v1_field_create(self, req: Request, caller: Caller, entity: str):
        """A custom field (v1 `createFieldRequest`: name, field_type, options for enum/set)."""
        body = req.json()
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        name, field_type, options = body.get("name"), body.get("field_type"), body.get("options")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise BadRequest("Field name is required (1 to 255 characters)")
        if field_type not in CREATABLE_FIELD_TYPES:
            raise BadRequest(f"field_type must be one of {', '.join(CREATABLE_FIELD_TYPES)}")
        if field_type in ("enum", "set") and (not isinstance(options, list) or not options
                                              or not all(isinstance(o, dict) and o.get("label") for o in options)):
            raise BadRequest("Options are required for enum and set fields: [{\"label\": ...}]")
        fdef = self.state.add_custom_field(entity, name.strip(), field_type,
                                           [o["label"] for o in options] if field_type in ("enum", "set") else None)
        return 200, {"success": True, "data": fdef.v1()}

    def _v1_activity_types(self, req: Request, caller: Caller):
        return 200, {"success": True, "data": list(self.state.activity_types)}

    def _v1_stage(self, stage: dict) -> dict:
        pipeline = self.state.pipelines[stage["pipeline_id"]]
        return {"id": stage["id"], "order_nr": stage["order_nr"], "name": stage["name"],
                "active_flag": not stage["is_deleted"], "deal_probability": stage["deal_probability"],
                "pipeline_id": stage["pipeline_id"], "rotten_flag": stage["is_deal_rot_enabled"],
                "rotten_days": stage["days_to_rotten"], "add_time": v1_time(parse_rfc3339(stage["add_time"], "t")),
                "update_time": v1_time(parse_rfc3339(stage["update_time"], "t")),
                "pipeline_name": pipeline["name"],
                "pipeline_deal_probability": pipeline["is_deal_probability_enabled"]}

    def _v1_pipeline(self, p: dict) -> dict:
        return {"id": p["id"], "name": p["name"], "url_title": p["name"].lower().replace(" ", "-"),
                "order_nr": p["order_nr"], "active": not p["is_deleted"],
                "deal_probability": p["is_deal_probability_enabled"],
                "add_time": v1_time(parse_rfc3339(p["add_time"], "t")),
                "update_time": v1_time(parse_rfc3339(p["update_time"], "t")), "selected": p["is_selected"]}

    def _v1_catalog_list(self, req: Request, caller: Caller, res: str):
        if res == "stages":
            items = [s for s in sorted(self.state.stages.values(), key=lambda s: s["id"]) if not s["is_deleted"]]
            if req.arg("pipeline_id"):
                pid = self._int_list(req.arg("pipeline_id"), "pipeline_id", 1)[0]
                items = [s for s in items if s["pipeline_id"] == pid]
            return 200, {"success": True, "data": [self._v1_stage(s) for s in items]}
        items = [p for p in sorted(self.state.pipelines.values(), key=lambda p: p["id"]) if not p["is_deleted"]]
        return 200, {"success": True, "data": [self._v1_pipeline(p) for p in items]}

    def _v1_catalog_get(self, req: Request, caller: Caller, res: str, rid: int):
        item = (self.state.stages if res == "stages" else self.state.pipelines).get(rid)
        if item is None:
            raise NotFound(f"{res[:-1].capitalize()} not found")
        return 200, {"success": True, "data": self._v1_stage(item) if res == "stages" else self._v1_pipeline(item)}

    # ----- admin -----------------------------------------------------------------------------
    def _admin(self, req: Request, start_response):
        try:
            status, body = handle_admin(self, req)
        except ApiError as exc:
            status, body = exc.status, exc.to_body()
        except (BadJson, PipedriveSandboxError, ValueError, TypeError) as exc:
            status, body = 400, BadRequest(str(exc)).to_body()
        return respond_json(start_response, status, body)

    def seed(self, reset: bool = True, **options) -> dict:
        """Generate records (``GeneratorOptions`` fields: seed, persons, organizations, deals,
        activities, shared_update_time, anchor); by default on a fresh, empty account."""
        gen = GeneratorOptions(**{k: getattr(self.options, k) for k in GENERATOR_FIELDS})
        for key, value in options.items():
            if key not in GENERATOR_FIELDS and key != "anchor":
                raise BadRequest(f"Unknown seed option {key!r}")
            setattr(gen, key, value)
        if reset:
            self.webhooks.reset()
            self.state.reset()
            self._install_default_webhook()
        return generate(self.state, gen)

    def reset(self, reseed: bool = True) -> None:
        """Back to the options the app was created with: records, counters, limits, faults, webhooks."""
        self.options = replace(self.initial, faults=dict(self.initial.faults))
        self.limits.reset()
        self.limits.configure(**self._limit_settings())
        self.faults.reset(self.options.faults)
        self.log.reset()
        self.webhooks.configure(**self._webhook_settings())
        if reseed:
            self.seed()
        else:
            self.webhooks.reset()
            self.state.reset()
            self._install_default_webhook()

    def _limit_settings(self) -> dict:
        o = self.options
        return {"plan": o.plan, "seats": o.seats, "burst_limit": o.rate_limit, "oauth_burst_limit": o.oauth_rate_limit,
                "window_seconds": o.rate_window_ms / 1000, "daily_budget": o.daily_budget}

    def _webhook_settings(self) -> dict:
        o = self.options
        return {"time_scale": o.webhook_time_scale, "timeout": o.webhook_timeout,
                "duplicate_rate": o.webhook_duplicate_rate, "out_of_order": o.webhook_out_of_order}

    def _install_default_webhook(self) -> None:
        o = self.options
        if o.webhook_url:
            user, _, password = (o.webhook_auth or "").partition(":")
            self.state.add_webhook({"subscription_url": o.webhook_url, "event_action": "*", "event_object": "*",
                                    "version": o.webhook_version, "name": "sandbox default",
                                    "http_auth_user": user or None, "http_auth_password": password or None})

    def configure(self, **changes) -> dict:
        """Change settings at run time (any ``PipedriveOptions`` field; ``faults`` is a dict of
        ``FaultConfig`` fields); keeps records and counters. A new ``webhook_url``/``webhook_auth``
        replaces the sandbox's default webhook."""
        fault_changes = changes.pop("faults", None) or {}
        unknown = set(changes) - {f.name for f in fields(PipedriveOptions)}
        if unknown:
            raise BadRequest(f"unknown settings: {sorted(unknown)}")
        for key, value in changes.items():
            setattr(self.options, key, value)
        if "token" in changes:
            with self.state.lock:
                self.state.api_tokens = {changes["token"]: 1}
        self.limits.configure(**self._limit_settings())
        self.webhooks.configure(**self._webhook_settings())
        if {"webhook_url", "webhook_auth", "webhook_version"} & set(changes):
            for hook in [h for h in self.state.webhooks.values() if h["name"] == "sandbox default"]:
                self.state.remove_webhook(hook["id"])
                self.webhooks.forget(hook["id"])
            self._install_default_webhook()
        self.options.faults = self.faults.configure_saved(self.options.faults, fault_changes)
        return self.config_snapshot()

    def config_snapshot(self) -> dict:
        data = asdict(self.options)
        data.pop("token", None)
        data.pop("webhook_auth", None)
        data["faults"] = self.faults.snapshot()
        data["rate_limits"] = self.limits.snapshot()
        data["webhooks"] = self.webhooks.settings()
        return data

    def counters(self, entries: int = 100) -> dict:
        snap = self.log.snapshot(entries)
        peaks = self.limits.peaks()
        snap["peaks"] = {"burst_2s": peaks["burst_window_peak"], "daily_tokens": peaks["daily_tokens_peak"]}
        snap["rejected"] = {"burst_2s": self.limits.burst_rejected, "daily_budget": self.limits.daily_rejected}
        snap["daily_tokens_used"] = peaks["daily_tokens_used"]
        snap["faults_injected"] = dict(self.faults.injected)
        snap["webhooks"] = self.webhooks.counters()
        return snap

    def close(self) -> None:
        self.webhooks.stop()


GENERATOR_FIELDS = ("seed", "persons", "organizations", "deals", "activities", "shared_update_time")


@dataclass
class PipedriveOptions:
    token: str = DEFAULT_API_TOKEN        # the API token of user 1 (an admin)
    company_id: int = DEFAULT_COMPANY_ID
    seed: int = 0
    persons: int = 100
    organizations: int = 20
    deals: int = 50
    activities: int = 100
    shared_update_time: int = 0           # this many records of each entity share one update_time
    plan: str = "growth"                  # lite | growth | premium | ultimate: sets the default limits
    seats: int = 3
    rate_limit: int | None = None         # API-token requests per 2 s window; None = plan's; 0 = none
    oauth_rate_limit: int | None = None   # OAuth-token requests per 2 s window; None = plan's; 0 = none
    rate_window_ms: int = 2000
    daily_budget: int | None = None       # tokens per day; None = 30,000 x plan multiplier x seats; 0 = none
    webhook_url: str | None = None        # registers a catch-all webhook like POST /v1/webhooks would
    webhook_auth: str | None = None       # "user:password" for its HTTP Basic auth
    webhook_version: str = "2.0"
    webhook_time_scale: float = 0.01      # Pipedrive's retry clock (3 s, 30 s, 150 s) times this
    webhook_timeout: float = 10.0
    webhook_duplicate_rate: float = 0.0
    webhook_out_of_order: bool = False
    faults: dict = dataclass_field(default_factory=dict)


def create_app(options: PipedriveOptions | None = None, **overrides) -> PipedriveApp:
    """The Pipedrive sandbox WSGI app, seeded; keyword overrides set any ``PipedriveOptions`` field."""
    opts = replace(options or PipedriveOptions(), **overrides)
    opts.faults = dict(opts.faults or {})
    state = PipedriveState(company_id=opts.company_id, api_tokens={opts.token: 1})
    limits = PipedriveLimits(RateLimitSettings(), clock=state.clock.now)
    sender = WebhookSender(state)
    app = PipedriveApp(state, limits, FaultInjector(FaultConfig()), sender, opts)
    app.reset(reseed=True)
    return app
