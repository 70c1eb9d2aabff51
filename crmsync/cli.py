"""The `crmsync` command (contract: docs/cli.md). Foundation commands live here; each domain
contributes its own click group (sandbox, sync, webhooks, rules, ...) registered in
`DOMAIN_COMMANDS`, loaded only when used so `crmsync --help` stays fast."""
from __future__ import annotations

import importlib
import sys

import click

from crmsync.console import ID, NAME, bad_input, emit, failed, json_option, secret_input, table
from crmsync.runtime import collect_young_less_often
from crmsync.settings import SettingsError, configure_logging, get_settings

DOMAIN_COMMANDS = {
    "sandbox": "crmsync.sandbox.commands:sandbox",
    "sync": "crmsync.sync.commands:sync",
    "jobs": "crmsync.sync.commands:jobs",
    "conflicts": "crmsync.sync.commands:conflicts",
    "demo": "crmsync.demo:demo",
    "doctor": "crmsync.doctor:doctor",
    "webhooks": "crmsync.ingest.commands:webhooks",
    "ingest": "crmsync.ingest.commands:ingest",
    "rules": "crmsync.automation.commands:rules",
    "console": "crmsync.opsconsole.commands:console",
    "metrics": "crmsync.metrics.commands:metrics",
}

# What `crmsync --help` says of each domain group without importing it (start-up stays short).
DOMAIN_HELP = {
    "sandbox": "Local HubSpot-, Pipedrive- and Salesforce-compatible servers for tests, demos and benchmarks.",
    "sync": "Run syncs, the deletion sweep, and see drift.",
    "jobs": "Sync jobs (the original design's crm_sync_jobs).",
    "conflicts": "Conflicts held for review (the original design's crm_conflict_records).",
    "demo": "Try crmsync end to end without any CRM account.",
    "doctor": "Check a config (or all): enabled, credentials, rate headroom, recent jobs, conflicts, "
              "unprocessed webhook events, unmapped custom fields; plus database, broker and workers.",
    "webhooks": "Stored webhook and product events.",
    "ingest": "The ingest web app (webhooks, product events, cron).",
    "rules": "Automation rules: a trigger, conditions and actions that write to the CRMs.",
    "console": "The operations console: conflicts field by field, the audit trail, sync health.",
    "metrics": "Prometheus metrics.",
}


def _refuse_undecodable(args) -> None:
    """An argument whose bytes are not UTF-8 reaches Python with lone surrogates in it, which no
    database, log or JSON output can hold: refused here, once for every command."""
    for position, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            raise click.UsageError(f"argument {position} is not valid UTF-8: {shown}") from None
        except AttributeError:     # not a string (a caller passing other values): click decides
            continue


class CrmsyncGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(DOMAIN_COMMANDS))

    def format_commands(self, ctx, formatter):
        """As click's, but a domain group in DOMAIN_HELP is described without importing it."""
        rows = []
        for name in self.list_commands(ctx):
            if name in DOMAIN_HELP and name not in self.commands:
                rows.append((name, click.utils.make_default_short_help(DOMAIN_HELP[name],
                                                                         formatter.width - 6 - len(name))))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None or name not in DOMAIN_COMMANDS:
            return command
        module, attr = DOMAIN_COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real missing dependency: let it show
                raise
            return None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with every refusal on one line: a usage error is `error: ...` and exit 2
        (click's own page of usage text would hide the one line the contract promises)."""
        collect_young_less_often()
        try:
            _refuse_undecodable(sys.argv[1:] if args is None else args)
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as err:
            if not standalone_mode:
                raise
            click.echo(f"error: {' '.join(err.format_message().split())}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            if not standalone_mode:
                raise
            click.echo("error: aborted", err=True)
            sys.exit(1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx):
        try:
            configure_logging(get_settings())
            return super().invoke(ctx)
        except SettingsError as err:
            bad_input(f"bad setting {err}")
        except Exception as err:
            _database_refusal(err)
            raise


def _database_refusal(err: Exception) -> None:
    """Exit with one line if `err` is the database's refusal; return otherwise."""
    from crmsync.db.reads import ReadError
    if isinstance(err, ReadError):
        # The SQLAlchemy-free read path (`crmsync jobs list`): said as SQLAlchemy's errors are below.
        failed(f"database error ({get_settings().redacted()['database_url']}): {err}")
    # Only a command that loaded SQLAlchemy can have raised its errors; a read-only command that
    # did not (`crmsync jobs list`) must not pay for importing it here.
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return
    if isinstance(err, sa_exc.DataError):
        # A value the columns cannot hold that no check caught before: still the caller's input.
        bad_input(f"the database refused a value: {_first_line(err.orig)}")
    if isinstance(err, sa_exc.DBAPIError):
        # Unreachable, refused login, gone mid-command: one line, never the driver's traceback.
        failed(f"database error ({get_settings().redacted()['database_url']}): {_first_line(err.orig)}")


def _first_line(err) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


@click.group(cls=CrmsyncGroup)
def main():
    """crmsync: two-way sync of CRM data with your own PostgreSQL."""
    from crmsync.automation import subscribe
    subscribe()   # inline syncs, resolutions and webhook processing run the rules' triggers


def _session():
    from crmsync.db import session_scope
    return session_scope()


def _vault():
    from crmsync.credentials import Vault, VaultError
    try:
        return Vault()
    except VaultError as err:
        bad_input(str(err))


# --- db ------------------------------------------------------------------------------------
@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@json_option
def db_upgrade(revision, as_json):
    """Apply migrations up to REVISION."""
    from crmsync.db.migrate import current_revision, upgrade
    from crmsync.settings import get_settings
    try:
        upgrade(None, revision)
    except Exception as err:  # noqa: BLE001 — the driver's message is the useful part (host down, auth, ...)
        failed(f"migration failed: {type(err).__name__}: {str(err).splitlines()[0]}")
    rev = current_revision()
    emit({"revision": rev, "database": get_settings().redacted()["database_url"]}, as_json,
         f"database at revision {rev}")


@db.command("downgrade")
@click.option("--revision", metavar="REV", help="The revision to go back to (`base` drops every table).")
@click.option("--yes", is_flag=True, help="Confirm: the tables of every later revision are dropped with their data.")
@json_option
def db_downgrade(revision, yes, as_json):
    """Revert migrations down to REV; data in what is dropped is lost."""
    from crmsync.db.migrate import current_revision, downgrade
    if not revision:
        bad_input("--revision: name the revision to go back to (`base` drops every table)")
    if not yes:
        bad_input(f"--yes: downgrading to {revision} drops tables and their data; pass --yes to confirm")
    try:
        downgrade(None, revision)
    except Exception as err:  # noqa: BLE001 — alembic's message names the unknown revision, the driver's the host
        failed(f"downgrade failed: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    rev = current_revision()
    emit({"revision": rev}, as_json, f"database downgraded to {rev or 'base'}")


# --- tenants ---------------------------------------------------------------------------------
@main.group()
def tenants():
    """Tenants: the companies whose CRM data crmsync keeps."""


@tenants.command("create")
@click.option("--name", required=True, type=NAME)
@json_option
def tenants_create(name, as_json):
    from crmsync.configs import ConfigError, create_tenant
    with _session() as s:
        try:
            t = create_tenant(s, name)
        except ConfigError as err:
            bad_input(f"{err.field}: {err}")
        out = {"id": t.id, "name": t.name, "created_at": t.created_at}
    emit(out, as_json, out["id"])


@tenants.command("list")
@json_option
def tenants_list(as_json):
    from sqlalchemy import select

    from crmsync.db.models import Tenant
    with _session() as s:
        rows = [{"id": t.id, "name": t.name, "created_at": t.created_at}
                for t in s.scalars(select(Tenant).order_by(Tenant.created_at))]
    emit(rows, as_json, table(rows, ["id", "name", "created_at"]))


# --- credentials -----------------------------------------------------------------------------
@main.group()
def credentials():
    """The encrypted credential vault."""


@credentials.command("set")
@click.option("--name", required=True, type=NAME)
@click.option("--platform", required=True, type=click.Choice(["hubspot", "pipedrive", "salesforce", "webhook", "api"]))
@click.option("--from-env", "from_env", metavar="VAR", help="Read the secret from this environment variable.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the secret from standard input.")
@click.option("--tenant", "tenant_id", metavar="ID",
              help="The tenant whose configs may use the entry (default: the first config that uses it).")
@click.option("--replace", is_flag=True, help="Give an existing entry a new secret (its configs use it at once).")
@json_option
def credentials_set(name, platform, from_env, from_stdin, tenant_id, replace, as_json):
    """Store a secret; it is never taken from the command line itself."""
    from sqlalchemy import select

    from crmsync.configs import AccountCheckFailed, ConfigError, get_tenant, verify_account
    from crmsync.credentials import VaultError, check_name, configs_using, secret_from_text
    from crmsync.db.models import VaultSecret
    if bool(from_env) == bool(from_stdin):
        bad_input("give exactly one of --from-env VAR or --stdin")
    text = secret_input(from_env)
    vault = _vault()
    try:
        name = check_name(name)
        value = secret_from_text(platform, text)
        with _session() as s:
            if tenant_id is not None:
                tenant_id = get_tenant(s, tenant_id).id
            existing = s.scalar(select(VaultSecret).where(VaultSecret.name == name))
            users = configs_using(s, existing.id) if existing is not None and replace else []
            # A new token must open the same CRM account as the one its configs sync.
            for config in users:
                if config.credentials_vault_id == existing.id and platform == config.platform:
                    verify_account(s, config, credentials=value)
            row = vault.store(s, name=name, platform=platform, value=value, tenant_id=tenant_id, replace=replace)
            out = {"id": row.id, "name": row.name, "platform": row.platform, "tenant_id": row.tenant_id,
                   "replaced": existing is not None, "used_by": [c.id for c in users]}
    except AccountCheckFailed as err:
        failed(str(err))
    except (VaultError, ConfigError) as err:
        bad_input(f"--tenant: {err}" if getattr(err, "field", None) == "tenant" else str(err))
    if out["used_by"] and not as_json:
        click.echo(f"replaced the secret of {name!r}, used by configs {', '.join(out['used_by'])}", err=True)
    emit(out, as_json, out["id"])


# --- api keys --------------------------------------------------------------------------------
@main.group("api-keys")
def api_keys():
    """Keys tenants use to post product events (POST /events/<type>)."""


@api_keys.command("create")
@click.option("--tenant", "tenant_id", required=True)
@json_option
def api_keys_create(tenant_id, as_json):
    from crmsync.configs import ConfigError, get_tenant
    from crmsync.credentials import create_api_key
    with _session() as s:
        try:
            get_tenant(s, tenant_id)
        except ConfigError as err:
            bad_input(f"--tenant: {err}")
        row, key = create_api_key(s, tenant_id)
        out = {"id": row.id, "tenant_id": tenant_id, "key": key}
    emit(out, as_json, f"{key}\n(shown once; crmsync keeps only its hash)")


# --- configs ---------------------------------------------------------------------------------
@main.group()
def configs():
    """Sync configs (the original design's crm_sync_configs)."""


def _csv(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@configs.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--platform", required=True)
@click.option("--credentials", "credentials_vault_id", required=True, metavar="VAULT_ID")
@click.option("--direction", default="bidirectional", show_default=True)
@click.option("--frequency", default="60", show_default=True, metavar="MINUTES")
@click.option("--strategy", default="timestamp_based", show_default=True)
@click.option("--source-priority", metavar="A,B,...")
@click.option("--entities", metavar="contacts,companies,...")
@click.option("--base-url", metavar="URL")
@click.option("--account-id", metavar="ID")
@click.option("--webhook-secret", metavar="VAULT_ID")
@click.option("--field-mapping", multiple=True, metavar="LOCAL=REMOTE")
@click.option("--value-mapping", multiple=True, metavar="ENTITY.FIELD=LOCAL:REMOTE",
              help="Translate a value at this CRM's boundary, e.g. deal.stage=qualified:qualifiedtobuy")
@click.option("--legacy-webhook-signatures", "legacy_signatures", is_flag=True,
              help="Also accept HubSpot v1/v2 webhook signatures (no timestamp: replayable). Only for an "
                   "app that cannot sign with v3.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--sweep-every", "sweep_every", default="24", show_default=True, metavar="HOURS",
              help="How often the deletion sweep lists every id (0 = only when asked).")
@json_option
def configs_create(tenant_id, platform, credentials_vault_id, direction, frequency, strategy, source_priority,
                   entities, base_url, account_id, webhook_secret, field_mapping, value_mapping, legacy_signatures,
                   disabled, sweep_every, as_json):
    """Create a sync config; the CRM is asked which account the credentials open (a given
    --account-id must be that one)."""
    from crmsync.configs import (
        AccountCheckFailed,
        ConfigError,
        config_as_dict,
        create_config,
        ensure_marker_fields,
        verify_account,
    )
    try:
        frequency_minutes = int(frequency)
    except ValueError:
        bad_input(f"sync_frequency_minutes: not a whole number: {frequency!r}")
    sweep_hours = _hours(sweep_every)
    mappings = {}
    for item in field_mapping:
        local, sep, remote = item.partition("=")
        if not sep or not local or not remote:
            bad_input(f"field_mappings: expected LOCAL=REMOTE, got {item!r}")
        mappings[local.strip()] = remote.strip()
    values: dict[str, dict[str, str]] = {}
    for item in value_mapping:
        key, sep, pair = item.partition("=")
        local, sep2, remote = pair.partition(":")
        if not sep or not sep2 or not key or not local or not remote:
            bad_input(f"value_mappings: expected ENTITY.FIELD=LOCAL:REMOTE, got {item!r}")
        values.setdefault(key.strip(), {})[local.strip()] = remote.strip()
    data = {"tenant_id": tenant_id, "platform": platform, "credentials_vault_id": credentials_vault_id,
            "sync_direction": direction, "sync_frequency_minutes": frequency_minutes,
            "conflict_strategy": strategy, "source_priority": _csv(source_priority),
            "entities": _csv(entities), "api_base_url": base_url, "account_id": account_id,
            "webhook_secret_vault_id": webhook_secret, "field_mappings": mappings, "value_mappings": values,
            "webhook_legacy_signatures": legacy_signatures, "enabled": not disabled,
            "sweep_every_hours": sweep_hours}
    data = {k: v for k, v in data.items() if v is not None}
    with _session() as s:
        try:
            config = create_config(s, data)
            verify_account(s, config)
        except AccountCheckFailed as err:
            failed(str(err))
        except ConfigError as err:
            bad_input(str(err))
        out = config_as_dict(config)
        # After the config is flushed: a CRM that refuses is a warning, not a failed create.
        out["marker_properties"], out["warnings"] = ensure_marker_fields(s, config)
    if not as_json:
        for warning in out["warnings"]:
            click.echo(f"warning: {warning}", err=True)
    emit(out, as_json, out["id"])


@configs.command("list")
@click.option("--tenant", "tenant_id", type=ID)
@json_option
def configs_list(tenant_id, as_json):
    from sqlalchemy import select

    from crmsync.configs import config_as_dict
    from crmsync.db.models import SyncConfig
    with _session() as s:
        q = select(SyncConfig).order_by(SyncConfig.created_at)
        if tenant_id:
            q = q.where(SyncConfig.tenant_id == tenant_id)
        rows = [config_as_dict(c) for c in s.scalars(q)]
    emit(rows, as_json, table(rows, ["id", "tenant_id", "platform", "account_id", "sync_direction",
                                     "conflict_strategy", "enabled", "next_sync_at"]))


def _hours(text):
    try:
        return int(text)
    except ValueError:
        bad_input(f"sweep_every_hours: not a whole number of hours: {text!r}")


@configs.command("update")
@click.argument("config_id")
@click.option("--sweep-every", "sweep_every", required=True, metavar="HOURS",
              help="How often the deletion sweep lists every id (0 = only when asked).")
@json_option
def configs_update(config_id, sweep_every, as_json):
    """Change a config's deletion sweep cadence."""
    from crmsync.configs import ConfigError, config_as_dict, set_sweep_every
    hours = _hours(sweep_every)
    with _session() as s:
        try:
            out = config_as_dict(set_sweep_every(s, config_id, hours))
        except ConfigError as err:
            bad_input(str(err))
    emit(out, as_json, table([out], ["id", "platform", "sweep_every_hours", "next_sweep_at"]))


def _config_command(name, action):
    @configs.command(name)
    @click.argument("config_id")
    @json_option
    def command(config_id, as_json):
        from crmsync.configs import ConfigError, config_as_dict
        with _session() as s:
            try:
                out = config_as_dict(action(s, config_id))
            except ConfigError as err:
                bad_input(str(err))
        emit(out, as_json, table([out], ["id", "platform", "account_id", "enabled", "next_sync_at"]))
    command.__doc__ = {"show": "Show one config.", "enable": "Enable a config.", "disable": "Disable a config."}[name]
    return command


def _show(s, cid):
    from crmsync.configs import get_config
    return get_config(s, cid)


def _enable(s, cid):
    from crmsync.configs import set_enabled
    return set_enabled(s, cid, True)


def _disable(s, cid):
    from crmsync.configs import set_enabled
    return set_enabled(s, cid, False)


_config_command("show", _show)
_config_command("enable", _enable)
_config_command("disable", _disable)


if __name__ == "__main__":
    main()
