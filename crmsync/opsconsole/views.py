"""The console's pages. Each handler reads the viewer's tenant scope first and passes it to every
query; a row outside the scope answers 404, exactly like a row that does not exist."""
from __future__ import annotations

import functools
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from crmsync.configs import ConfigError, get_config, parse_id
from crmsync.db import session_scope
from crmsync.db.models import ENTITY_MODELS, SyncConfig, SyncJob, SyncJobStep, SyncLink, Tenant
from crmsync.db.types import utcnow
from crmsync.entities import SYNCED_FIELDS
from crmsync.opsconsole import MAX_SESSION_HOURS, queries
from crmsync.opsconsole.users import Viewer, authenticate, end_sessions, load_viewer
from crmsync.sync import conflicts as lib
from crmsync.sync import store
from crmsync.sync.errors import ConflictResolutionError
from crmsync.sync.merge import STRATEGIES

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")
CHOICES = ("local", "remote", "base", "value")


@contextmanager
def db():
    with session_scope(current_app.extensions["crmsync_console_settings"].database_url) as s:
        yield s


# --- sign-in ----------------------------------------------------------------------------------
@bp.before_app_request
def _load_viewer():
    g.viewer = None
    user_id = session.get("user_id")
    if user_id is None:
        return
    signed_in_at = session.get("signed_in_at", 0)
    if time.time() - signed_in_at > MAX_SESSION_HOURS * 3600:
        session.clear()
        return
    with db() as s:
        g.viewer = load_viewer(s, user_id)
    if g.viewer is None or session.get("generation") != g.viewer.session_generation:
        g.viewer = None      # the user is gone, or signed out since this cookie was made
        session.clear()


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def signed_in(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if g.viewer is None:
            return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))
        return view(*args, **kwargs)
    return wrapper


def scope() -> str | None:
    viewer: Viewer = g.viewer
    return viewer.tenant_id


def _local_path(target: str | None, default: str) -> str:
    """Only a path on this console is followed after sign-in or a form (no open redirect).
    Browsers read a backslash as a slash and drop tabs and line breaks inside a URL (WHATWG URL
    standard), so a path of slash, backslash, host, or slash, tab, slash, host, would leave the
    site: refused like any other host."""
    if not target:
        return default
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        with db() as s:
            viewer = authenticate(s, request.form.get("email", ""), request.form.get("password", ""))
        if viewer is not None:
            session.clear()
            session.permanent = True
            session["user_id"] = viewer.user_id
            session["generation"] = viewer.session_generation
            session["signed_in_at"] = time.time()
            return redirect(_local_path(request.form.get("next"), url_for("console.queue")))
        error = "Wrong email or password."
    return render_template("login.html", error=error, next=request.values.get("next", "")), (401 if error else 200)


@bp.post("/logout")
def logout():
    if g.viewer is not None:
        # A signed cookie cannot be taken back from the browser; the generation it names can be
        # retired, so a copy of this cookie (or another browser's) is refused from now on.
        with db() as s:
            end_sessions(s, g.viewer.user_id)
    session.clear()
    return redirect(url_for("console.login"))


@bp.app_errorhandler(CSRFError)
def _csrf_error(err):
    return render_template("message.html", title="Form refused",
                           message="This form was not sent by this console's page, or the page is too old. "
                                   "Reload the page and try again; nothing was changed."), 400


@bp.app_errorhandler(404)
def _not_found(err):
    return render_template("message.html", title="Not found",
                           message="There is nothing here you can see."), 404


# --- the conflict queue -----------------------------------------------------------------------
@bp.get("/")
@signed_in
def home():
    return redirect(url_for("console.queue"))


@bp.get("/conflicts")
@signed_in
def queue():
    error = None
    try:
        filters = queries.parse_filters(request.args)
        after = queries.parse_page_key(request.args.get("after"))
    except queries.BadFilter as err:
        filters, after, error = queries.QueueFilters(), None, str(err)
    started = time.perf_counter()
    with db() as s:
        page = queries.queue_page(s, scope(), filters, after)
        tenants = queries.visible_tenants(s, scope())
        configs = queries.visible_configs(s, scope())
    server_ms = (time.perf_counter() - started) * 1000
    template = "_queue_results.html" if request.headers.get("HX-Request") else "queue.html"
    return render_template(template, page=page, filters=filters, tenants=tenants, configs=configs, error=error,
                           strategies=STRATEGIES, ages=queries.AGE_LABELS, fields=queries.field_choices(),
                           entities=list(SYNCED_FIELDS), server_ms=server_ms,
                           next_url=(url_for("console.queue", **filters.as_args(), after=page.next_key)
                                     if page.next_key else None),
                           first_url=url_for("console.queue", **filters.as_args()) if after else None,
                           here=request.full_path), (400 if error else 200)


@bp.post("/conflicts/bulk")
@signed_in
def bulk():
    take = request.form.get("take")
    ids = request.form.getlist("ids")
    back = _local_path(request.form.get("back"), url_for("console.queue"))
    if take not in lib.SIDES:
        flash("Choose which side to take.", "error")
        return redirect(back)
    if not ids:
        flash("Select at least one conflict.", "error")
        return redirect(back)
    try:
        with db() as s:
            settled = [lib.resolve_conflict_record(s, cid, take=take, tenant_id=scope(), resolved_by=g.viewer.email)
                       for cid in ids]
            targets = [(c.id, c.tenant_id, c.config_id) for c in settled]
    except ConflictResolutionError as err:
        # The flash travels in the session cookie: a message echoing a huge bad id would grow it
        # past what a browser keeps, and the browser would drop the session with it.
        flash(f"Nothing was resolved: {_clip(str(err))}.", "error")
        return redirect(back)
    _push(targets)
    side = "our data" if take == "local" else "the CRM's data"
    flash(f"Resolved {len(targets)} conflict(s) taking {side}; the push followed.", "ok")
    return redirect(back)


def _push(targets: list[tuple[str, str, str | None]]) -> list[dict]:
    """Push what was just resolved, one push per tenant (its configs), and note it on the audit rows."""
    by_tenant: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for conflict_id, tenant_id, config_id in targets:
        by_tenant[tenant_id].append((conflict_id, config_id))
    results = []
    for tenant_id, items in by_tenant.items():
        push = lib.push_after_resolution(tenant_id, [config_id for _, config_id in items])
        with db() as s:
            lib.record_push(s, [conflict_id for conflict_id, _ in items], push)
        results.append(push)
    return results


# --- one conflict -----------------------------------------------------------------------------
def _load_conflict(s, conflict_id: str):
    try:
        return lib.get_conflict(s, conflict_id, tenant_id=scope())
    except ConflictResolutionError:
        abort(404)


DESCRIBED_CAUSES = {"conflict-resolution": "a conflict resolution", None: "an edit in our database"}


def _describe_cause(cause: str | None) -> str:
    if cause in DESCRIBED_CAUSES:
        return DESCRIBED_CAUSES[cause]
    if cause.startswith("sync:"):
        return f"a sync from {cause.removeprefix('sync:')}"
    if cause.startswith("rule:"):
        return "an automation rule"
    return cause


def _conflict_context(s, conflict) -> dict[str, Any]:
    """Everything the conflict page shows besides the form's own state."""
    row = store.load_rows(s, conflict.tenant_id, conflict.entity_type, [conflict.entity_id]).get(conflict.entity_id)
    link = s.scalar(select(SyncLink).where(SyncLink.tenant_id == conflict.tenant_id,
                                           SyncLink.platform == conflict.platform,
                                           SyncLink.entity_type == conflict.entity_type,
                                           SyncLink.local_id == conflict.entity_id))
    base = conflict.base_snapshot or {}
    names = [f for f in dict.fromkeys([*conflict.local_snapshot, *conflict.remote_snapshot, *base])
             if not f.startswith("__")]
    others = [f for f in names if f not in conflict.conflicting_fields]
    return {
        "conflict": conflict,
        "tenant": s.get(Tenant, conflict.tenant_id),
        "config": s.get(SyncConfig, conflict.config_id) if conflict.config_id else None,
        "crm": _crm_name(conflict.platform),
        "ours_changed": {"when": row.updated_at if row else None,
                         "by": _describe_cause(row.last_change_cause) if row else "—"},   # the row's last writer
        "theirs_changed": {"when": link.remote_updated_at if link else None,
                           "by": f"a {conflict.platform} user or integration"},
        "base_when": link.base_at if link else None,
        "base": base,
        "equal_fields": [f for f in others if conflict.local_snapshot.get(f) == conflict.remote_snapshot.get(f)],
        "one_sided_fields": [f for f in others if conflict.local_snapshot.get(f) != conflict.remote_snapshot.get(f)],
        "audit": queries.audit_rows(s, scope(), entity=(conflict.entity_type, conflict.entity_id)),
    }


def _picked(conflict, form) -> tuple[dict[str, Any], dict[str, str]]:
    """The values the form chose per field, and the choice per field (local/remote/base/value)."""
    values, picks = {}, {}
    base = conflict.base_snapshot or {}
    for f in conflict.conflicting_fields:
        pick = form.get(f"choice.{f}", "remote")
        if pick not in CHOICES:
            raise ConflictResolutionError(f"{f}: choose ours, theirs, base or a value")
        picks[f] = pick
        if pick == "value":
            values[f] = form.get(f"value.{f}", "")
        else:
            values[f] = {"local": conflict.local_snapshot, "remote": conflict.remote_snapshot, "base": base}[pick].get(f)
    return values, picks


@bp.get("/conflicts/<conflict_id>")
@signed_in
def conflict(conflict_id):
    with db() as s:
        c = _load_conflict(s, conflict_id)
        ctx = _conflict_context(s, c)
        picks = dict.fromkeys(c.conflicting_fields, "remote")
        preview = lib.planned_writes(c, {f: c.remote_snapshot.get(f) for f in c.conflicting_fields})
        return render_template("conflict.html", **ctx, picks=picks, typed={}, preview=preview, error=None)


@bp.post("/conflicts/<conflict_id>/preview")
@signed_in
def preview(conflict_id):
    with db() as s:
        c = _load_conflict(s, conflict_id)
        try:
            values, _ = _picked(c, request.form)
            chosen = {f: lib.typed_value(s, c, f, v) for f, v in values.items()}
            return render_template("_preview.html", conflict=c, preview=lib.planned_writes(c, chosen), error=None)
        except ConflictResolutionError as err:
            return render_template("_preview.html", conflict=c, preview=None, error=str(err))


@bp.post("/conflicts/<conflict_id>/resolve")
@signed_in
def resolve(conflict_id):
    shown = [f for f in request.form.get("fields", "").split(",") if f]
    try:
        with db() as s:
            c = _load_conflict(s, conflict_id)
            values, _ = _picked(c, request.form)
            c = lib.resolve_conflict_record(s, c.id, values=values, tenant_id=scope(),
                                            resolved_by=g.viewer.email, expect_fields=shown)
            target = (c.id, c.tenant_id, c.config_id)
    except ConflictResolutionError as err:
        with db() as s:
            c = _load_conflict(s, conflict_id)
            ctx = _conflict_context(s, c)
            values, picks = {}, {}
            if c.status == "pending":
                try:
                    values, picks = _picked(c, request.form)
                except ConflictResolutionError:
                    picks = dict.fromkeys(c.conflicting_fields, "remote")
            typed = {f: request.form.get(f"value.{f}", "") for f in c.conflicting_fields}
            return render_template("conflict.html", **ctx, picks=picks, typed=typed, preview=None,
                                   error=str(err)), (409 if c.status != "pending" or "changed since" in str(err)
                                                     else 422)
    push = _push([target])
    jobs = lib.push_summary(push[0])["jobs"] if push else []
    failed = [j for j in jobs if j.get("error") or j.get("status") == "failed"]
    flash("Resolved; " + ("the push failed: " + _clip("; ".join(str(j.get("error")) for j in failed)) if failed
                          else "the push followed."), "error" if failed else "ok")
    return redirect(url_for("console.conflict", conflict_id=conflict_id))


@bp.post("/rules")
@signed_in
def save_rule():
    back = _local_path(request.form.get("back"), url_for("console.queue"))
    prefer, entity, field = request.form.get("prefer"), request.form.get("entity", ""), request.form.get("field", "")
    try:
        with db() as s:
            try:
                config = get_config(s, request.form.get("config", ""), tenant_id=scope())
            except ConfigError:
                abort(404)
            touched = lib.save_field_rule(s, config, entity, field, prefer, created_by=g.viewer.email)
            targets = [(c.id, c.tenant_id, c.config_id) for c in touched]
            crm = config.platform
    except ConflictResolutionError as err:
        flash(f"No rule saved: {_clip(str(err))}.", "error")
        return redirect(back)
    if targets:
        _push(targets)
    side = "our data" if prefer == "local" else _crm_name(crm)
    flash(f"From now on {side} wins {entity} {field} conflicts in this config; {len(targets)} pending "
          f"conflict(s) settled by it.", "ok")
    return redirect(back)


# --- audit trail ------------------------------------------------------------------------------
@bp.get("/audit")
@signed_in
def audit():
    with db() as s:
        rows = queries.audit_rows(s, scope(), limit=200)
    return render_template("audit.html", rows=rows)


# --- sync health ------------------------------------------------------------------------------
def _budget_left(s, config) -> dict[str, int]:
    from crmsync.sync.connect import connect
    return connect(s, config, wait=False).budget_left()


@bp.get("/health")
@signed_in
def health():
    with db() as s:
        configs = queries.config_health(s, scope(), budget_of=_budget_left)
    return render_template("health.html", configs=configs, now=utcnow())


@bp.post("/health/<config_id>/replay")
@signed_in
def replay(config_id):
    from crmsync.ingest.replay import enqueue_replay, reset_failed
    from crmsync.tasks.errors import QueueError
    with db() as s:
        try:
            config = get_config(s, config_id, tenant_id=scope())
        except ConfigError:
            abort(404)
        ids, deliveries = reset_failed(s, tenant_id=config.tenant_id, config_id=config.id)
    try:
        enqueue_replay(ids, deliveries)
    except QueueError as err:
        flash(f"{len(ids)} event(s) and {len(deliveries)} delivery(ies) reset; the broker refused some ({err}); "
              "the outbox sweeper will enqueue them.", "error")
        return redirect(url_for("console.health"))
    flash(f"Replaying {len(ids)} failed event(s) and {len(deliveries)} failed delivery(ies).", "ok")
    return redirect(url_for("console.health"))


@bp.get("/jobs/<job_id>")
@signed_in
def job(job_id):
    try:
        job_id = parse_id(job_id, "job")
    except ConfigError:
        abort(404)
    with db() as s:
        query = select(SyncJob).where(SyncJob.id == job_id)
        if scope() is not None:
            query = query.where(SyncJob.tenant_id == scope())
        row = s.scalar(query)
        if row is None:
            abort(404)
        steps = s.scalars(select(SyncJobStep).where(SyncJobStep.tenant_id == row.tenant_id,
                                                    SyncJobStep.job_id == row.id)
                          .order_by(SyncJobStep.position)).all()
        return render_template("job.html", job=row, totals=queries.job_totals(row), steps=steps,
                               tenant=s.get(Tenant, row.tenant_id))


# --- template helpers -------------------------------------------------------------------------
def _ago(when: datetime | None) -> str:
    if when is None:
        return "—"
    seconds = (datetime.now(UTC) - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = f"{seconds / size:.0f} {unit}"
            break
    else:
        amount = f"{seconds:.0f} s"
    return f"in {amount}" if future else f"{amount} ago"


CRM_NAMES = {"hubspot": "HubSpot", "pipedrive": "Pipedrive", "salesforce": "Salesforce", "local": "Our database"}


def _crm_name(platform: str | None) -> str:
    return CRM_NAMES.get(platform or "", (platform or "the CRM").capitalize())


def _due(when: datetime | None) -> str:
    if when is None:
        return "not scheduled"
    return "due now" if when <= datetime.now(UTC) else _ago(when)


def _stamp(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "—"


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(ago=_ago, stamp=_stamp, short=queries.short, crm=_crm_name, due=_due)
    app.jinja_env.globals.update(urlencode=urlencode, entity_models=ENTITY_MODELS)

    @app.context_processor
    def _viewer():
        return {"viewer": g.get("viewer")}

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
        if g.get("viewer") is not None:
            response.headers.setdefault("Cache-Control", "no-store")
        return response
