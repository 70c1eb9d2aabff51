"""The ingest app's gunicorn settings, read the way `gunicorn --config python:...` reads them."""
import datetime
import importlib
import logging

from gunicorn.config import Config
from gunicorn.glogging import Logger


def test_the_access_log_leaves_out_the_query_that_carries_a_webhook_token():
    cfg = Config()
    for name, value in vars(importlib.import_module("crmsync.ingest.gunicorn_conf")).items():
        if name in cfg.settings:
            cfg.set(name, value)
    cfg.set("accesslog", "-")
    logger = Logger(cfg)
    path = "/webhooks/salesforce/00000000-0000-0000-0000-000000000001"
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": f"{path}?token=the-webhook-secret", "PATH_INFO": path,
               "QUERY_STRING": "token=the-webhook-secret", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1"}

    class Response:
        status, sent, headers = "200 OK", 10, []
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.access_log.addHandler(handler)
    try:
        logger.access(Response(), [], environ, datetime.timedelta(milliseconds=3))
    finally:
        logger.access_log.removeHandler(handler)
    line = "\n".join(lines)
    assert "the-webhook-secret" not in line
    assert f"POST {path} HTTP/1.1" in line
