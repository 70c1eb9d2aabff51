"""Stored webhook events applied by workers: the split of a stored delivery into its events and the
processing of each event through the sync engine's merge path (tasks `crmsync.events.split` and
`crmsync.events.process`). The web app (`crmsync.ingest`) only stores and answers; this package runs
in the Celery workers (or inline, with the embedded default)."""
