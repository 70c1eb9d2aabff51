"""gunicorn's hooks for the ingest app, in every deployment:
`gunicorn -c python:crmsync.ingest.gunicorn_conf "crmsync.ingest:create_app()"`.

With PROMETHEUS_MULTIPROC_DIR set, gunicorn's workers write their samples there and GET /metrics
adds them up (prometheus_client's multiprocess mode). The master empties the directory (and makes
it) before it forks any worker: samples left by an earlier run would otherwise be added to this
one's; each worker writes its series at 0 as it starts, so an idle one still shows them."""
from __future__ import annotations


def on_starting(server) -> None:
    from crmsync.metrics import clear_multiprocess_dir
    clear_multiprocess_dir()


def post_worker_init(worker) -> None:
    from crmsync.metrics import start_process
    start_process()


# The access log names the path without its query: a Salesforce Outbound Message's endpoint URL
# carries the config's webhook secret as `?token=` (Salesforce signs nothing), and gunicorn's
# default format logs the whole request line.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
