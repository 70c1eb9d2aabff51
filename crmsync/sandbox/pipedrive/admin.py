"""The ``/_sandbox/`` admin API of the Pipedrive sandbox (no auth; local use only).

    GET    /_sandbox/                          platform, company id, record counts
    POST   /_sandbox/reset      {"reseed": true}            back to the creation options
    POST   /_sandbox/seed       {"reset": true, "seed", "persons", "organizations", "deals",
                                 "activities", "shared_update_time", "anchor"}
    GET    /_sandbox/config ; POST /_sandbox/config {any PipedriveOptions field, "faults": {...}}
    GET    /_sandbox/requests?entries=N         request log, per-endpoint counts, 429s, peaks
    GET    /_sandbox/webhooks                   delivery settings, counters and the last deliveries
    POST   /_sandbox/webhooks/flush {"timeout": 10}   wait until every queued delivery is done
    POST   /_sandbox/records/{entity}           {v2 fields}  create as a person in the UI would
    GET    /_sandbox/records/{entity}[/{id}]    rows as stored (deleted ones too)
    PATCH  /_sandbox/records/{entity}/{id}      {v2 fields}  edit as a person in the UI would
           (POST and PATCH also take "_update_time": RFC 3339, set afterwards without an event:
            a record last changed in the past)
    DELETE /_sandbox/records/{entity}/{id}      delete in the UI
    POST   /_sandbox/edits      {"entity", "count", "seed"}  realistic random UI edits
    POST   /_sandbox/merge/{entity} {"id", "merge_with_id"}  merge id into merge_with_id (UI)
    POST   /_sandbox/oauth/tokens {"user_id", "expires_in"}  mint an OAuth access+refresh token
    POST   /_sandbox/clock      {"advance_seconds": N}       move the account's clock forward

``{entity}`` is person|organization|deal|activity or its plural. UI changes carry
``change_source: "app"`` and user id 2 in webhooks; API changes ``"api"`` and the token's user.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .entities import PLURAL, SINGULAR
from .errors import BadRequest, NotFound
from .timefmt import parse_rfc3339

if TYPE_CHECKING:
    from ..wsgi import Request
    from .app import PipedriveApp


def _entity(name: str) -> str:
    entity = SINGULAR.get(name, name)
    if entity not in PLURAL:
        raise NotFound(f"Unknown entity {name!r}; one of {', '.join(PLURAL)}")
    return entity


def handle_admin(app: PipedriveApp, req: Request) -> tuple[int, dict]:
    segs = req.segments[1:]
    m = req.method
    what = segs[0] if segs else ""
    body = req.json(default={}) if m in ("POST", "PATCH", "PUT") else {}
    if not isinstance(body, dict):
        raise BadRequest("admin bodies are JSON objects")
    state = app.state
    if what == "" and m == "GET":
        return 200, {"platform": "pipedrive", "company_id": state.company["id"],
                     "company_domain": state.company["domain"], "counts": state.counts()}
    if what == "reset" and m == "POST":
        app.reset(reseed=bool(body.get("reseed", True)))
        return 200, {"ok": True, "counts": state.counts()}
    if what == "seed" and m == "POST":
        created = app.seed(**body)
        return 200, {"ok": True, "created": created, "counts": state.counts()}
    if what == "config":
        if m == "POST":
            app.configure(**body)
        return 200, app.config_snapshot()
    if what == "requests" and m == "GET":
        return 200, app.counters(int(req.arg("entries") or 100))
    if what == "webhooks":
        if len(segs) > 1 and segs[1] == "flush" and m == "POST":
            drained = app.webhooks.flush(float(body.get("timeout", 10)))
            return 200, {"drained": drained, "counters": app.webhooks.counters()}
        return 200, {**app.webhooks.settings(), "counters": app.webhooks.counters(),
                     "deliveries": app.webhooks.deliveries()[-200:]}
    if what == "records" and len(segs) >= 2:
        entity = _entity(segs[1])
        user = int(body.pop("_user_id", app.ui_user_id)) if m in ("POST", "PATCH") else app.ui_user_id
        backdate = body.pop("_update_time", None) if m in ("POST", "PATCH") else None
        if backdate is not None:
            backdate = parse_rfc3339(str(backdate), "_update_time")
        if len(segs) == 2 and m == "POST":
            row = state.create(entity, body, user, "app")
            return 201, row if backdate is None else state.set_update_time(entity, row["id"], backdate)
        if len(segs) == 2 and m == "GET":
            with state.lock:
                return 200, {"data": [state.tables[entity].rows[i] for i in sorted(state.tables[entity].rows)]}
        if len(segs) == 3 and segs[2].isdigit():
            rid = int(segs[2])
            if m == "GET":
                return 200, state.get(entity, rid)
            if m == "PATCH":
                row = state.update(entity, rid, body, user, "app")
                return 200, row if backdate is None else state.set_update_time(entity, rid, backdate)
            if m == "DELETE":
                state.delete(entity, rid, app.ui_user_id, "app")
                return 200, {"ok": True, "id": rid}
    if what == "edits" and m == "POST":
        entity = _entity(str(body.get("entity", "person")))
        edited = random_edits(app, entity, int(body.get("count", 1)), int(body.get("seed", 0)))
        return 200, {"ok": True, "edited": edited}
    if what == "merge" and len(segs) == 2 and m == "POST":
        entity = _entity(segs[1])
        row = state.merge(entity, int(body["id"]), int(body["merge_with_id"]), app.ui_user_id, "app")
        return 200, row
    if what == "oauth" and len(segs) == 2 and segs[1] == "tokens" and m == "POST":
        return 200, state.issue_oauth_tokens(int(body.get("user_id", 1)), int(body.get("expires_in", 3600)))
    if what == "clock" and m == "POST":
        state.clock.offset += float(body.get("advance_seconds", 0))
        return 200, {"now": state.clock.now(), "offset_seconds": state.clock.offset}
    raise NotFound(f"no admin endpoint {m} {req.path}")


def random_edits(app: PipedriveApp, entity: str, count: int, seed: int) -> list[dict]:
    """Edit ``count`` random live records the way a salesperson would, through the UI path."""
    rng = random.Random(seed)
    state = app.state
    with state.lock:
        live = [i for i, r in state.tables[entity].rows.items() if not r["is_deleted"]]
        out = []
        for rid in rng.sample(sorted(live), min(count, len(live))):
            row = state.tables[entity].rows[rid]
            changes = _edit_for(state, entity, row, rng)
            state.update(entity, rid, changes, app.ui_user_id, "app")
            out.append({"id": rid, "changes": changes})
        return out


def _edit_for(state, entity: str, row: dict, rng: random.Random) -> dict:
    if entity == "person":
        choice = rng.choice(("phone", "name", "tier"))
        if choice == "phone":
            return {"phones": [{"value": f"+372 5{rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                                "primary": True, "label": "mobile"}]}
        if choice == "name":
            return {"name": f"{row['first_name']} {rng.choice(('Tamm', 'Saar', 'Kask', 'Smith', 'Rossi'))}"}
        tier = state.fields.custom_by_key("person")[state.fields.key_for("person", "Tier")]
        return {"custom_fields": {tier.key: rng.choice(tier.options)["id"]}}
    if entity == "organization":
        key = state.fields.key_for("organization", "Employee count")
        return {"custom_fields": {key: rng.randint(5, 5000)}}
    if entity == "deal":
        if rng.random() < 0.5:
            stages = state.stages_of(row["pipeline_id"])
            return {"stage_id": rng.choice(stages)["id"]}
        return {"value": float(rng.randrange(500, 120000, 250))}
    return {"done": not row["done"]} if rng.random() < 0.5 else {"subject": rng.choice(
        ("Follow-up call", "Send pricing", "Demo", "Contract review"))}
