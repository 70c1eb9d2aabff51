"""`crmsync console serve` and `crmsync console users create` (contract: CLI.md)."""
from __future__ import annotations

import sys

import click

from crmsync.console import bad_input, emit, json_option, secret_input


@click.group()
def console():
    """The operations console: conflicts field by field, the audit trail, sync health."""


@console.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8200, show_default=True)
def console_serve(host, port):
    """Serve the console for development (production: gunicorn "crmsync.opsconsole:create_app()")."""
    from crmsync.opsconsole import create_app
    app = create_app()
    click.echo(f"operations console on http://{host}:{port}/ (sign in with a user from "
               "`crmsync console users create`)", err=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@console.group("users")
def users():
    """Who may sign in to the console."""


@users.command("create")
@click.option("--tenant", "tenant_id", help="The tenant whose rows this user sees (and only those).")
@click.option("--operator", is_flag=True, help="An operator: sees every tenant.")
@click.option("--email", required=True)
@click.option("--from-env", "from_env", metavar="VAR", help="Read the password from this environment variable.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input (the default; asked for when it is a terminal).")
@json_option
def users_create(tenant_id, operator, email, from_env, from_stdin, as_json):
    """Create a console user; the password is read from stdin or an environment variable, never argv."""
    from crmsync.configs import ConfigError, get_tenant
    from crmsync.db import session_scope
    from crmsync.opsconsole.users import ConsoleUserError, create_user
    if bool(tenant_id) == operator:
        bad_input("give exactly one of --tenant ID or --operator")
    if from_env and from_stdin:
        bad_input("give at most one of --from-env VAR or --stdin")
    if not from_env and sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = secret_input(from_env).rstrip("\r\n")
    with session_scope() as s:
        try:
            if tenant_id:
                tenant_id = get_tenant(s, tenant_id).id
            user = create_user(s, email=email, password=password, tenant_id=tenant_id, operator=operator)
        except ConfigError as err:
            bad_input(f"--tenant: {err}")
        except ConsoleUserError as err:
            bad_input(str(err))
        out = {"id": user.id, "email": user.email, "tenant_id": user.tenant_id, "operator": user.is_operator}
    emit(out, as_json, f"console user {out['email']} created ({'operator' if operator else 'tenant ' + tenant_id})")
