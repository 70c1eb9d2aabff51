"""``crmsync sandbox serve``: run a sandbox CRM on 127.0.0.1 until Ctrl-C.

Registered into the main CLI as ``crmsync.sandbox.commands:sandbox``."""
from __future__ import annotations

import sys

import click

from .server import SandboxServer, SandboxServerError


def _pipedrive_app(opts: dict, faults: dict):
    try:
        from .pipedrive import create_app
    except ImportError as exc:
        raise click.ClickException(f"the Pipedrive sandbox is not available: {exc}") from None
    mapping = {"token": opts["token"], "seed": opts["seed"], "persons": opts["persons"] or opts["contacts"],
               "organizations": opts["organizations"] or opts["companies"], "deals": opts["deals"],
               "activities": opts["activities"], "shared_update_time": opts["same_modified"],
               "rate_limit": opts["rate_limit"], "webhook_url": opts["webhook_url"],
               "webhook_auth": opts["webhook_secret"], "faults": faults}
    if opts["daily_limit"] is not None:
        mapping["daily_budget"] = opts["daily_limit"]
    return create_app(**{k: v for k, v in mapping.items() if v is not None})


def _hubspot_app(opts: dict, faults: dict):
    from .faults import FaultConfig
    from .hubspot import create_app

    mapping = {k: opts[k] for k in ("token", "seed", "contacts", "companies", "deals", "tasks", "notes", "calls",
                                    "meetings", "emails", "same_modified", "rate_limit", "daily_limit",
                                    "search_rate_limit", "index_lag_ms", "webhook_url", "webhook_secret",
                                    "serialise_per_request")}
    mapping["faults"] = FaultConfig(**faults)
    return create_app(**{k: v for k, v in mapping.items() if v is not None})


def _salesforce_app(opts: dict, faults: dict):
    from .salesforce import create_app

    # The shared flags in Salesforce's terms: companies are Accounts, deals Opportunities, meetings
    # Events, notes classic Notes; the daily limit is the org's API request allocation; webhooks are Outbound Messages.
    mapping = {"token": opts["token"], "seed": opts["seed"], "contacts": opts["contacts"],
               "accounts": opts["companies"], "opportunities": opts["deals"], "tasks": opts["tasks"],
               "events": opts["meetings"] or opts["activities"], "notes": opts["notes"], "same_modstamp": opts["same_modified"],
               "api_limit": opts["daily_limit"], "outbound_url": opts["webhook_url"], "faults": faults}
    return create_app(**{k: v for k, v in mapping.items() if v is not None})


APPS = {"hubspot": _hubspot_app, "pipedrive": _pipedrive_app, "salesforce": _salesforce_app}


@click.group("sandbox")
def sandbox() -> None:
    """Local HubSpot-, Pipedrive- and Salesforce-compatible servers for tests, demos and benchmarks."""


@sandbox.command("serve")
@click.option("--platform", type=click.Choice(["hubspot", "pipedrive", "salesforce"]), required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0 = any free port")
@click.option("--token", default=None,
              help="static API token (HubSpot private-app token / Pipedrive API token / Salesforce session)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--contacts", type=click.IntRange(0), default=100, show_default=True)
@click.option("--companies", type=click.IntRange(0), default=20, show_default=True)
@click.option("--deals", type=click.IntRange(0), default=30, show_default=True)
@click.option("--tasks", type=click.IntRange(0), default=20, show_default=True)
@click.option("--notes", type=click.IntRange(0), default=20, show_default=True)
@click.option("--calls", type=click.IntRange(0), default=0)
@click.option("--meetings", type=click.IntRange(0), default=0)
@click.option("--emails", type=click.IntRange(0), default=0)
@click.option("--persons", type=click.IntRange(0), default=None, help="Pipedrive; defaults to --contacts")
@click.option("--organizations", type=click.IntRange(0), default=None, help="Pipedrive; defaults to --companies")
@click.option("--activities", type=click.IntRange(0), default=None, help="Pipedrive activities")
@click.option("--same-modified", type=click.IntRange(0), default=0,
              help="this many records share one last-modified timestamp")
@click.option("--rate-limit", type=click.IntRange(0), default=None,
              help="requests per the CRM's own window (HubSpot 10 s, Pipedrive 2 s); 0 = none")
@click.option("--daily-limit", type=click.IntRange(0), default=None,
              help="daily quota (Salesforce: API requests per rolling 24 h); 0 = none")
@click.option("--search-rate-limit", type=click.IntRange(0), default=None, help="HubSpot search requests/s")
@click.option("--index-lag-ms", type=click.IntRange(0), default=None, help="HubSpot search index lag")
@click.option("--serialise-per-request", is_flag=True, default=None,
              help="HubSpot: serialise every answer when asked, as a real server does (no response caches)")
@click.option("--webhook-url", default=None)
@click.option("--webhook-secret", default=None,
              help="HubSpot: the app secret used to sign; Pipedrive: user:password for Basic auth; "
                   "Salesforce: unused (Outbound Messages carry the org id, not a signature)")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, help="share of 500/502/503 answers")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="added to every request")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, help="share of dropped connections")
@click.option("--rate-limited-rate", type=click.FloatRange(0, 1), default=0.0, help="share of injected 429s")
def serve(platform: str, host: str, port: int, error_rate: float, latency_ms: float, drop_rate: float,
          rate_limited_rate: float, **opts) -> None:
    """Serve a sandbox CRM until Ctrl-C; prints the base URL and token on stderr."""
    faults = {"error_rate": error_rate, "latency_ms": latency_ms, "drop_rate": drop_rate,
              "rate_limit_rate": rate_limited_rate, "seed": opts["seed"]}
    app = APPS[platform](opts, faults)
    server = SandboxServer(app, host=host, port=port)
    try:
        base_url = server.start()
    except SandboxServerError as exc:
        raise click.ClickException(str(exc)) from None
    token = getattr(getattr(app, "options", None), "token", None)
    try:  # Ctrl-C may arrive while we are still printing: that is a clean stop too
        click.echo(f"admin: {base_url}/_sandbox/  (Ctrl-C to stop)", err=True)
        click.echo(f"{platform} sandbox at {base_url}", err=True)
        click.echo(f"token: {token}", err=True)
        org_id = getattr(getattr(app, "options", None), "org_id", None)
        if org_id:
            click.echo(f"organization id: {org_id}  (REST API at {base_url}/services/data/v62.0/)", err=True)
        sys.stderr.flush()
        server.serve_until_interrupted()
    except KeyboardInterrupt:
        server.stop()
