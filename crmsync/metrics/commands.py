"""`crmsync metrics serve`: the state collector's /metrics (one replica per installation)."""
from __future__ import annotations

import contextlib
import signal
import threading

import click

from crmsync.console import emit, failed, json_option


@click.group()
def metrics():
    """Prometheus metrics."""


@metrics.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104  Prometheus scrapes it from another host
@click.option("--port", type=click.IntRange(1, 65535), default=9540, show_default=True)
@json_option
def metrics_serve(host, port, as_json):
    """Serve GET /metrics: sync lag, checkpoint age and failing runs per config, conflicts, webhook
    deliveries and events waiting, queue lengths and rate budgets, read at each scrape. Runs until
    SIGTERM or Ctrl-C; with --json prints {"url": ...} once listening."""
    from prometheus_client import CollectorRegistry, start_http_server

    from crmsync.metrics.state import StateCollector
    from crmsync.settings import get_settings
    registry = CollectorRegistry()
    registry.register(StateCollector(get_settings().database_url))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        failed(f"cannot listen on {host}:{port}: {err.strerror or err}")
    url = f"http://{host}:{server.server_port}/metrics"
    emit({"url": url}, as_json, f"metrics on {url} (Ctrl-C to stop)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()
    thread.join(5)
