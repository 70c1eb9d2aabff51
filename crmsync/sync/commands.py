"""CLI: `sync run`, `jobs list|show|cancel|resume`, `conflicts list|show|resolve` (contract: docs/cli.md)."""
from __future__ import annotations

import contextlib
import sys
import time
from contextlib import contextmanager

import click

# Light imports only: `crmsync jobs list` loads this module and must start without SQLAlchemy
# (see crmsync.db.reads); each command imports what it needs.
from crmsync.console import ID, LIMIT, bad_input, emit, failed, json_option, table


def _session():
    from crmsync.db import session_scope
    return session_scope()


def _progress_printer(as_json: bool):
    """A rich progress display on stderr: one line per entity and direction."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(bar_width=None, pulse_style="cyan"),
                        TextColumn("{task.fields[summary]}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=False)
    tasks: dict[tuple[str, str], int] = {}

    def update(step) -> None:
        key = (step.kind, step.entity)
        if key not in tasks:
            tasks[key] = progress.add_task(f"{step.kind} {step.entity}", total=None, summary="")
        c = step.counts or {}
        summary = (f"pages {step.pages}  +{c.get('created', 0)} ~{c.get('updated', 0)} -{c.get('deleted', 0)}"
                   f"  conflicts {c.get('conflicts', 0)}  failed {c.get('failed', 0)}")
        progress.update(tasks[key], summary=summary, total=1 if step.done else None, completed=1 if step.done else 0)
    return progress, update


def _job_summary(job: dict) -> str:
    parts = [f"job {job['job_id']}: {job['status']}"]
    parts += [f"{k.removesuffix('_synced')} {job[k]}" for k in job if k.endswith("_synced")]
    parts.append(f"conflicts {job['conflicts']}")
    if job.get("error"):
        parts.append(f"error: {job['error']}")
    return ", ".join(parts)


@click.group()
def sync():
    """Run syncs, the deletion sweep, and see drift."""


@sync.command("run")
@click.argument("config_id")
@click.option("--inline", "inline", is_flag=True, help="Run the whole job in this process.")
@click.option("--wait", "wait", is_flag=True, help="Enqueue, then follow the job until it ends.")
@click.option("--full", is_flag=True, help="Ignore checkpoints: list everything again.")
@click.option("--sweep", is_flag=True, help="Run the deletion sweep and reconciliation now (ids only).")
@click.option("--force", is_flag=True, help="Sync a disabled config once anyway.")
@json_option
def sync_run(config_id, inline, wait, full, sweep, force, as_json):
    """Sync one config now (or, with --sweep, find deletions and drift). A job of the config whose
    runner died is resumed from its checkpoints instead of starting anew."""
    if inline and wait:
        bad_input("give at most one of --inline and --wait")
    if sweep and full:
        bad_input("give at most one of --sweep and --full")
    trigger = "sweep" if sweep else "manual"
    if inline:
        from crmsync.runtime import CollectBetweenUnits
        # This process does nothing else: its garbage is collected between units, not on
        # allocation counts (the child reading ahead, forked in there, inherits the same).
        with CollectBetweenUnits() as collecting:
            job = _run_here(config_id, full=full, sweep=sweep, force=force, trigger=trigger, as_json=as_json,
                            unit_done=collecting.unit_done)
    else:
        config_id = _config_id(config_id)
        from crmsync.configs import get_config
        from crmsync.sync.errors import ConfigDisabled, JobAlreadyActive
        from crmsync.sync.jobs import active_job, create_job, lease_expired, resume_job
        with _session() as s:
            config = get_config(s, config_id)
            try:
                existing = active_job(s, config_id)
                if existing is not None and lease_expired(existing) and (config.enabled or force):
                    job_id = resume_job(s, existing.id).id
                else:
                    job_id = create_job(s, config, trigger=trigger, full=full, force=force).id
                    _start(s, job_id)
            except (JobAlreadyActive, ConfigDisabled) as err:
                failed(str(err))
        job = _follow(job_id) if wait else _job(job_id)
    if sweep:
        from crmsync.entities import ENTITY_PLURALS
        job["drift"] = {ENTITY_PLURALS[e]: d for e, d in ((job.get("counts") or {}).get("drift") or {}).items()}
    _report(job, as_json, _drift_lines(job["drift"]) if sweep else "")


def _config_id(config_id: str, early=None) -> str:
    """The config's id as stored, or a usage error (the early reader, if any, let go first)."""
    from crmsync.configs import ConfigError, get_config
    with _session() as s:
        try:
            return get_config(s, config_id).id
        except ConfigError as err:
            if early is not None:
                early.discard()
            bad_input(str(err))


def _run_here(config_id: str, *, full: bool, sweep: bool, force: bool, trigger: str, as_json: bool,
              unit_done) -> dict:
    """`sync run --inline`: the whole job in this process, its first CRM pages read while the
    job is being made."""
    early = None
    if not sweep:
        # The CRM's first pages are read while SQLAlchemy and the models load (~0.5 s of one core).
        from crmsync.sync.read_ahead import read_early
        early = read_early(config_id, full=full, force=force)
    config_id = _config_id(config_id, early)
    from crmsync.runtime import settle_startup_objects
    from crmsync.sync.errors import ConfigDisabled, JobAlreadyActive
    from crmsync.sync.inline import run_job_inline
    # A progress display is for a person at a terminal; a script capturing stderr gets none
    # (nor pays for rich's import and refresh thread).
    if sys.stderr.isatty():
        progress, update = _progress_printer(as_json)
    else:
        progress, update = contextlib.nullcontext(), None

    def step_done(step) -> None:
        unit_done()
        if update is not None:
            update(step)
    settle_startup_objects()
    try:
        with progress:
            return run_job_inline(config_id, full=full, trigger=trigger, progress=step_done, force=force,
                                  read_ahead=early)
    except (JobAlreadyActive, ConfigDisabled) as err:
        failed(str(err))


def _start(session, job_id: str) -> None:
    from crmsync.tasks import enqueue_after_commit
    from crmsync.tasks.names import START_JOB
    enqueue_after_commit(session, START_JOB, job_id)


def _job(job_id: str) -> dict:
    from crmsync.db.models import SyncJob
    from crmsync.sync.job_view import job_as_dict
    with _session() as s:
        return job_as_dict(s.get(SyncJob, job_id))


def _report(job: dict, as_json: bool, more: str = "") -> None:
    """The job on stdout; a job that failed (or was cancelled) also gets its reason as one line
    on stderr and exit status 1."""
    emit(job, as_json, _job_summary(job) + more)
    if job["status"] in ("failed", "cancelled"):
        failed(f"job {job['job_id']} {job['status']}: {job['error']}")


def _drift_lines(drift: dict) -> str:
    return "".join(f"\n  {entity}: remote only {d['remote_only']}, local only {d['local_only']}, "
                   f"diverged {d['diverged']}, repaired {d['repaired']} ({d.get('requests', 0)} requests)"
                   for entity, d in drift.items())


@sync.command("drift")
@click.argument("config_id")
@json_option
def sync_drift(config_id, as_json):
    """The last deletion sweep's figures: per entity, records on one side only and diverged."""
    from crmsync.configs import ConfigError, get_config
    from crmsync.sync.sweep import drift_report
    with _session() as s:
        try:
            report = drift_report(s, get_config(s, config_id))
        except ConfigError as err:
            bad_input(str(err))
    if not report:
        text = f"no sweep yet (crmsync sync run {config_id} --sweep)"
    else:
        first = next(iter(report.values()))
        text = f"sweep {first['sweep_job_id']} ({first['sweep_status']}, {first['swept_at']})" + _drift_lines(report)
    emit(report, as_json, text)


def _follow(job_id: str, timeout: float = 3600.0) -> dict:  # noqa: RET503  failed() exits
    from crmsync.db.models import SyncJob
    from crmsync.sync.job_view import job_as_dict
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with _session() as s:
            job = job_as_dict(s.get(SyncJob, job_id))
        line = f"{job['status']}: steps {job['steps_done']}/{job['steps_total']}"
        if line != last:
            click.echo(line, err=True)
            last = line
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    failed(f"job {job_id} still {job['status']} after {timeout:.0f} s")


@click.group()
def jobs():
    """Sync jobs (the original design's crm_sync_jobs)."""


@jobs.command("list")
@click.option("--config", "config_id", type=ID)
@click.option("--limit", type=LIMIT, default=20, show_default=True)
@json_option
def jobs_list(config_id, limit, as_json):
    # Plain SQL without SQLAlchemy: this command's start-up is most of its time (crmsync.db.reads).
    from crmsync.db.reads import recent_jobs
    from crmsync.sync.job_view import job_as_dict
    rows = [job_as_dict(j) for j in recent_jobs(limit, config_id)]
    emit(rows, as_json, table(rows, ["job_id", "config_id", "status", "trigger", "contacts_synced", "deals_synced",
                                     "conflicts", "created_at", "error"]))


@jobs.command("show")
@click.argument("job_id", type=ID)
@json_option
def jobs_show(job_id, as_json):
    # Plain SQL without SQLAlchemy, as `jobs list` (crmsync.db.reads).
    from crmsync.db.reads import job_with_steps
    from crmsync.sync.job_view import job_as_dict
    job, steps = job_with_steps(job_id)
    if job is None:
        bad_input(f"no job {job_id}")
    out = job_as_dict(job)
    out["steps"] = [{"entity": st["entity_type"], "kind": st["kind"], "status": st["status"], "pages": st["pages"],
                     "attempts": st["attempts"], "error": st["error"]} for st in steps]
    emit(out, as_json, _job_summary(out) + "\n" + table(out["steps"], ["kind", "entity", "status", "pages",
                                                                      "attempts", "error"]))


@contextmanager
def _job_errors():
    """A job id that names no job is bad input (exit 2); a job in the wrong state for the
    operation is a failed operation (exit 1)."""
    from crmsync.configs import ConfigError
    from crmsync.sync.errors import JobAlreadyActive, JobNotFound, JobStateError
    try:
        yield
    except (ConfigError, JobNotFound) as err:
        bad_input(str(err))
    except (JobStateError, JobAlreadyActive) as err:
        failed(str(err))


@jobs.command("cancel")
@click.argument("job_id")
@json_option
def jobs_cancel(job_id, as_json):
    """Stop an active job; its runner stops at its next unit, and the config may run again at once."""
    from crmsync.configs import parse_id
    from crmsync.sync.job_view import job_as_dict
    from crmsync.sync.jobs import cancel_job
    with _job_errors(), _session() as s:
        out = job_as_dict(cancel_job(s, parse_id(job_id, "job")))
    emit(out, as_json, _job_summary(out))


@jobs.command("resume")
@click.argument("job_id")
@click.option("--inline", "inline", is_flag=True, help="Run the rest of the job in this process.")
@json_option
def jobs_resume(job_id, inline, as_json):
    """Carry on a job whose runner died, or that failed, from its checkpoints."""
    from crmsync.configs import parse_id
    from crmsync.settings import get_settings
    from crmsync.sync.jobs import WORKERS, resume_job, this_process
    inline = inline or get_settings().inline
    runner = this_process() if inline else WORKERS
    with _job_errors(), _session() as s:
        job_id = resume_job(s, parse_id(job_id, "job"), runner=runner, enqueue=not inline).id
    if inline:
        from crmsync.sync.inline import run_claimed_job
        progress, update = _progress_printer(as_json)
        with progress:
            job = run_claimed_job(job_id, runner, progress=update)
    else:
        job = _job(job_id)
    _report(job, as_json)


@click.group()
def conflicts():
    """Conflicts held for review (the original design's crm_conflict_records)."""


@conflicts.command("list")
@click.option("--status", default="pending", show_default=True)
@click.option("--tenant", "tenant_id", type=ID)
@json_option
def conflicts_list(status, tenant_id, as_json):
    # Plain SQL without SQLAlchemy, as `jobs list` (crmsync.db.reads): the rows list_conflicts selects.
    from crmsync.db.reads import recent_conflicts
    from crmsync.sync.conflict_view import conflict_as_dict
    rows = [conflict_as_dict(c) for c in recent_conflicts(tenant_id=tenant_id, status=status or None)]
    emit(rows, as_json, table(rows, ["id", "entity_type", "entity_id", "platform", "conflicting_fields", "status"]))


@conflicts.command("show")
@click.argument("conflict_id")
@json_option
def conflicts_show(conflict_id, as_json):
    from crmsync.sync.conflicts import conflict_as_dict, get_conflict
    from crmsync.sync.errors import ConflictResolutionError
    with _session() as s:
        try:
            out = conflict_as_dict(get_conflict(s, conflict_id))
        except ConflictResolutionError as err:
            bad_input(str(err))
    lines = [f"{out['entity_type']} {out['entity_id']} ({out['platform']} {out['external_id']}): {out['status']}"]
    for f in out["conflicting_fields"]:
        lines.append(f"  {f}: local={out['local'][f]!r} remote={out['remote'][f]!r} base={out['base'][f]!r}")
    emit(out, as_json, "\n".join(lines))


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.option("--take", type=click.Choice(["local", "remote"]))
@click.option("--value", "values", multiple=True, metavar="FIELD=VALUE")
@json_option
def conflicts_resolve(conflict_id, take, values, as_json):
    """Settle a conflict; the result is pushed to the CRM."""
    from crmsync.sync.conflicts import (
        conflict_as_dict,
        push_after_resolution,
        record_push,
        resolve_conflict_record,
    )
    from crmsync.sync.errors import ConflictResolutionError
    parsed = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            bad_input(f"--value: expected FIELD=VALUE, got {item!r}")
        parsed[name] = value
    with _session() as s:
        try:
            conflict = resolve_conflict_record(s, conflict_id, take=take, values=parsed or None)
        except ConflictResolutionError as err:
            bad_input(str(err))
        out = conflict_as_dict(conflict)
        config_id, tenant_id = conflict.config_id, conflict.tenant_id
    # Push the resolution: inline without a broker, else through the workers.
    out.update(push_after_resolution(tenant_id, [config_id]))
    with _session() as s:
        record_push(s, [out["id"]], out)
    emit(out, as_json, f"conflict {out['id']} resolved")
