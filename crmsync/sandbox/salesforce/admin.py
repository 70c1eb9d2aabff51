"""The ``/_sandbox/`` admin API of the Salesforce sandbox (no auth; local use only).

    GET    /_sandbox/                              org id, record counts
    POST   /_sandbox/reset                         back to the creation options, reseeded
    POST   /_sandbox/seed   {"reset": true, "seed", "accounts", "contacts", "opportunities", "tasks",
                             "events", "notes", "same_modstamp"}
    GET    /_sandbox/config ; POST /_sandbox/config {any SalesforceOptions field, "faults": {...},
                             "outbound": {"url", "objects", "fields", "enabled", "duplicate_rate",
                             "out_of_order", "time_scale"}}
    GET    /_sandbox/requests?entries=N            request log and counters
    GET    /_sandbox/outbound ; POST /_sandbox/outbound/flush {"timeout": 10}
    POST   /_sandbox/records/{object}              {fields}  create as a person in the UI would
    GET    /_sandbox/records/{object}[/{id}]       rows as stored (deleted ones too)
    PATCH  /_sandbox/records/{object}/{id}         {fields}  edit in the UI
           (POST and PATCH take "_systemmodstamp": a stamp set afterwards, e.g. below a reader's cursor)
    DELETE /_sandbox/records/{object}/{id}         delete in the UI (to the Recycle Bin)
    POST   /_sandbox/burst  {"object", "count", "changes"}  edit `count` records in one transaction:
                             one shared SystemModstamp (a mass update)
    POST   /_sandbox/deletelog/purge {"before": ISO 8601 | null}  purge the delete log and Recycle Bin
                             early: earliestDateAvailable moves to `before` (default now)
    POST   /_sandbox/oauth/tokens                  mint a refresh token and a session
    POST   /_sandbox/oauth/expire                  end every session (the next call answers 401)
    POST   /_sandbox/oauth/jwt {"client_id", "public_key", "username"}  register a JWT bearer app
    POST   /_sandbox/usage  {"used": N}            calls made by other integrations of the org
    POST   /_sandbox/clock  {"advance_seconds": N} move the org's clock forward
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..wsgi import BadJson, respond_json
from .errors import ApiError
from .schema import OBJECTS, lookup
from .values import FieldProblem, parse_datetime

if TYPE_CHECKING:
    from ..wsgi import Request
    from .app import SalesforceApp


def _object(name: str) -> str:
    obj = lookup(name)
    if obj is None:
        raise ApiError(404, "NOT_FOUND", f"unknown object {name!r}; one of {', '.join(OBJECTS)}")
    return obj.name


def handle_admin(app: SalesforceApp, req: Request, start_response):
    try:
        status, body = _admin(app, req)
    except ApiError as exc:
        status, body = exc.status, exc.body()
    except FieldProblem as exc:
        status, body = 400, [exc.as_error()]
    except (BadJson, ValueError, TypeError, KeyError) as exc:
        status, body = 400, [{"errorCode": "BAD_REQUEST", "message": str(exc)}]
    return respond_json(start_response, status, body)


def _stored(rec: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in rec.items()}


def _admin(app: SalesforceApp, req: Request) -> tuple[int, object]:
    segs = req.segments[1:]
    m = req.method
    what = segs[0] if segs else ""
    body = req.json(default={}) if m in ("POST", "PATCH", "PUT") else {}
    if not isinstance(body, dict):
        raise TypeError("admin bodies are JSON objects")
    state = app.state
    if what == "" and m == "GET":
        return 200, {"platform": "salesforce", "org_id": state.org_id, "counts": state.counts()}
    if what == "reset" and m == "POST":
        app.reset()
        return 200, {"ok": True, "counts": state.counts()}
    if what == "seed" and m == "POST":
        return 200, {"ok": True, "created": app.seed(**body), "counts": state.counts()}
    if what == "config":
        if m == "POST":
            app.configure(**body)
        return 200, app.config_snapshot()
    if what == "requests" and m == "GET":
        snap = app.log.snapshot(int(req.arg("entries") or 100))
        snap["api_usage"] = app.usage.peek().used
        snap["faults_injected"] = dict(app.faults.injected)
        return 200, snap
    if what == "outbound":
        if segs[1:] == ["flush"] and m == "POST":
            return 200, {"drained": app.outbound.flush(float(body.get("timeout", 10))),
                         "counters": app.outbound.counters()}
        return 200, {**app.outbound.settings(), "counters": app.outbound.counters(),
                     "deliveries": app.outbound.deliveries()[-200:]}
    if what == "records" and len(segs) >= 2:
        obj = _object(segs[1])
        stamp = body.pop("_systemmodstamp", None) if m in ("POST", "PATCH") else None
        when = parse_datetime(str(stamp)) if stamp else None
        if len(segs) == 2 and m == "POST":
            rec = state.create(obj, body)
            return 201, _stored(state.set_modstamp(obj, rec["Id"], when) if when else rec)
        if len(segs) == 2 and m == "GET":
            with state.lock:
                return 200, [_stored(r) for r in state.records[obj].values()]
        if len(segs) == 3:
            if m == "GET":
                return 200, _stored(state.get(obj, segs[2], include_deleted=True))
            if m == "PATCH":
                rec = state.update(obj, segs[2], body)
                return 200, _stored(state.set_modstamp(obj, rec["Id"], when) if when else rec)
            if m == "DELETE":
                state.delete(obj, segs[2])
                return 200, {"ok": True}
    if what == "burst" and m == "POST":
        obj = _object(str(body.get("object", "Contact")))
        with state.lock:
            live = [r["Id"] for r in state.records[obj].values() if not r["IsDeleted"]][: int(body.get("count", 10))]
            shared = state.clock.now()
            for rid in live:
                state.update(obj, rid, dict(body.get("changes") or {}), modstamp=shared)
        return 200, {"ids": live, "SystemModstamp": shared.isoformat()}
    if what == "deletelog" and segs[1:] == ["purge"] and m == "POST":
        before = parse_datetime(body["before"]) if body.get("before") else None
        purged = state.purge_delete_log(before)
        return 200, {"purged": purged, "earliestDateAvailable": state.earliest_delete_available().isoformat()}
    if what == "oauth" and m == "POST":
        if segs[1:] == ["tokens"]:
            return 200, {"refresh_token": app.sessions.new_refresh(),
                         "access_token": app.sessions.new_access(app.options.session_seconds or None),
                         "client_id": app.options.client_id, "client_secret": app.options.client_secret}
        if segs[1:] == ["expire"]:
            return 200, {"expired": app.sessions.expire_all()}
        if segs[1:] == ["jwt"]:
            with app.sessions.lock:
                app.sessions.jwt_keys[str(body["client_id"])] = (str(body["public_key"]), str(body["username"]))
            return 200, {"ok": True}
    if what == "usage" and m == "POST":
        used = int(body.get("used", 0))
        if used > 0:
            app.usage.hit(used) if not app.usage.limit else _fill(app, used)
        return 200, {"api_usage": app.usage.peek().used}
    if what == "clock" and m == "POST":
        state.clock.offset += float(body.get("advance_seconds", 0))
        return 200, {"now": state.clock.now().isoformat(), "offset_seconds": state.clock.offset}
    raise ApiError(404, "NOT_FOUND", f"no admin endpoint {m} {req.path}")


def _fill(app: SalesforceApp, used: int) -> None:
    """Count `used` calls made elsewhere, up to the allocation (the window refuses more at once)."""
    room = max(0, app.usage.limit - app.usage.peek().used)
    if min(used, room):
        app.usage.hit(min(used, room))
