"""Shared automation fixtures."""
import pytest

from crmsync.automation.rules import apply_rules
from crmsync.db import session_scope
from tests.automation.seed import seed_rules
from tests.fixtures.factories import make_tenant


@pytest.fixture
def tenant_id(crmsync_env, db_url):
    """A tenant with the seed guide's two rules (modules that need a bare tenant define their own)."""
    with session_scope(db_url) as s:
        tenant = make_tenant(s)
        apply_rules(s, tenant.id, seed_rules())
        return tenant.id
