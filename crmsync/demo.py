"""`crmsync demo`: the three sandbox CRMs in this process, the embedded default (SQLite, tasks
inline), one tenant with a HubSpot, a Pipedrive and a Salesforce config, a full sync, edits on every
side including a real conflict, an incremental sync, a change made in Salesforce reaching HubSpot
and Pipedrive, and an account of what happened."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import click


def _say(text: str = "") -> None:
    click.echo(text)


def _heading(text: str) -> None:
    _say()
    _say(click.style(text, bold=True))


def _job_line(name: str, job: dict) -> str:
    parts = []
    for entity, c in (job.get("counts") or {}).items():
        if not isinstance(c, dict):
            continue
        moved = {k: v for k, v in c.items() if v and k != "skipped"}
        if moved:
            parts.append(f"{entity} " + " ".join(f"{k}={v}" for k, v in moved.items()))
    took = job.get("duration_seconds")
    return f"  {name:<24} {job['status']:<10} {took or 0:5.2f}s  " + ("; ".join(parts) or "nothing to do")


@click.command()
@click.option("--contacts", default=60, show_default=True, help="HubSpot contacts to seed.")
@click.option("--persons", default=40, show_default=True, help="Pipedrive persons to seed.")
@click.option("--seed", default=7, show_default=True)
def demo(contacts, persons, seed):
    """Try crmsync end to end without any CRM account."""
    started = time.monotonic()
    home = Path(os.environ.get("CRMSYNC_HOME") or ".crmsync").resolve()
    home.mkdir(parents=True, exist_ok=True)
    db_path = home / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    # The embedded default, whatever the shell says: SQLite, no broker (inline), no Redis.
    os.environ["CRMSYNC_DATABASE_URL"] = f"sqlite:///{db_path}"
    for var in ("CRMSYNC_BROKER_URL", "CRMSYNC_REDIS_URL"):
        os.environ.pop(var, None)
    os.environ.setdefault("CRMSYNC_SECRET_KEY", secrets.token_urlsafe(32))
    from crmsync.settings import get_settings
    get_settings.cache_clear()

    from crmsync.configs import create_config, create_tenant
    from crmsync.credentials import Vault
    from crmsync.db import session_scope
    from crmsync.db.migrate import upgrade
    from crmsync.sandbox.hubspot import create_app as hubspot_app
    from crmsync.sandbox.pipedrive import create_app as pipedrive_app
    from crmsync.sandbox.salesforce import create_app as salesforce_app
    from crmsync.sandbox.server import SandboxServer
    from crmsync.sync.inline import run_job_inline

    _heading("1. Setting up")
    upgrade()
    hs = hubspot_app(seed=seed, contacts=contacts, companies=max(3, contacts // 8), deals=max(3, contacts // 5),
                     tasks=5, notes=5, rate_limit=0, search_rate_limit=0, daily_limit=0)
    pd = pipedrive_app(seed=seed, persons=persons, organizations=max(3, persons // 8), deals=max(3, persons // 5),
                       activities=10, rate_limit=0, daily_budget=0)
    sf = salesforce_app(seed=seed, contacts=max(3, persons // 2), accounts=max(3, persons // 8), opportunities=3,
                        tasks=2, events=2, api_limit=0)
    hs_server, pd_server, sf_server = SandboxServer(hs), SandboxServer(pd), SandboxServer(sf)
    hs_url, pd_url, sf_url = hs_server.start(), pd_server.start(), sf_server.start()
    try:
        vault = Vault()
        with session_scope() as s:
            tenant = create_tenant(s, "Demo Company")
            # The sandboxes run without limits; so does our budget for them (a real account's entry
            # leaves "rate_limits" out and gets its CRM's published limits).
            hs_secret = vault.store(s, name="demo-hubspot", platform="hubspot",
                                    value={"token": hs.options.token, "rate_limits": "none"})
            pd_secret = vault.store(s, name="demo-pipedrive", platform="pipedrive",
                                    value={"api_token": pd.options.token, "rate_limits": "none"})
            hs_cfg = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot",
                                       "credentials_vault_id": hs_secret.id, "api_base_url": hs_url,
                                       "account_id": str(hs.options.portal_id),
                                       "conflict_strategy": "manual_review"})
            pd_cfg = create_config(s, {"tenant_id": tenant.id, "platform": "pipedrive",
                                       "credentials_vault_id": pd_secret.id, "api_base_url": pd_url,
                                       "account_id": str(pd.options.company_id),
                                       "conflict_strategy": "timestamp_based",
                                       # Deal stages, pipelines and activity types are named differently
                                       # in each CRM; the demo keeps deals and activities in HubSpot.
                                       "entities": ["contacts", "companies"]})
            sf_secret = vault.store(s, name="demo-salesforce", platform="salesforce",
                                    value={"client_id": sf.options.client_id, "client_secret": sf.options.client_secret,
                                           "refresh_token": sf.options.refresh_token, "rate_limits": "none",
                                           # a session signed in already, as a connected app setup leaves it
                                           "access_token": sf.options.token, "instance_url": sf_url})
            sf_cfg = create_config(s, {"tenant_id": tenant.id, "platform": "salesforce",
                                       "credentials_vault_id": sf_secret.id, "api_base_url": sf_url,
                                       "account_id": sf.options.org_id, "conflict_strategy": "timestamp_based",
                                       "entities": ["contacts", "companies"]})
            hs_id, pd_id, sf_id, tenant_id = hs_cfg.id, pd_cfg.id, sf_cfg.id, tenant.id
        _say(f"  database        {db_path} (SQLite, tasks inline)")
        _say(f"  sandbox HubSpot {hs_url}  portal {hs.options.portal_id}: {contacts} contacts, companies, deals")
        _say(f"  sandbox Pipedrive {pd_url}  company {pd.options.company_id}: {persons} persons, orgs, deals")
        _say(f"  sandbox Salesforce {sf_url}  org {sf.options.org_id}: contacts, accounts, opportunities")
        _say("  tenant 'Demo Company' with three configs: HubSpot (all entities, manual_review),")
        _say("  Pipedrive and Salesforce (contacts and companies, timestamp_based)")

        _heading("2. First sync: each CRM's records come in, then go out to the other CRM")
        _say(_job_line("HubSpot (full)", run_job_inline(hs_id, full=True)))
        _say(_job_line("Pipedrive (full)", run_job_inline(pd_id, full=True)))
        _say(_job_line("Salesforce (full)", run_job_inline(sf_id, full=True)))
        _say(_job_line("HubSpot (push back)", run_job_inline(hs_id)))
        _say(_job_line("Pipedrive (push back)", run_job_inline(pd_id)))
        # What the push-backs normalised into local rows (phones, emails as each CRM keeps them)
        # reaches Salesforce too, so all three agree before anyone edits.
        _say(_job_line("Salesforce (push back)", run_job_inline(sf_id)))
        _say(_tally(session_scope, tenant_id, hs, pd))

        _heading("3. People edit on every side")
        contact_a, contact_b, contact_c = _three_linked_contacts(session_scope, tenant_id)
        hs.state.update(_hs_type(hs, "contacts"), contact_a["hubspot"], {"lastname": "Edited-In-HubSpot"},
                        source="CRM_UI")
        _say(f"  in HubSpot:   {contact_a['email']}: last name -> Edited-In-HubSpot")
        person = pd.state.tables["person"].rows[int(contact_a["pipedrive"])]
        other = pd.state.tables["person"].rows[int(contact_b["pipedrive"])]
        pd.state.update("person", other["id"], {"phones": [{"value": "+372 5555 4242", "primary": True,
                                                            "label": "work"}]}, source="app")
        _say(f"  in Pipedrive: {contact_b['email']}: phone -> +372 5555 4242")
        del person
        _local_edit(session_scope, tenant_id, contact_b["id"], job_title="Chief Demo Officer")
        _say(f"  in crmsync:   {contact_b['email']}: job title -> Chief Demo Officer")
        hs.state.update(_hs_type(hs, "contacts"), contact_c["hubspot"], {"firstname": "Hubert"}, source="CRM_UI")
        _local_edit(session_scope, tenant_id, contact_c["id"], first_name="Loretta")
        _say(f"  a real conflict: {contact_c['email']}: first name -> 'Hubert' in HubSpot AND 'Loretta' locally")

        _heading("4. Incremental sync")
        _say(_job_line("HubSpot", run_job_inline(hs_id)))
        _say(_job_line("Pipedrive", run_job_inline(pd_id)))
        _say(_job_line("HubSpot", run_job_inline(hs_id)))
        _say(_where_values_went(session_scope, tenant_id, hs, pd, contact_a, contact_b))

        _heading("5. The conflict, held for review (HubSpot config uses manual_review)")
        from crmsync.sync.conflicts import list_conflicts, resolve_conflict_record
        with session_scope() as s:
            pending = [(c.id, c.conflicting_fields, c.local_snapshot, c.remote_snapshot)
                       for c in list_conflicts(s, tenant_id=tenant_id)]
        for cid, fields, local, remote in pending:
            for f in fields:
                _say(f"  conflict {cid[:8]} {f}: local={local.get(f)!r} HubSpot={remote.get(f)!r} "
                     "— neither side was overwritten")
        if pending:
            with session_scope() as s:
                resolve_conflict_record(s, pending[0][0], take="local")
            _say("  resolved: take local ('Loretta'), then push:")
            _say(_job_line("HubSpot (push)", run_job_inline(hs_id, trigger="push")))
            _say(_job_line("Pipedrive", run_job_inline(pd_id)))
            rec = hs.state.records["contacts"][int(contact_c["hubspot"])]
            _say(f"  HubSpot now says first name = {rec.props.get('firstname')!r}")

        _heading("6. A change made in Salesforce reaches HubSpot and Pipedrive")
        _say(_salesforce_change(session_scope, tenant_id, hs, pd, sf, hs_id, pd_id, sf_id))

        _heading("7. Nothing left to do: a last round changes nothing anywhere")
        _say(_job_line("HubSpot", run_job_inline(hs_id)))
        _say(_job_line("Pipedrive", run_job_inline(pd_id)))
        _say(_job_line("Salesforce", run_job_inline(sf_id)))
        _say(_tally(session_scope, tenant_id, hs, pd))
        _say()
        _say(f"Done in {time.monotonic() - started:.1f} s. Look around: CRMSYNC_DATABASE_URL=sqlite:///{db_path} "
             "crmsync jobs list")
    finally:
        hs.webhooks.stop()
        sf.close()
        hs_server.stop()
        pd_server.stop()
        sf_server.stop()


def _salesforce_change(session_scope, tenant_id, hs, pd, sf, hs_id, pd_id, sf_id) -> str:
    """Edit a contact linked in all three CRMs in Salesforce (as a person in its UI), then sync."""
    from crmsync.sync.inline import run_job_inline
    target = next(c for c in _linked_contacts(session_scope, tenant_id)
                  if {"hubspot", "pipedrive", "salesforce"} <= c.keys())
    sf.state.update("Contact", target["salesforce"], {"Phone": "+1 415 555 0199"})
    lines = [f"  in Salesforce: {target['email']}: phone -> +1 415 555 0199",
             _job_line("Salesforce", run_job_inline(sf_id)), _job_line("HubSpot", run_job_inline(hs_id)),
             _job_line("Pipedrive", run_job_inline(pd_id))]
    hs_phone = hs.state.records["contacts"][int(target["hubspot"])].props.get("phone")
    pd_phones = pd.state.tables["person"].rows[int(target["pipedrive"])].get("phones") or []
    pd_phone = next((p.get("value") for p in pd_phones if p.get("primary")), None)
    lines.append(f"  Salesforce's phone edit:  HubSpot {hs_phone!r}, Pipedrive {pd_phone!r}")
    return "\n".join(lines)


def _hs_type(hs, name):
    from crmsync.sandbox.hubspot import objects as ot
    return ot.lookup(name)


def _local_edit(session_scope, tenant_id, contact_id, **values):
    from sqlalchemy import update

    from crmsync.db.models import Contact
    from crmsync.db.types import utcnow
    with session_scope() as s:
        s.execute(update(Contact).where(Contact.id == contact_id, Contact.tenant_id == tenant_id)
                  .values(**values, updated_at=utcnow(), last_change_cause="demo:local-edit"))


def _linked_contacts(session_scope, tenant_id) -> list[dict]:
    """The tenant's contacts by email, each {"id", "email", <platform>: its external id, ...}."""
    from sqlalchemy import select

    from crmsync.db.models import Contact, SyncLink
    with session_scope() as s:
        rows = s.execute(select(Contact.id, Contact.email, SyncLink.platform, SyncLink.external_id)
                         .join(SyncLink, (SyncLink.local_id == Contact.id) & (SyncLink.entity_type == "contact"))
                         .where(Contact.tenant_id == tenant_id).order_by(Contact.email)).all()
    contacts: dict[str, dict] = {}
    for cid, email, platform, ext in rows:
        contacts.setdefault(cid, {"id": cid, "email": email})[platform] = ext
    return list(contacts.values())


def _three_linked_contacts(session_scope, tenant_id):
    linked = [c for c in _linked_contacts(session_scope, tenant_id) if "hubspot" in c and "pipedrive" in c]
    return linked[0], linked[1], linked[2]


def _tally(session_scope, tenant_id, hs, pd) -> str:
    from sqlalchemy import func, select

    from crmsync.db.models import ENTITY_MODELS
    lines = ["  records      local  HubSpot  Pipedrive"]
    hs_names = {"contact": ["contacts"], "company": ["companies"], "deal": ["deals"]}
    pd_names = {"contact": "person", "company": "organization", "deal": "deal"}
    with session_scope() as s:
        for entity in ("contact", "company", "deal"):
            table = ENTITY_MODELS[entity].__table__
            local = s.scalar(select(func.count()).select_from(table).where(
                table.c.tenant_id == tenant_id, table.c.deleted_at.is_(None)))
            hs_n = sum(1 for n in hs_names[entity] for r in hs.state.records[n].values()
                       if not r.archived and r.merged_into is None)
            pd_n = sum(1 for r in pd.state.tables[pd_names[entity]].rows.values() if not r["is_deleted"])
            lines.append(f"  {entity:<10} {local:>7} {hs_n:>8} {pd_n if entity != 'deal' else '(not synced)':>10}")
    return "\n".join(lines)


def _where_values_went(session_scope, tenant_id, hs, pd, contact_a, contact_b) -> str:
    from crmsync.db.models import Contact
    with session_scope() as s:
        a = s.get(Contact, contact_a["id"])
        b = s.get(Contact, contact_b["id"])
    pd_a = pd.state.tables["person"].rows[int(contact_a["pipedrive"])]
    hs_b = hs.state.records["contacts"][int(contact_b["hubspot"])]
    return "\n".join([
        f"  HubSpot's last-name edit:  local {a.last_name!r}, Pipedrive {pd_a.get('last_name')!r}",
        f"  Pipedrive's phone edit:    local {b.phone!r}, HubSpot {hs_b.props.get('phone')!r}",
        (f"  local job-title edit:      HubSpot {hs_b.props.get('jobtitle')!r} (Pipedrive has no job title field; "
         "crmsync keeps it)"),
    ])
