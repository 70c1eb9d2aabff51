"""A tenant with a HubSpot config pointed at the sandbox, on the real PostgreSQL test database."""
from __future__ import annotations

from datetime import UTC
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from crmsync.configs import create_config
from crmsync.db import session_scope
from crmsync.db.models import ENTITY_MODELS, SyncLink
from crmsync.sync.inline import run_job_inline
from tests.fixtures.factories import make_secret, make_tenant


class World(SimpleNamespace):
    def sync(self, config_id=None, **kw):
        return run_job_inline(config_id or self.config_id, database_url=self.db_url, **kw)

    def rows(self, entity="contact", *, include_deleted=False):
        table = ENTITY_MODELS[entity].__table__
        with session_scope(self.db_url) as s:
            q = select(table).where(table.c.tenant_id == self.tenant_id)
            if not include_deleted:
                q = q.where(table.c.deleted_at.is_(None))
            return [dict(r._mapping) for r in s.execute(q)]

    def links(self, entity="contact", platform="hubspot"):
        with session_scope(self.db_url) as s:
            return {l.external_id: l.local_id for l in s.scalars(select(SyncLink).where(
                SyncLink.tenant_id == self.tenant_id, SyncLink.entity_type == entity, SyncLink.platform == platform))}

    def local_edit(self, entity, local_id, **values):
        from datetime import datetime

        from sqlalchemy import update
        table = ENTITY_MODELS[entity].__table__
        with session_scope(self.db_url) as s:
            s.execute(update(table).where(table.c.id == local_id, table.c.tenant_id == self.tenant_id)
                      .values(**values, updated_at=datetime.now(UTC)))


def make_world(db_url, hubspot_sandbox, account_id=None, **config):
    hubspot_sandbox.configure(rate_limit=0, search_rate_limit=0, daily_limit=0)
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        # The sandbox runs without limits; our own budget is off for it too ("rate_limits": "none").
        secret = make_secret(s, {"token": hubspot_sandbox.token, "rate_limits": "none"})
        cfg = create_config(s, {"tenant_id": tenant.id, "platform": "hubspot", "credentials_vault_id": secret.id,
                                "api_base_url": hubspot_sandbox.base_url,
                                "account_id": account_id or str(hubspot_sandbox.app.options.portal_id), **config})
        return World(db_url=db_url, tenant_id=tenant.id, config_id=cfg.id, hs=hubspot_sandbox)


@pytest.fixture
def units_of_100(monkeypatch):
    """Units of 100 records (CRMSYNC_PAGE_SIZE), so a few hundred make several."""
    from crmsync.settings import get_settings
    monkeypatch.setenv("CRMSYNC_PAGE_SIZE", "100")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def world(crmsync_env, db_url, hubspot_sandbox):
    return make_world(db_url, hubspot_sandbox)


@pytest.fixture
def make(crmsync_env, db_url, hubspot_sandbox):
    return lambda **config: make_world(db_url, hubspot_sandbox, **config)


@pytest.fixture
def pipedrive_crm():
    """A Pipedrive sandbox on its own port, empty, no rate limits."""
    from crmsync.sandbox.pipedrive import create_app
    from crmsync.sandbox.server import SandboxServer
    app = create_app(persons=0, organizations=0, deals=0, activities=0, rate_limit=0, daily_budget=0)
    server = SandboxServer(app)
    base_url = server.start()
    yield SimpleNamespace(app=app, state=app.state, base_url=base_url, token=app.options.token)
    server.stop()


def add_pipedrive_config(world, pipedrive_crm, **config):
    with session_scope(world.db_url) as s:
        secret = make_secret(s, {"api_token": pipedrive_crm.token}, platform="pipedrive")
        cfg = create_config(s, {"tenant_id": world.tenant_id, "platform": "pipedrive",
                                "credentials_vault_id": secret.id, "api_base_url": pipedrive_crm.base_url,
                                "account_id": str(pipedrive_crm.app.options.company_id), **config})
        return cfg.id
