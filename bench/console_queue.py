"""How long does the console's conflict queue take on 100,000 pending conflicts?

Inserts --conflicts pending conflicts (default 100,000; five tenants, two configs each, mixed
entities and fields, spread over 30 days) into a fresh PostgreSQL database, then times the queue
page as the console serves it — GET /conflicts through the Flask app, signed in, so the time
includes the queries (page of 50 by key, counts per entity, oldest), template and session — for:
the first page, a deep page (the key of a row 99 % down the queue), a filtered first page
(one config + one field), and a tenant user's first page. Reported: the median and worst server
time of --repeat requests each (the page's own figure, printed on it, and the wall time of the call).

    .venv/bin/python bench/console_queue.py [--conflicts 100000] [--repeat 20]

Needs the local PostgreSQL (CRMSYNC_TEST_DATABASE_URL or postgres@127.0.0.1); makes and drops its
own database. Goal: under 200 ms server time, first page and deep page alike.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ENTITIES = {"contact": ["first_name", "phone", "email", "job_title"], "company": ["name", "phone", "domain"],
            "deal": ["amount", "stage", "close_date"]}


def seed(url: str, count: int) -> dict:
    from sqlalchemy import text

    from crmsync.configs import create_config, create_tenant
    from crmsync.credentials import Vault
    from crmsync.db import get_engine, session_scope
    from crmsync.db.models import ConflictRecord
    from crmsync.opsconsole.users import create_user
    from tests.fixtures.db import TEST_SECRET_KEY
    rng = random.Random(7)
    with session_scope(url) as s:
        tenants, configs = [], []
        for t in range(5):
            tenant = create_tenant(s, f"Tenant {t}")
            tenants.append(tenant.id)
            for c, platform in enumerate(("hubspot", "pipedrive")):    # one account per CRM in a tenant
                secret = Vault(TEST_SECRET_KEY).store(s, name=f"bench-{t}-{c}", platform=platform,
                                                      value={"token": "x", "rate_limits": "none"})
                configs.append(create_config(s, {"tenant_id": tenant.id, "platform": platform,
                                                 "credentials_vault_id": secret.id, "account_id": f"{t}{c}",
                                                 "conflict_strategy": "manual_review"}))
        create_user(s, email="ops@bench.example", password="bench password", tenant_id=None, operator=True)
        create_user(s, email="t0@bench.example", password="bench password", tenant_id=tenants[0], operator=False)
        ids = {"config": configs[0].id, "tenant": tenants[0]}
    now = datetime.now(UTC)
    table = ConflictRecord.__table__
    rows = []
    for n in range(count):
        config = configs[n % len(configs)]
        entity = rng.choice(list(ENTITIES))
        fields = rng.sample(ENTITIES[entity], rng.randint(1, 2))
        rows.append({"id": str(uuid.uuid4()), "tenant_id": config.tenant_id, "config_id": config.id,
                     "platform": config.platform, "entity_type": entity, "entity_id": str(uuid.uuid4()),
                     "external_id": str(n), "local_snapshot": dict.fromkeys(fields, f"ours {n}"),
                     "remote_snapshot": dict.fromkeys(fields, f"theirs {n}"),
                     "base_snapshot": dict.fromkeys(fields, f"base {n}"), "conflicting_fields": fields,
                     "status": "pending", "created_at": now - timedelta(seconds=rng.uniform(0, 30 * 86400))})
    engine = get_engine(url)
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(table.insert(), rows[start:start + 5000])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE crm_conflict_records"))
    ordered = sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    deep = ordered[int(len(ordered) * 0.99)]
    ids["deep_key"] = f"{deep['created_at'].isoformat()}~{deep['id']}"
    ids["field"] = "phone"
    return ids


def sign_in(client, email: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/login", data={"email": email, "password": "bench password", "csrf_token": token})
    assert answer.status_code == 302, answer.status_code


def timed(client, path: str, params: dict, repeat: int) -> tuple[list[float], list[float], int]:
    page_ms, wall_ms, rows = [], [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path, query_string=params)
        wall_ms.append((time.perf_counter() - started) * 1000)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200, (answer.status_code, html[:300])
        page_ms.append(float(re.search(r"(\d+) ms</div>", html).group(1)))
        rows = html.count('name="ids"')
    return page_ms, wall_ms, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conflicts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    from tests.fixtures.db import TEST_SECRET_KEY, create_database, drop_database
    url = create_database("crmsync_bench")
    try:
        from crmsync.db.migrate import upgrade
        upgrade(url)
        started = time.perf_counter()
        ids = seed(url, args.conflicts)
        print(f"inserted {args.conflicts:,} pending conflicts in {time.perf_counter() - started:.1f} s")
        os.environ.update(CRMSYNC_DATABASE_URL=url, CRMSYNC_SECRET_KEY=TEST_SECRET_KEY)
        os.environ.pop("CRMSYNC_BROKER_URL", None)
        from crmsync.opsconsole import create_app
        from crmsync.settings import get_settings
        get_settings.cache_clear()
        app = create_app()
        cases = [("operator, first page", "ops@bench.example", {}),
                 ("operator, deep page (99 % down)", "ops@bench.example", {"after": ids["deep_key"]}),
                 ("operator, config + field filter", "ops@bench.example", {"config": ids["config"], "field": "phone"}),
                 ("tenant user, first page", "t0@bench.example", {}),
                 ("tenant user, deep page", "t0@bench.example", {"after": ids["deep_key"]})]
        print(f"{'case':<36} {'rows':>5} {'page ms (median / worst)':>26} {'request ms (median / worst)':>29}")
        for label, email, params in cases:
            with app.test_client() as client:
                sign_in(client, email)
                timed(client, "/conflicts", params, 2)         # warm the pool and the template
                page_ms, wall_ms, rows = timed(client, "/conflicts", params, args.repeat)
            print(f"{label:<36} {rows:>5} {statistics.median(page_ms):>14.0f} / {max(page_ms):<9.0f} "
                  f"{statistics.median(wall_ms):>16.1f} / {max(wall_ms):<9.1f}")
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
