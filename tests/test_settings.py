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
