import pytest

from crmsync.settings import SettingsError, load_settings


def test_embedded_default_is_sqlite_inline_without_redis(tmp_path):
    s = load_settings({"CRMSYNC_HOME": str(tmp_path)})
    assert s.database_url.startswith("sqlite:///") and str(tmp_path) in s.database_url
    assert s.inline and s.redis_url is None


def test_postgres_url_normalised_to_psycopg():
    s = load_settings({"CRMSYNC_DATABASE_URL": "postgresql://u@h/db", "CRMSYNC_BROKER_URL": "redis://x/0"})
    assert s.database_url == "postgresql+psycopg://u@h/db" and not s.inline


@pytest.mark.parametrize("var,value", [
    ("CRMSYNC_DATABASE_URL", "mysql://x/y"),
    ("CRMSYNC_BROKER_URL", "http://nope"),
    ("CRMSYNC_REDIS_URL", "localhost:6379"),
    ("CRMSYNC_PAGE_SIZE", "ten"),
    ("CRMSYNC_PAGE_SIZE", "0"),
    ("CRMSYNC_MAX_DELETE_SHARE", "2"),
    ("CRMSYNC_LOG_LEVEL", "LOUD"),
    ("CRMSYNC_INGEST_PUBLIC_URL", "ftp://x"),
    ("CRMSYNC_INGEST_COALESCE_SECONDS", "999"),
    ("CRMSYNC_INGEST_PROXY_HOPS", "-1"),
    ("CRMSYNC_DISPATCH_EVERY_SECONDS", "0"),
])
def test_bad_value_names_the_variable(var, value):
    with pytest.raises(SettingsError) as err:
        load_settings({var: value})
    assert err.value.variable == var and var in str(err.value)


def test_redacted_hides_secrets():
    s = load_settings({"CRMSYNC_SECRET_KEY": "k" * 20, "CRMSYNC_DATABASE_URL": "postgresql://u:pw@h/db"})
    red = s.redacted()
    assert red["secret_key"] == "***" and "pw" not in red["database_url"]


NUMERIC = ["CRMSYNC_PAGE_SIZE", "CRMSYNC_MAX_DELETE_SHARE", "CRMSYNC_SEARCH_LOOKBACK_SECONDS",
           "CRMSYNC_OUTBOX_AFTER_SECONDS", "CRMSYNC_AUTOMATION_MAX_DEPTH", "CRMSYNC_WEBHOOK_MAX_BODY_BYTES",
           "CRMSYNC_WEBHOOK_TOLERANCE_SECONDS", "CRMSYNC_TASK_TIME_LIMIT", "CRMSYNC_VISIBILITY_TIMEOUT",
           "CRMSYNC_TASK_MAX_DEATHS", "CRMSYNC_DISPATCH_EVERY_SECONDS", "CRMSYNC_SWEEP_EVERY_SECONDS", "CRMSYNC_INGEST_PROXY_HOPS",
           "CRMSYNC_INGEST_COALESCE_SECONDS"]


@pytest.mark.parametrize("var", NUMERIC)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1", "99999999999999999999"])
def test_numbers_are_finite_and_in_range(var, value):
    # nan compares false with every bound (a NaN share disabled the mass-delete guard) and inf
    # made the outbox sweeper's timedelta raise on every tick.
    with pytest.raises(SettingsError) as err:
        load_settings({var: value})
    assert err.value.variable == var


@pytest.mark.parametrize("var,value", [("CRMSYNC_WEBHOOK_TOLERANCE_SECONDS", "301"),
                                       ("CRMSYNC_OUTBOX_AFTER_SECONDS", "0"),
                                       ("CRMSYNC_AUTOMATION_MAX_DEPTH", "1000")])
def test_numbers_beyond_their_sense_are_refused(var, value):
    with pytest.raises(SettingsError):
        load_settings({var: value})


def test_numbers_in_range_are_read():
    s = load_settings({"CRMSYNC_MAX_DELETE_SHARE": "0.25", "CRMSYNC_SEARCH_LOOKBACK_SECONDS": "42",
                       "CRMSYNC_WEBHOOK_TOLERANCE_SECONDS": "60", "CRMSYNC_LOG_LEVEL": "debug"})
    assert (s.max_delete_share, s.search_lookback_seconds, s.webhook_tolerance_seconds) == (0.25, 42, 60)
    assert s.log_level == "DEBUG"


def test_log_level_reaches_the_cli_and_the_ingest_app(monkeypatch, tmp_path):
    import logging

    from click.testing import CliRunner

    from crmsync import settings
    from crmsync.cli import main
    from crmsync.ingest import create_app
    crmsync_logger = logging.getLogger("crmsync")
    before = crmsync_logger.level
    try:
        monkeypatch.setenv("CRMSYNC_HOME", str(tmp_path))
        monkeypatch.setenv("CRMSYNC_LOG_LEVEL", "ERROR")
        settings.get_settings.cache_clear()
        assert CliRunner().invoke(main, ["tenants", "--help"]).exit_code == 0
        assert crmsync_logger.level == logging.ERROR
        create_app(load_settings({"CRMSYNC_HOME": str(tmp_path), "CRMSYNC_LOG_LEVEL": "DEBUG"}))
        assert crmsync_logger.level == logging.DEBUG
    finally:
        crmsync_logger.setLevel(before)


def test_search_lookback_sets_where_an_incremental_hubspot_listing_starts(monkeypatch):
    from datetime import UTC, datetime

    from crmsync import settings
    from crmsync.platforms.hubspot.adapter import HubSpotAdapter
    since = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    starts = {}
    for seconds in ("0", "42"):
        monkeypatch.setenv("CRMSYNC_SEARCH_LOOKBACK_SECONDS", seconds)
        settings.get_settings.cache_clear()
        adapter = HubSpotAdapter(credentials={"token": "t"}, base_url="http://127.0.0.1:9")
        starts[seconds] = adapter.start_cursor("contact", since)["since"]
    assert starts["0"] == int(since.timestamp() * 1000)
    assert starts["0"] - starts["42"] == 42_000
