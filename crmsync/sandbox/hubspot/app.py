"""The HubSpot sandbox WSGI app: CRM v3 objects, batch, search, merge, associations v4 (batches partial,
per input), properties (read, create, groups), pipelines (deals, tickets), account info, OAuth, rate
limits, faults, webhooks and the ``/_sandbox/`` admin API. No owners API: nothing in crmsync calls it."""
from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from ..faults import FaultConfig, FaultInjector, serve_fault
from ..limits import DailyQuota, RollingWindow
from ..requestlog import RequestLog
from ..webhooks import WebhookDispatcher, WebhookSettings
from ..wsgi import BadJson, Request, dumps, respond
from . import objects as ot
from .errors import ApiError, not_found, validation
from .generator import seed_portal
from .signing import render_delivery
from .store import PortalState, Record, iso

DEFAULT_SUBSCRIPTIONS = tuple(f"{t}.{k}" for t in ("contact", "company", "deal")
                              for k in ("creation", "deletion", "propertyChange", "merge", "restore"))
SUBSCRIPTION_IDS = {f"{t}.{k}": 100 + i * 10 + j
                    for i, t in enumerate(("contact", "company", "deal", "object"))
                    for j, k in enumerate(("creation", "deletion", "propertyChange", "merge", "restore",
                                           "associationChange", "privacyDeletion"))}


# Observers of every response of every HubSpotApp in this process: (method, raw_path, query, status,
# headers, body). The test suite registers one to check all responses against the OpenAPI specs.
GLOBAL_RESPONSE_HOOKS: list = []


@dataclass
class HubSpotOptions:
    token: str = "pat-na1-sandbox-0000"          # static private-app token
    # False: the token lacks the crm.schemas.*.write scopes, so creating a property is answered
    # 403 MISSING_SCOPES (https://developers.hubspot.com/docs/api/crm/properties).
    schema_write: bool = True
    portal_id: int = 12345678
    app_id: int = 1160452
    # seeded data
    seed: int = 0
    contacts: int = 0
    companies: int = 0
    deals: int = 0
    tasks: int = 0
    notes: int = 0
    calls: int = 0
    meetings: int = 0
    emails: int = 0
    same_modified: int = 0
    # limits (0 = none)
    rate_limit: int = 100                # per rolling window, per app
    rate_window_ms: int = 10_000
    oauth_rate_limit: int = 110          # public OAuth apps: per installing account
    daily_limit: int = 250_000
    search_rate_limit: int = 5           # per second, per account
    retry_after: bool = False            # add Retry-After to 429s (unconfirmed for HubSpot; off by default)
    # search
    index_lag_ms: int = 0
    search_cap_mode: str = "after+limit"
    empty_properties: str = "omit"       # "omit" (spec-valid) or "null" (what HubSpot really does at times)
    # Serialise every answer when asked, as a real server does (no page or record cache): for
    # benchmarks whose figure must not owe anything to the sandbox's caches.
    serialise_per_request: bool = False
    # OAuth
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    refresh_token: str = "na1-sandbox-refresh-token"
    access_token_ttl: int = 1800
    # webhooks
    webhook_url: str | None = None
    webhook_secret: str | None = None    # defaults to client_secret, as HubSpot signs with the app secret
    signature_version: str = "v3"        # "v3" (v3 + v1 headers, as HubSpot sends), "v1", "v2"
    webhook_subscriptions: tuple = DEFAULT_SUBSCRIPTIONS
    webhook_batch_size: int = 100
    webhook_max_retries: int = 10
    webhook_retry_delay: float = 0.05
    webhook_duplicate_rate: float = 0.0
    webhook_out_of_order: bool = False
    webhook_timeout: float = 5.0
    faults: FaultConfig = field(default_factory=FaultConfig)


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _multi(req: Request, name: str) -> list[str]:
    """Repeated and comma-separated forms, mixed (§1)."""
    out = []
    for v in req.query.get(name, ()):
        out.extend(p for p in v.split(",") if p)
    return out


_FIXED = {"search", "batch", "merge", "gdpr-delete", "associations", "default", "read", "create", "update",
          "upsert", "archive", "labels", "stages", "details", "token", "v3", "v4", "v1", "crm", "objects",
          "properties", "pipelines", "account-info", "oauth", "access-tokens", "refresh-tokens"}


def _template(segs: list[str]) -> str:
    """Route key for counters: ids and type names replaced by placeholders."""
    out = []
    for i, s in enumerate(segs):
        if s in _FIXED and not (i == 3 and segs[:2] in (["crm", "v3"], ["crm", "v4"])):
            out.append(s)
        elif i == 3 or (i == 6 and segs[5:6] == ["associations"]) or (i == 7 and segs[6:7] == ["default"]):
            out.append("{type}")
        else:
            out.append("{id}")
    return "/" + "/".join(out)


def serialised(rec: Record) -> dict:
    """The record's JSON pieces, kept in its cache (dropped on every change): each non-empty
    property as `"name":value`, and the tail after the properties. Seeding makes them up front."""
    pieces = rec.cache.get("json")
    if pieces is None:
        props = {name: b"%s:%s" % (dumps(name), dumps(value)) for name, value in rec.props.items() if value is not None}
        tail = {"createdAt": iso(rec.created), "updatedAt": iso(rec.updated), "archived": rec.archived}
        if rec.archived:
            tail["archivedAt"] = iso(rec.archived_at)
        pieces = rec.cache["json"] = {"props": props, "tail": dumps(tail)[1:]}
    return pieces


def _null_property(name: str) -> bytes:
    return dumps(name) + b":null"


def _ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubSpotApp:
    """WSGI app. ``app.state`` is the portal (records), ``app.log`` the request log."""

    def __init__(self, options: HubSpotOptions | None = None, **overrides):
        self.initial = options or HubSpotOptions()
        for k, v in overrides.items():
            setattr(self.initial, k, v)
        self.state = PortalState(self.initial.portal_id, self.initial.app_id)
        self.state.listener = self._on_events
        self.log = RequestLog()
        self.faults = FaultInjector(FaultConfig(**asdict(self.initial.faults)))
        self.webhooks = WebhookDispatcher(self._render_delivery, WebhookSettings())
        self.response_hooks: list = []   # callables(method, raw_path, query, status, headers, body)
        self._tokens: dict[str, float] = {}       # OAuth access token -> expiry (epoch s)
        self._refresh_tokens: set[str] = set()
        self._lock = threading.Lock()
        self._page_cache: dict = {}
        self._apply_options(self.initial, reseed=True)

    # ----- configuration -------------------------------------------------------------------------
    def _apply_options(self, o: HubSpotOptions, reseed: bool) -> None:
        self.options = HubSpotOptions(**{f.name: getattr(o, f.name) for f in fields(HubSpotOptions)})
        self.options.faults = FaultConfig(**asdict(o.faults))
        self.window = RollingWindow(o.rate_limit, o.rate_window_ms / 1000)
        self.oauth_window = RollingWindow(o.oauth_rate_limit, o.rate_window_ms / 1000)
        self.secondly = RollingWindow(0, 1.0)  # deprecated Secondly headers: counted, never enforced
        self.daily = DailyQuota(o.daily_limit)
        self.search_window = RollingWindow(o.search_rate_limit, 1.0)
        self.state.index_lag_ms = o.index_lag_ms
        self.state.search_cap_mode = o.search_cap_mode
        self.state.empty_properties = o.empty_properties
        self.faults.reset({k: v for k, v in asdict(o.faults).items() if k != "storm_seconds"})
        self._refresh_tokens = {o.refresh_token}
        self._tokens = {}
        self.webhooks.clear()
        self.webhooks.configure(url=o.webhook_url, batch_size=o.webhook_batch_size, max_retries=o.webhook_max_retries,
                                retry_delay=o.webhook_retry_delay, duplicate_rate=o.webhook_duplicate_rate,
                                out_of_order=o.webhook_out_of_order, timeout=o.webhook_timeout, seed=o.seed)
        self.log.reset()
        if reseed:
            self.state.reset()
            self.seed(seed=o.seed, contacts=o.contacts, companies=o.companies, deals=o.deals, tasks=o.tasks,
                      notes=o.notes, calls=o.calls, meetings=o.meetings, emails=o.emails,
                      same_modified=o.same_modified)

    def reset(self, reseed: bool = True) -> None:
        """Back to the options the app was created with (fresh records, limits, faults, webhooks)."""
        self.webhooks.clear()
        self._apply_options(self.initial, reseed=reseed)

    def seed(self, **kw) -> dict:
        counts = seed_portal(self.state, **kw)
        if self.initial.serialise_per_request:
            return counts
        with self.state.lock:
            for table in self.state.records.values():
                for rec in table.values():
                    serialised(rec)
        return counts

    def configure(self, **changes) -> HubSpotOptions:
        """Change settings at run time; keeps records and counters."""
        o = self.options
        fault_changes = changes.pop("faults", None) or {}
        unknown = set(changes) - {f.name for f in fields(HubSpotOptions)}
        if unknown:
            raise validation(f"unknown settings: {sorted(unknown)}")
        for k, v in changes.items():
            setattr(o, k, tuple(v) if k == "webhook_subscriptions" else v)
        if {"rate_limit", "rate_window_ms"} & set(changes):
            self.window.configure(o.rate_limit, o.rate_window_ms / 1000)
            self.oauth_window.configure(window=o.rate_window_ms / 1000)
        if "oauth_rate_limit" in changes:
            self.oauth_window.configure(o.oauth_rate_limit)
        if "daily_limit" in changes:
            self.daily.configure(o.daily_limit)
        if "search_rate_limit" in changes:
            self.search_window.configure(o.search_rate_limit)
        self.state.index_lag_ms = o.index_lag_ms
        self.state.search_cap_mode = o.search_cap_mode
        self.state.empty_properties = o.empty_properties
        if "refresh_token" in changes:
            self._refresh_tokens.add(o.refresh_token)
        wh = {"webhook_url": "url", "webhook_batch_size": "batch_size", "webhook_max_retries": "max_retries",
              "webhook_retry_delay": "retry_delay", "webhook_duplicate_rate": "duplicate_rate",
              "webhook_out_of_order": "out_of_order", "webhook_timeout": "timeout"}
        self.webhooks.configure(**{wh[k]: v for k, v in changes.items() if k in wh})
        if fault_changes:
            try:
                self.faults.configure(**fault_changes)
            except ValueError as exc:
                raise validation(str(exc)) from None
        return o

    def config_snapshot(self) -> dict:
        data = asdict(self.options)
        data["faults"] = self.faults.snapshot()
        data["webhook_subscriptions"] = list(self.options.webhook_subscriptions)
        data.pop("token", None)
        data.pop("client_secret", None)
        data.pop("webhook_secret", None)
        return data

    def counters(self, entries: int = 100) -> dict:
        snap = self.log.snapshot(entries)
        snap["peaks"] = {"ten_secondly": max(self.window.peak, self.oauth_window.peak),
                         "search_secondly": self.search_window.peak, "daily": self.daily.peak,
                         "secondly": self.secondly.peak}
        snap["rejected"] = {"ten_secondly": self.window.rejected + self.oauth_window.rejected,
                            "search_secondly": self.search_window.rejected, "daily": self.daily.rejected}
        snap["faults_injected"] = dict(self.faults.injected)
        snap["webhooks"] = self.webhooks.snapshot()["counters"]
        return snap

    # ----- webhooks ------------------------------------------------------------------------------
    def _on_events(self, events: list[dict]) -> None:
        subs = self.options.webhook_subscriptions
        if not self.options.webhook_url:
            return
        out = []
        for e in events:
            st = e["subscriptionType"]
            if st in subs:
                out.append({**e, "subscriptionId": SUBSCRIPTION_IDS.get(st, 1)})
        self.webhooks.enqueue(out)

    def _render_delivery(self, url: str, events: list[dict], attempt: int):
        o = self.options
        secret = o.webhook_secret or o.client_secret
        legacy = "v2" if o.signature_version == "v2" else "v1"
        return render_delivery(url, events, attempt, secret, legacy, send_v3=o.signature_version in ("v3", "v2"))

    # ----- WSGI entry ----------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        started = time.perf_counter()
        req = Request(environ)
        segs = req.segments
        cid = str(uuid.uuid4())
        headers = [("X-HubSpot-Correlation-Id", cid)]
        endpoint = req.path
        try:
            if segs and segs[0] == "_sandbox":
                endpoint = "/_sandbox/" + (segs[1] if len(segs) > 1 else "")
                status, body = self._admin(req, segs[1:])
            elif segs[:3] == ["oauth", "v1", "token"] or segs[:3] == ["oauth", "v3", "token"]:
                endpoint = "/oauth/v1/token"
                status, body = self._oauth_token(req)
            else:
                endpoint = _template(segs)
                status, body, _ = self._api(req, segs, headers)
        except ApiError as exc:
            status = exc.status
            body = dumps(exc.body(cid))
            headers.extend(exc.headers)
            if status == 401:
                headers.append(("x-hubspot-auth-failure", "401 Unauthorized"))
        except BadJson as exc:
            status = 400
            body = dumps({"status": "error", "message": f"Invalid input JSON on line 1: {exc}",
                          "correlationId": cid, "category": "VALIDATION_ERROR"})
        if not isinstance(body, bytes):
            body = b"" if body is None else dumps(body)
        if not endpoint.startswith("/_sandbox"):
            self.log.record(req.method, endpoint, status, req.raw_path, req.query_string,
                            (time.perf_counter() - started) * 1000)
        for hook in self.response_hooks:
            hook(req.method, req.raw_path, req.query_string, status, headers, body)
        for hook in GLOBAL_RESPONSE_HOOKS:
            hook(req.method, req.raw_path, req.query_string, status, headers, body)
        return respond(start_response, status, body, headers)

    # ----- auth, limits, faults ------------------------------------------------------------------
    def _auth(self, req: Request) -> str:
        """'private' or 'oauth'; raises 401 otherwise."""
        auth = req.header("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if token and secrets.compare_digest(token, self.options.token):
            return "private"
        if token:
            expiry = self._tokens.get(token)
            if expiry is not None:
                left = expiry - time.time()
                if left > 0:
                    return "oauth"
                raise ApiError(401, "EXPIRED_AUTHENTICATION",
                               f"The OAuth token used to make this call expired {int(-left) + 1} second(s) ago.")
        raise ApiError(401, "INVALID_AUTHENTICATION",
                       "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                       "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")

    def _rate_429(self, policy: str | None, reset_in: float) -> ApiError:
        hdrs = [("Retry-After", str(max(1, int(reset_in + 0.999))))] if self.options.retry_after else []
        if policy == "TEN_SECONDLY_ROLLING":
            return ApiError(429, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.", headers=hdrs,
                            extra={"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING",
                                   "groupName": f"publicapi:private-app-api-calls-ten-secondly:{self.options.portal_id}"})
        if policy == "DAILY":
            return ApiError(429, "RATE_LIMITS", "You have reached your daily limit.", headers=hdrs,
                            extra={"errorType": "RATE_LIMIT", "policyName": "DAILY", "requestId": str(uuid.uuid4())})
        # search: the real body has no policyName (§6.3)
        return ApiError(429, "RATE_LIMITS", "You have reached your secondly limit.", headers=hdrs)

    def _limits(self, kind: str, search: bool, headers: list) -> None:
        fault = serve_fault(self.faults, self.log)
        if fault.kind == "error":
            msgs = {500: "internal error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
            raise ApiError(fault.status, "INTERNAL_ERROR" if fault.status == 500 else "SERVICE_UNAVAILABLE",
                           msgs.get(fault.status, "error"))
        if fault.kind == "rate_limited":
            raise self._rate_429("SEARCH" if search else "TEN_SECONDLY_ROLLING", 1.0)
        daily = self.daily.hit()
        if not daily.allowed:
            raise self._rate_429("DAILY", daily.reset_in)
        if search:
            s = self.search_window.hit()
            if not s.allowed:
                raise self._rate_429(None, s.reset_in)
            return  # search responses carry no rate-limit headers (§4)
        window = self.window if kind == "private" else self.oauth_window
        w = window.hit()
        if not w.allowed:
            raise self._rate_429("TEN_SECONDLY_ROLLING", w.reset_in)
        sec = self.secondly.hit()
        if kind == "private" and daily.limit:
            headers.append(("X-HubSpot-RateLimit-Daily", str(daily.limit)))
            headers.append(("X-HubSpot-RateLimit-Daily-Remaining", str(daily.remaining)))
        if w.limit:
            headers.append(("X-HubSpot-RateLimit-Interval-Milliseconds", str(int(window.window * 1000))))
            headers.append(("X-HubSpot-RateLimit-Max", str(w.limit)))
            headers.append(("X-HubSpot-RateLimit-Remaining", str(w.remaining)))
            per_sec = max(1, w.limit // 10)
            headers.append(("X-HubSpot-RateLimit-Secondly", str(per_sec)))
            headers.append(("X-HubSpot-RateLimit-Secondly-Remaining", str(max(0, per_sec - sec.used))))

    # ----- API routing ---------------------------------------------------------------------------
    def _api(self, req: Request, segs: list[str], headers: list):
        n = len(segs)
        m = req.method
        if n >= 4 and segs[0] == "crm" and segs[2] == "objects" and segs[1] in ("v3", "v4"):
            type_ = ot.lookup(segs[3])
            if segs[1] == "v3":
                tmpl = "/crm/v3/objects/{type}"
                if n == 4 and m in ("GET", "POST"):
                    kind = self._auth(req)
                    self._check_type(type_, segs[3])
                    self._limits(kind, False, headers)
                    return (*self._list(req, type_), tmpl) if m == "GET" else (*self._create(req, type_), tmpl)
                if n == 5 and segs[4] == "search" and m == "POST":
                    kind = self._auth(req)
                    self._check_type(type_, segs[3])
                    self._limits(kind, True, headers)
                    return (*self._search(req, type_), tmpl + "/search")
                if n == 6 and segs[4] == "batch" and m == "POST":
                    kind = self._auth(req)
                    self._check_type(type_, segs[3])
                    self._limits(kind, False, headers)
                    return (*self._batch(req, type_, segs[5]), tmpl + "/batch/" + segs[5])
                if n == 5 and segs[4] == "merge" and m == "POST" and type_ is not None and not type_.engagement:
                    kind = self._auth(req)
                    self._limits(kind, False, headers)
                    return (*self._merge(req, type_), tmpl + "/merge")
                if n == 5 and segs[4] == "gdpr-delete" and m == "POST" and type_ is not None \
                        and type_.name == "contacts":
                    kind = self._auth(req)
                    self._limits(kind, False, headers)
                    return (*self._gdpr_delete(req, type_), tmpl + "/gdpr-delete")
                if n == 5 and m in ("GET", "PATCH", "DELETE"):
                    kind = self._auth(req)
                    self._check_type(type_, segs[3])
                    self._limits(kind, False, headers)
                    return (*self._one(req, type_, segs[4]), tmpl + "/{id}")
            elif n >= 7 and segs[5] == "associations":
                kind = self._auth(req)
                self._check_type(type_, segs[3])
                self._limits(kind, False, headers)
                base = "/crm/v4/objects/{type}/{id}/associations"
                if n == 7 and m == "GET":
                    return (*self._v4_list(req, type_, segs[4], segs[6]), base + "/{toType}")
                if n == 9 and segs[6] == "default" and m == "PUT":
                    return (*self._v4_put(req, type_, segs[4], segs[7], segs[8], default=True),
                            base + "/default/{toType}/{toId}")
                if n == 8 and m in ("PUT", "DELETE"):
                    if m == "DELETE":
                        return (*self._v4_delete(type_, segs[4], segs[6], segs[7]), base + "/{toType}/{toId}")
                    return (*self._v4_put(req, type_, segs[4], segs[6], segs[7], default=False),
                            base + "/{toType}/{toId}")
        if n >= 6 and segs[:3] == ["crm", "v4", "associations"] and segs[5] == "batch" and m == "POST":
            kind = self._auth(req)
            self._limits(kind, False, headers)
            op = "/".join(segs[6:])
            return (*self._v4_batch(req, segs[3], segs[4], op), "/crm/v4/associations/{from}/{to}/batch/" + op)
        if n >= 4 and segs[:3] == ["crm", "v3", "properties"]:
            base = "/crm/v3/properties/{type}"
            if n in (5, 6) and segs[4] == "groups" and m == "GET":
                kind = self._auth(req)
                self._limits(kind, False, headers)
                return (*self._property_groups(segs[3], segs[5] if n == 6 else None),
                        base + ("/groups/{groupName}" if n == 6 else "/groups"))
            if n == 4 and m == "POST":
                kind = self._auth(req)
                self._limits(kind, False, headers)
                return (*self._create_property(req, segs[3]), base)
            if n <= 5 and m == "GET":
                kind = self._auth(req)
                self._limits(kind, False, headers)
                return (*self._properties(segs[3], segs[4] if n > 4 else None),
                        base + ("/{propertyName}" if n > 4 else ""))
        if n >= 4 and segs[:3] == ["crm", "v3", "pipelines"] and m == "GET":
            kind = self._auth(req)
            self._limits(kind, False, headers)
            return (*self._pipelines(segs[3:]), "/crm/v3/pipelines/" + "/".join(segs[3:4]))
        if segs == ["account-info", "v3", "details"] and m == "GET":
            kind = self._auth(req)
            self._limits(kind, False, headers)
            return 200, self._account(), "/account-info/v3/details"
        if n == 4 and segs[:3] == ["oauth", "v1", "access-tokens"] and m == "GET":
            return (*self._token_info(segs[3]), "/oauth/v1/access-tokens/{token}")
        if n == 4 and segs[:3] == ["oauth", "v1", "refresh-tokens"] and m in ("GET", "DELETE"):
            return (*self._refresh_info(segs[3], m), "/oauth/v1/refresh-tokens/{token}")
        raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found", context={"path": [req.path]})

    @staticmethod
    def _check_type(type_, raw: str) -> None:
        if type_ is None:
            raise ApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {raw}",
                           context={"objectType": [raw]})

    # ----- record rendering ----------------------------------------------------------------------
    def _names(self, type_: ot.ObjectType, requested: list[str] | None) -> tuple:
        if not requested:
            return type_.defaults
        defs = self.state.property_defs(type_.name)
        names = {p for p in requested if p in defs or p == "hs_object_id"}  # unknown names are omitted
        names |= {type_.created_prop, type_.modified_prop, "hs_object_id"}
        return tuple(sorted(names))

    def _render(self, rec: Record, names: tuple, view=None) -> bytes:
        """One record as JSON bytes; cached per property set until the record changes."""
        null_mode = self.state.empty_properties == "null"
        if view is None and self.options.serialise_per_request:
            view = (rec.props, rec.created, rec.updated)
        if view is None:
            cache = rec.cache
            key = (names, null_mode)
            hit = cache.get(key)
            if hit is not None:
                return hit
            # Put together from the record's pre-serialised pieces: the list endpoint serves a
            # property set once per record, so a per-set cache alone would not spare the dumps.
            pieces = serialised(rec)
            props, tail = pieces["props"], pieces["tail"]
            if null_mode:
                defs = self.state.property_defs(rec.type.name)
                parts = [props[n] if n in props else _null_property(n) for n in names if n in props or n in defs]
            else:
                parts = [props[name] for name in names if name in props]
            data = b'{"id":%s,"properties":{%s},%s' % (dumps(str(rec.id)), b",".join(parts), tail)
            cache[key] = data
            return data
        props_src, created, updated = view
        defs = self.state.property_defs(rec.type.name)
        props = {}
        for name in names:
            v = props_src.get(name)
            if v is not None:
                props[name] = v
            elif null_mode and name in defs:
                props[name] = None
        out = {"id": str(rec.id), "properties": props, "createdAt": iso(created), "updatedAt": iso(updated),
               "archived": rec.archived}
        if rec.archived:
            out["archivedAt"] = iso(rec.archived_at)
        return dumps(out)

    def _with_assocs(self, rec: Record, data: bytes, to_types: list[ot.ObjectType]) -> bytes:
        block = {}
        for to in to_types:
            links = self.state.associations_of(rec.type.name, rec.id, to.name)
            if not links:
                continue  # "associations that don't exist will not be returned"
            results = []
            for to_id in sorted(links):
                for tid in sorted(links[to_id]):
                    results.append({"id": str(to_id), "type": ot.type_string(rec.type.name, to.name, tid)})
            block[to.name] = {"results": results}
        if not block:
            return data
        return data[:-1] + b',"associations":' + dumps(block) + b"}"

    def _record_obj(self, rec: Record, names: tuple) -> dict:
        return json.loads(self._render(rec, names))

    # ----- objects -------------------------------------------------------------------------------
    def _list(self, req: Request, type_: ot.ObjectType):
        try:
            limit = int(req.arg("limit") or 10)
        except ValueError:
            raise validation("limit must be an integer") from None
        history = _multi(req, "propertiesWithHistory")
        max_limit = 50 if history else 100
        if limit < 1 or limit > max_limit:
            raise validation(f"limit must be between 1 and {max_limit}; got {limit}",
                             context={"limit": [str(limit)]})
        after_raw = req.arg("after")
        try:
            after = int(after_raw) if after_raw else 0
        except ValueError:
            raise validation(f"Invalid after: {after_raw}", context={"after": [after_raw]}) from None
        archived = _bool(req.arg("archived"))
        names = self._names(type_, _multi(req, "properties"))
        assoc_types = [t for t in (ot.lookup(a) for a in _multi(req, "associations")) if t is not None]
        host = req.header("Host") or "127.0.0.1"
        per_request = self.options.serialise_per_request
        # whole pages are cached until the next write anywhere in the portal (list is the hot path)
        key = (type_.name, after, limit, archived, names, tuple(t.name for t in assoc_types),
               self.state.empty_properties, host, req.raw_path)
        generation = self.state.generation
        hit = None if per_request else self._page_cache.get(key)
        if hit is not None and hit[0] == generation:
            return 200, hit[1]
        records, nxt = self.state.page(type_, after, limit, archived)
        render = self._render
        if assoc_types:
            parts = [self._with_assocs(r, render(r, names), assoc_types) for r in records]
        else:
            parts = [render(r, names) for r in records]
        out = b'{"results":[' + b",".join(parts) + b"]"
        if nxt is not None:
            link = f"http://{host}{req.raw_path}?limit={limit}&after={nxt}"
            out += b',"paging":{"next":{"after":"' + str(nxt).encode() + b'","link":' + dumps(link) + b"}}"
        out += b"}"
        if per_request:
            return 200, out
        if len(self._page_cache) > 5000:
            self._page_cache.clear()
        self._page_cache[key] = (generation, out)
        return 200, out

    def _create(self, req: Request, type_: ot.ObjectType):
        body = req.json()
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: expected an object")
        rec = self.state.create(type_, body.get("properties") or {}, body.get("associations") or [])
        return 201, self._render(rec, self._names(type_, list(rec.props)))

    def _one(self, req: Request, type_: ot.ObjectType, raw_id: str):
        id_property = req.arg("idProperty")
        if req.method == "GET":
            rec = self.state.get(type_, raw_id, id_property, archived=_bool(req.arg("archived")))
            names = self._names(type_, _multi(req, "properties"))
            data = self._render(rec, names)
            assoc_types = [t for t in (ot.lookup(a) for a in _multi(req, "associations")) if t is not None]
            if assoc_types:
                data = self._with_assocs(rec, data, assoc_types)
            return 200, data
        if req.method == "PATCH":
            body = req.json()
            if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
                raise validation("Invalid input JSON: expected {\"properties\": {...}}")
            rec = self.state.update(type_, raw_id, body["properties"], id_property)
            return 200, self._render(rec, self._names(type_, list(rec.props)))
        self.state.archive(type_, raw_id)  # archiving a missing record is still a 204
        return 204, None

    def _merge(self, req: Request, type_: ot.ObjectType):
        body = req.json()
        try:
            primary, loser = str(body["primaryObjectId"]), str(body["objectIdToMerge"])
        except (KeyError, TypeError):
            raise validation("primaryObjectId and objectIdToMerge are required") from None
        rec = self.state.merge(type_, primary, loser)
        return 200, self._render(rec, self._names(type_, list(rec.props)))

    def _gdpr_delete(self, req: Request, type_: ot.ObjectType):
        body = req.json()
        if not isinstance(body, dict) or "objectId" not in body:
            raise validation("objectId is required")
        with self.state.lock:
            rec = self.state.resolve(type_, str(body["objectId"]), body.get("idProperty"))
            if rec is not None:
                self.state.archive(type_, str(rec.id))
                self.state.records[type_.name].pop(rec.id, None)
                ids = self.state._ids[type_.name]
                if rec.id in ids:
                    ids.remove(rec.id)
                self.state._emit([self.state.change_event(type_, "privacyDeletion", rec.id, "GDPR")])
        return 204, None

    def _search(self, req: Request, type_: ot.ObjectType):
        body = req.json(default={})
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: expected an object")
        total, page, nxt = self.state.search(type_, body)
        props = body.get("properties") or []
        names = self._names(type_, props if isinstance(props, list) else [])
        parts = []
        for rec, view_props, created, updated in page:
            if view_props is rec.props:
                parts.append(self._render(rec, names))
            else:
                parts.append(self._render(rec, names, (view_props, created, updated)))
        out = b'{"total":' + str(total).encode() + b',"results":[' + b",".join(parts) + b"]"
        if nxt is not None:
            out += b',"paging":{"next":{"after":"' + str(nxt).encode() + b'"}}'
        return 200, out + b"}"

    # ----- batch ---------------------------------------------------------------------------------
    def _inputs(self, body) -> list:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise validation("Invalid input JSON: expected {\"inputs\": [...]}")
        inputs = body["inputs"]
        if len(inputs) > 100:
            raise validation(f"Batch input limit exceeded: {len(inputs)} inputs sent, the limit is 100",
                             context={"inputs": [str(len(inputs))]})
        return inputs

    @staticmethod
    def _no_dupes(ids: list[str]) -> None:
        seen, dupes = set(), []
        for i in ids:
            if i in seen and i not in dupes:
                dupes.append(i)
            seen.add(i)
        if dupes:
            raise validation(f"Duplicate IDs found in batch input: [{', '.join(dupes)}]. IDs must be unique",
                             context={"ids": dupes})

    def _batch_response(self, results: list[bytes], errors: list[dict], started: str, ok_status: int):
        status = 207 if errors else ok_status
        out = b'{"status":"COMPLETE","results":[' + b",".join(results) + b"]"
        if errors:
            out += b',"numErrors":' + str(len(errors)).encode() + b',"errors":' + dumps(errors)
        out += b',"startedAt":"' + started.encode() + b'","completedAt":"' + _ts().encode() + b'"}'
        return status, out

    def _missing_error(self, type_: ot.ObjectType, ids: list[str], trace_ids: list[str] | None = None) -> dict:
        ctx = {"ids": ids}
        if trace_ids:
            ctx["objectWriteTraceId"] = trace_ids
        return {"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {type_.upper} objects, they may be deleted or not exist. "
                           "Check that ids are valid.", "context": ctx, "errors": [], "links": {}}

    def _batch(self, req: Request, type_: ot.ObjectType, op: str):
        started = _ts()
        body = req.json()
        inputs = self._inputs(body)
        st = self.state
        if op == "read":
            id_property = body.get("idProperty")
            archived = _bool(req.arg("archived"))
            names = self._names(type_, body.get("properties") or [])
            results, missing = [], []
            with st.lock:
                for inp in inputs:
                    raw = str((inp or {}).get("id", ""))
                    rec = st.resolve(type_, raw, id_property, archived)
                    if rec is None:
                        missing.append(raw)
                    else:
                        results.append(self._render(rec, names))
            errors = [self._missing_error(type_, missing)] if missing else []
            return self._batch_response(results, errors, started, 200)
        if op == "archive":
            with st.lock:
                for inp in inputs:
                    st.archive(type_, str((inp or {}).get("id", "")))
            return 204, None
        if op == "create":
            return self._batch_create(type_, inputs, started)
        if op == "update":
            ids = [str((inp or {}).get("id", "")) for inp in inputs]
            self._no_dupes(ids)
            id_property = body.get("idProperty")
            results, missing, traces = [], [], []
            with st.lock:
                recs = []
                for inp in inputs:  # validate everything first: one bad input fails the whole batch
                    rec = st.resolve(type_, str(inp.get("id", "")), inp.get("idProperty") or id_property,
                                     follow_merges=False)  # old ids work on single PATCH, not batch (§2.4)
                    if rec is None:
                        missing.append(str(inp.get("id", "")))
                        if inp.get("objectWriteTraceId"):
                            traces.append(inp["objectWriteTraceId"])
                        continue
                    recs.append((rec, st._clean(type_, inp.get("properties") or {}, creating=False), inp))
                for rec, clean, inp in recs:
                    st._apply(rec, clean, "API")
                    data = self._render(rec, self._names(type_, list(rec.props)))
                    if inp.get("objectWriteTraceId"):
                        data = data[:-1] + b',"objectWriteTraceId":' + dumps(inp["objectWriteTraceId"]) + b"}"
                    results.append(data)
            errors = [self._missing_error(type_, missing, traces)] if missing else []
            return self._batch_response(results, errors, started, 200)
        if op == "upsert":
            return self._batch_upsert(type_, inputs, started)
        raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")

    def _batch_create(self, type_: ot.ObjectType, inputs: list, started: str):
        st = self.state
        partial = bool(inputs) and all(isinstance(i, dict) and i.get("objectWriteTraceId") for i in inputs)
        results, errors = [], []
        with st.lock:
            planned, seen_emails = [], {}
            for inp in inputs:
                if not isinstance(inp, dict):
                    raise validation("Invalid input JSON: each input must be an object")
                try:
                    clean = st._clean(type_, inp.get("properties") or {}, creating=True)
                    email = (clean.get("email") or "").lower() if type_.name == "contacts" else ""
                    if email:
                        st._check_email(None, email)
                        if email in seen_emails:
                            raise ApiError(409, "CONFLICT", "Contact already exists. Existing ID: "
                                           f"{seen_emails[email]}")
                        seen_emails[email] = "pending"
                    st._parse_inline_assocs(type_, inp.get("associations") or [])
                    planned.append(inp)
                except ApiError as exc:
                    if not partial:
                        raise
                    errors.append({"status": "error", "category": exc.category, "message": exc.message,
                                   "context": {"objectWriteTraceId": [inp["objectWriteTraceId"]]},
                                   "errors": exc.errors or [], "links": {}})
            for inp in planned:
                rec = st.create(type_, inp.get("properties") or {}, inp.get("associations") or [])
                data = self._render(rec, self._names(type_, list(rec.props)))
                if inp.get("objectWriteTraceId"):
                    data = data[:-1] + b',"objectWriteTraceId":' + dumps(inp["objectWriteTraceId"]) + b"}"
                results.append(data)
        return self._batch_response(results, errors, started, 201)

    def _batch_upsert(self, type_: ot.ObjectType, inputs: list, started: str):
        st = self.state
        ids = [str((inp or {}).get("id", "")) for inp in inputs]
        self._no_dupes(ids)
        results = []
        with st.lock:
            plan = []
            for inp in inputs:
                id_property = inp.get("idProperty")
                if not id_property:
                    raise validation("idProperty is required for upsert")
                rec = st.resolve(type_, str(inp.get("id", "")), id_property)
                props = dict(inp.get("properties") or {})
                clean = st._clean(type_, props, creating=rec is None and id_property == "hs_object_id")
                if rec is None and id_property == "hs_object_id":
                    raise validation(f"Cannot upsert by hs_object_id: {inp.get('id')} does not exist")
                plan.append((rec, clean, props, id_property, inp))
            for rec, clean, props, id_property, inp in plan:
                if rec is None:
                    props.setdefault(id_property, inp["id"])
                    rec, new = st.create(type_, props), True
                else:
                    st._apply(rec, clean, "API")
                    new = False
                data = self._render(rec, self._names(type_, list(rec.props)))
                results.append(data[:-1] + (b',"new":true}' if new else b',"new":false}'))
        return self._batch_response(results, [], started, 200)

    # ----- associations v4 -----------------------------------------------------------------------
    def _v4_types(self, from_name: str, to_name: str, ids: set[int]) -> list[dict]:
        pair = ot.ASSOC[(from_name, to_name)]
        out = []
        for tid in sorted(ids):
            spec = {"category": "HUBSPOT_DEFINED", "typeId": tid}
            if pair.primary == tid:
                spec["label"] = "Primary"
            out.append(spec)
        return out

    def _v4_list(self, req: Request, type_: ot.ObjectType, raw_id: str, to_raw: str):
        to = ot.lookup(to_raw)
        self._check_type(to, to_raw)
        rec = self.state.get(type_, raw_id)
        try:
            limit = min(500, max(1, int(req.arg("limit") or 500)))
            after = int(req.arg("after") or 0)
        except ValueError:
            raise validation("limit and after must be integers") from None
        with self.state.lock:
            links = self.state.associations_of(type_.name, rec.id, to.name)
            ordered = [i for i in sorted(links) if i >= after]
            page = ordered[:limit]
            results = [{"toObjectId": str(i), "associationTypes": self._v4_types(type_.name, to.name, links[i])}
                       for i in page]
        out = {"results": results}
        if len(ordered) > limit:
            out["paging"] = {"next": {"after": str(ordered[limit]),
                                      "link": f"?limit={limit}&after={ordered[limit]}"}}
        return 200, out

    def _v4_put(self, req: Request, type_, raw_id: str, to_raw: str, to_id: str, default: bool):
        to = ot.lookup(to_raw)
        self._check_type(to, to_raw)
        if default:
            a, b = self.state.associate(type_, raw_id, to, to_id, None)
            pair = ot.ASSOC[(type_.name, to.name)]
            back = ot.ASSOC[(to.name, type_.name)]
            started = _ts()
            return 200, {"status": "COMPLETE", "results": [
                {"from": {"id": str(a.id)}, "to": {"id": str(b.id)},
                 "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": pair.unlabeled}},
                {"from": {"id": str(b.id)}, "to": {"id": str(a.id)},
                 "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": back.unlabeled}},
            ], "startedAt": started, "completedAt": _ts()}
        specs = req.json()
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise validation("Invalid input JSON: expected a list of association specs")
        type_ids = []
        for s in specs:
            try:
                type_ids.append(int(s["associationTypeId"]))
            except (KeyError, TypeError, ValueError):
                raise validation("associationTypeId is required") from None
        a, b = self.state.associate(type_, raw_id, to, to_id, type_ids)
        pair = ot.ASSOC[(type_.name, to.name)]
        labels = ["Primary"] if pair.primary in type_ids else []
        return 201, {"fromObjectTypeId": type_.type_id, "fromObjectId": str(a.id), "toObjectTypeId": to.type_id,
                     "toObjectId": str(b.id), "labels": labels}

    def _v4_delete(self, type_, raw_id: str, to_raw: str, to_id: str):
        to = ot.lookup(to_raw)
        self._check_type(to, to_raw)
        self.state.dissociate(type_, raw_id, to, to_id)
        return 204, None

    def _v4_batch(self, req: Request, from_raw: str, to_raw: str, op: str):
        frm, to = ot.lookup(from_raw), ot.lookup(to_raw)
        self._check_type(frm, from_raw)
        self._check_type(to, to_raw)
        started = _ts()
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise validation("Invalid input JSON: expected {\"inputs\": [...]}")
        inputs = body["inputs"]
        limit = 1000 if op == "read" else 100
        if len(inputs) > limit:
            raise validation(f"Batch input limit exceeded: {len(inputs)} inputs sent, the limit is {limit}")
        st = self.state
        if op == "read":
            results, errors = [], []
            with st.lock:
                for inp in inputs:
                    raw = str((inp or {}).get("id", ""))
                    rec = st.resolve(frm, raw)
                    links = st.associations_of(frm.name, rec.id, to.name) if rec else {}
                    if not links:
                        errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                                       "message": f"No {to.singular} is associated with {frm.singular} {raw}.",
                                       "context": {"fromObjectId": [raw]}, "errors": [], "links": {}})
                        continue
                    results.append({"from": {"id": str(rec.id)}, "to": [
                        {"toObjectId": str(i), "associationTypes": self._v4_types(frm.name, to.name, links[i])}
                        for i in sorted(links)]})
            out = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _ts()}
            if errors:
                out["numErrors"] = len(errors)
                out["errors"] = errors
            return (207 if errors else 200), out
        if op in ("create", "associate/default"):
            # Each input stands alone: an unknown id or a bad type fails that pair only, with a
            # StandardError naming both ids; the others are made. batch/create answers 201, or 207
            # with errors[]; associate/default declares only 200 in the associations v4 spec, its
            # body carrying the same errors[] (the official client maps no other status for it).
            if ot.ASSOC.get((frm.name, to.name)) is None:
                raise validation(f"{frm.singular} to {to.singular} associations are not supported")
            parsed = []
            for inp in inputs:
                try:
                    a_raw, b_raw = str(inp["from"]["id"]), str(inp["to"]["id"])
                    type_ids = [int(t["associationTypeId"]) for t in inp.get("types") or []] if op == "create" else []
                except (KeyError, TypeError, ValueError, AttributeError):
                    raise validation("each input needs from.id and to.id (and types[].associationTypeId "
                                     "on create)") from None
                parsed.append((a_raw, b_raw, type_ids))
            results, errors = [], []
            pair = ot.ASSOC[(frm.name, to.name)]
            with st.lock:
                for a_raw, b_raw, type_ids in parsed:
                    try:
                        a, b = st.associate(frm, a_raw, to, b_raw, type_ids or None)
                    except ApiError as exc:
                        errors.append({"status": "error", "category": exc.category, "message": exc.message,
                                       "context": {**(exc.context or {}), "fromObjectId": [a_raw],
                                                   "toObjectId": [b_raw]},
                                       "errors": exc.errors or [], "links": {}})
                        continue
                    if op == "create":
                        results.append({"fromObjectTypeId": frm.type_id, "fromObjectId": str(a.id),
                                        "toObjectTypeId": to.type_id, "toObjectId": str(b.id),
                                        "labels": ["Primary"] if pair.primary in type_ids else []})
                    else:
                        results.append({"from": {"id": str(a.id)}, "to": {"id": str(b.id)}, "associationSpec": {
                            "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": pair.unlabeled}})
            out = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _ts()}
            if errors:
                out["numErrors"] = len(errors)
                out["errors"] = errors
            if op == "create":
                return (207 if errors else 201), out
            return 200, out
        if op in ("archive", "labels/archive"):
            for inp in inputs:
                a_raw = str((inp or {}).get("from", {}).get("id", ""))
                for target in (inp or {}).get("to") or []:
                    b_raw = str(target.get("id", "")) if isinstance(target, dict) else str(target)
                    with contextlib.suppress(ApiError):   # archiving what is not there is a no-op
                        st.dissociate(frm, a_raw, to, b_raw)
            return 204, None
        raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")

    # ----- metadata ------------------------------------------------------------------------------
    def _property_json(self, type_name: str, d: ot.PropertyDef, i: int) -> dict:
        out = {"name": d.name, "label": d.label, "type": d.type, "fieldType": d.field_type,
               "description": "", "groupName": ot.group_name(type_name, d.group), "displayOrder": i,
               "options": [{"label": o.replace("_", " ").title(), "value": o, "hidden": False, "displayOrder": j}
                           for j, o in enumerate(d.options)],
               "calculated": False, "externalOptions": False, "hasUniqueValue": d.unique, "hidden": False,
               "hubspotDefined": d.hubspot_defined, "formField": not d.read_only,
               "modificationMetadata": {"archivable": not d.hubspot_defined, "readOnlyDefinition": d.hubspot_defined,
                                        "readOnlyValue": d.read_only},
               "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z", "archived": False}
        if d.name == "dealstage":
            out["options"] = [{"label": s.label, "value": s.id, "hidden": False, "displayOrder": j}
                              for j, s in enumerate(ot.PIPELINES["default"][1])]
        if d.name == "pipeline":
            out["options"] = [{"label": label, "value": pid, "hidden": False, "displayOrder": 0}
                              for pid, (label, _) in ot.PIPELINES.items()]
        return out

    def _properties(self, type_raw: str, name: str | None):
        type_ = ot.lookup(type_raw)
        self._check_type(type_, type_raw)
        defs = list(self.state.property_defs(type_.name).values())
        if name is None:
            return 200, {"results": [self._property_json(type_.name, d, i) for i, d in enumerate(defs)]}
        for i, d in enumerate(defs):
            if d.name == name:
                return 200, self._property_json(type_.name, d, i)
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}", context={"propertyName": [name]})

    def _property_groups(self, type_raw: str, group: str | None):
        type_ = ot.lookup(type_raw)
        self._check_type(type_, type_raw)
        groups = [{"name": ot.group_name(type_.name, g), "label": label, "displayOrder": i, "archived": False}
                  for i, (g, label) in enumerate(ot.property_groups(self.state.property_defs(type_.name).values()))]
        if group is None:
            return 200, {"results": groups}
        for g in groups:
            if g["name"] == group:
                return 200, g
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {group}",
                       context={"groupName": [group]})

    _PROPERTY_TYPES = ("bool", "date", "datetime", "enumeration", "number", "phone_number", "string")
    _FIELD_TYPES = ("booleancheckbox", "calculation_equation", "checkbox", "date", "file", "html", "number",
                    "phonenumber", "radio", "select", "text", "textarea")

    def _create_property(self, req: Request, type_raw: str):
        """POST /crm/v3/properties/{objectType}: PropertyCreate's required name, label, type,
        fieldType and groupName (an existing group), the enums the spec lists, options for an
        enumeration; 409 when the name is taken."""
        type_ = ot.lookup(type_raw)
        self._check_type(type_, type_raw)
        if not self.options.schema_write:
            raise ApiError(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call.",
                           errors=[{"message": "One or more of the following scopes are required.",
                                    "context": {"requiredGranularScopes": [f"crm.schemas.{type_.name}.write"]}}])
        body = req.json()
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: expected a PropertyCreate object")
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName")
                   if not isinstance(body.get(k), str) or not body[k].strip()]
        if missing:
            raise validation(f"Missing required field(s): {', '.join(missing)}",
                             context={"missingFields": missing})
        name, ptype, ftype = body["name"], body["type"], body["fieldType"]
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise validation(f"Property name {name!r} must start with a lowercase letter and hold only lowercase "
                             "letters, digits and underscores", context={"name": [name]})
        if ptype not in self._PROPERTY_TYPES:
            raise validation(f"type {ptype!r} is not one of {list(self._PROPERTY_TYPES)}", context={"type": [ptype]})
        if ftype not in self._FIELD_TYPES:
            raise validation(f"fieldType {ftype!r} is not one of {list(self._FIELD_TYPES)}",
                             context={"fieldType": [ftype]})
        groups = {ot.group_name(type_.name, g): g
                  for g, _ in ot.property_groups(self.state.property_defs(type_.name).values())}
        if body["groupName"] not in groups:
            raise validation(f"Property group {body['groupName']} does not exist", context={"groupName": [body["groupName"]]})
        options = body.get("options") or []
        if ptype == "enumeration" and not options:
            raise validation("options are required for an enumeration property", context={"options": []})
        try:
            values = tuple(str(o["value"]) for o in options)
        except (KeyError, TypeError):
            raise validation("each option needs a value") from None
        d = ot.PropertyDef(name, body["label"], ptype, ftype, groups[body["groupName"]], values,
                           hubspot_defined=False, unique=bool(body.get("hasUniqueValue")))
        self.state.create_property(type_.name, d)
        return 201, self._property_json(type_.name, d, len(self.state.property_defs(type_.name)) - 1)

    @staticmethod
    def _pipeline_json(pipelines: dict, pid: str) -> dict:
        label, stages = pipelines[pid]
        ts = "2024-01-01T00:00:00.000Z"
        tickets = pipelines is ot.TICKET_PIPELINES
        return {"id": pid, "label": label, "displayOrder": 0, "archived": False, "createdAt": ts, "updatedAt": ts,
                "stages": [{"id": s.id, "label": s.label, "displayOrder": i, "archived": False, "createdAt": ts,
                            "updatedAt": ts, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                            # deals carry probability, tickets ticketState (the pipelines spec's metadata)
                            "metadata": ({"ticketState": "CLOSED" if s.closed else "OPEN"} if tickets else
                                         {"isClosed": "true" if s.closed else "false", "probability": s.probability})}
                           for i, s in enumerate(stages)]}

    def _pipelines(self, rest: list[str]):
        pipelines = {"deals": ot.PIPELINES, "0-3": ot.PIPELINES, "tickets": ot.TICKET_PIPELINES,
                     "0-5": ot.TICKET_PIPELINES}.get(rest[0].lower())
        if pipelines is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"No pipelines for object type {rest[0]}")
        if len(rest) == 1:
            return 200, {"results": [self._pipeline_json(pipelines, pid) for pid in pipelines]}
        if rest[1] not in pipelines:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Pipeline {rest[1]} not found", context={"pipelineId": [rest[1]]})
        p = self._pipeline_json(pipelines, rest[1])
        if len(rest) == 2:
            return 200, p
        if len(rest) == 3 and rest[2] == "stages":
            return 200, {"results": p["stages"]}
        if len(rest) == 4 and rest[2] == "stages":
            for s in p["stages"]:
                if s["id"] == rest[3]:
                    return 200, s
        raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")

    def _account(self) -> dict:
        return {"portalId": self.options.portal_id, "accountType": "STANDARD", "timeZone": "UTC",
                "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "+00:00",
                "utcOffsetMilliseconds": 0, "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"}

    # ----- OAuth ---------------------------------------------------------------------------------
    def _oauth_token(self, req: Request):
        if req.method != "POST":
            raise ApiError(405, "METHOD_NOT_ALLOWED", "Use POST")
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        o = self.options
        grant = form.get("grant_type")
        if form.get("client_id") != o.client_id or form.get("client_secret") != o.client_secret:
            return 400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id",
                         "correlationId": str(uuid.uuid4()), "category": "VALIDATION_ERROR",
                         "error": "invalid_client", "error_description": "missing or unknown client id"}
        if grant == "refresh_token":
            if form.get("refresh_token") not in self._refresh_tokens:
                return 400, {"status": "BAD_REFRESH_TOKEN", "message": "refresh token is invalid, expired or revoked",
                             "correlationId": str(uuid.uuid4()), "category": "VALIDATION_ERROR",
                             "error": "invalid_grant",
                             "error_description": "refresh token is invalid, expired or revoked"}
            refresh = form["refresh_token"]
        elif grant == "authorization_code" and form.get("code"):
            refresh = "na1-" + secrets.token_hex(16)
            self._refresh_tokens.add(refresh)
        else:
            return 400, {"status": "BAD_GRANT_TYPE", "message": f"unsupported grant_type {grant}",
                         "correlationId": str(uuid.uuid4()), "category": "VALIDATION_ERROR",
                         "error": "unsupported_grant_type", "error_description": f"unsupported grant_type {grant}"}
        access = "CJ" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[access] = time.time() + o.access_token_ttl
        return 200, {"token_type": "bearer", "refresh_token": refresh, "access_token": access,
                     "expires_in": o.access_token_ttl, "hub_id": o.portal_id, "token_use": "access_token",
                     "scopes": ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
                                "crm.objects.companies.read", "crm.objects.companies.write",
                                "crm.objects.deals.read", "crm.objects.deals.write"]}

    def _token_info(self, token: str):
        expiry = self._tokens.get(token)
        if expiry is None or expiry < time.time():
            raise not_found(token)
        return 200, {"token": token, "token_type": "access", "hub_id": self.options.portal_id,
                     "app_id": self.options.app_id, "user_id": 882761034, "expires_in": int(expiry - time.time()),
                     "scopes": ["oauth", "crm.objects.contacts.read"], "hub_domain": "sandbox.hubspot.com"}

    def _refresh_info(self, token: str, method: str):
        if token not in self._refresh_tokens:
            raise not_found(token)
        if method == "DELETE":
            self._refresh_tokens.discard(token)
            return 204, None
        return 200, {"token": token, "token_type": "refresh", "hub_id": self.options.portal_id, "user_id": 882761034,
                     "client_id": self.options.client_id, "scopes": ["oauth"], "hub_domain": "sandbox.hubspot.com"}

    def expire_access_tokens(self, seconds_ago: int = 1) -> None:
        with self._lock:
            for t in self._tokens:
                self._tokens[t] = time.time() - seconds_ago

    # ----- admin (/_sandbox/) --------------------------------------------------------------------
    def admin_record(self, rec: Record) -> dict:
        out = json.loads(self._render(rec, tuple(sorted(rec.props))))
        out["associations"] = {to: {str(i): sorted(t) for i, t in links.items()}
                               for to in ot.TYPES
                               if (links := self.state.associations_of(rec.type.name, rec.id, to))}
        if rec.merged_into is not None:
            out["mergedInto"] = str(rec.merged_into)
        return out

    def _admin(self, req: Request, segs: list[str]):
        m = req.method
        what = segs[0] if segs else ""
        body = req.json(default={}) if m in ("POST", "PATCH", "PUT") else {}
        if not isinstance(body, dict):
            raise validation("admin bodies are JSON objects")
        if what == "reset" and m == "POST":
            self.reset(reseed=bool(body.get("reseed", True)))
            return 200, {"ok": True, "counts": self._counts()}
        if what == "seed" and m == "POST":
            if body.pop("reset", True):
                self.state.reset()
            allowed = {"seed", "contacts", "companies", "deals", "tasks", "notes", "calls", "meetings", "emails",
                       "same_modified", "same_modified_at"}
            unknown = set(body) - allowed
            if unknown:
                raise validation(f"unknown seed options: {sorted(unknown)}")
            counts = self.seed(**body)
            return 200, {"ok": True, "created": counts, "counts": self._counts()}
        if what == "config":
            if m == "POST":
                self.configure(**body)
            return 200, self.config_snapshot()
        if what == "requests" and m == "GET":
            return 200, self.counters(int(req.arg("entries") or 100))
        if what == "webhooks":
            if len(segs) > 1 and segs[1] == "flush" and m == "POST":
                drained = self.webhooks.flush(float(body.get("timeout", 10)))
                return 200, {"drained": drained, **self.webhooks.snapshot()}
            return 200, {**self.webhooks.snapshot(), "deliveries": self.webhooks.deliveries(200)}
        if what == "oauth" and len(segs) > 1 and segs[1] == "expire" and m == "POST":
            self.expire_access_tokens(int(body.get("seconds_ago", 1)))
            return 200, {"ok": True}
        if what == "merge" and len(segs) == 2 and m == "POST":
            type_ = ot.lookup(segs[1])
            self._check_type(type_, segs[1])
            rec = self.state.merge(type_, str(body.get("primaryObjectId")), str(body.get("objectIdToMerge")),
                                   source="CRM_UI")
            return 200, self.admin_record(rec)
        if what == "records" and len(segs) >= 2:
            type_ = ot.lookup(segs[1])
            self._check_type(type_, segs[1])
            if len(segs) == 2 and m == "POST":
                rec = self.state.create(type_, body.get("properties") or {}, body.get("associations") or [],
                                        source="CRM_UI")
                return 201, self.admin_record(rec)
            if len(segs) == 2 and m == "GET":
                with self.state.lock:
                    recs = list(self.state.records[type_.name].values())
                    return 200, {"results": [self.admin_record(r) for r in recs]}
            if len(segs) == 3:
                if m == "GET":
                    with self.state.lock:
                        rec = self.state.records[type_.name].get(int(segs[2])) if segs[2].isdigit() else None
                        if rec is None:
                            raise not_found(segs[2])
                        return 200, self.admin_record(rec)
                if m == "PATCH":
                    at = body.get("at_ms")
                    rec = self.state.update(type_, segs[2], body.get("properties") or {}, source="CRM_UI",
                                            at_ms=int(at) if at is not None else None)
                    return 200, self.admin_record(rec)
                if m == "DELETE":
                    if not self.state.archive(type_, segs[2], source="CRM_UI"):
                        raise not_found(segs[2])
                    return 200, {"ok": True}
        if what == "" and m == "GET":
            return 200, {"platform": "hubspot", "portalId": self.options.portal_id, "counts": self._counts()}
        raise ApiError(404, "OBJECT_NOT_FOUND", f"no admin endpoint {m} {req.path}")

    def _counts(self) -> dict:
        with self.state.lock:
            return {name: sum(1 for r in recs.values() if not r.archived and r.merged_into is None)
                    for name, recs in self.state.records.items()}


def create_app(options: HubSpotOptions | None = None, **overrides) -> HubSpotApp:
    """The HubSpot sandbox WSGI app; keyword overrides set any ``HubSpotOptions`` field."""
    return HubSpotApp(options, **overrides)
