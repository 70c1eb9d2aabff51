"""Thin tasks, one per entry of `crmsync.tasks.names.TASKS` (same names, same queues): each is one call
into the library through `CrmsyncTask.run_library`. Arguments are ids only, so Flower and the
broker never see a secret."""
from __future__ import annotations

from crmsync.tasks.names import (
    DISPATCH_DUE_SYNCS,
    PROCESS_EVENT,
    RUN_AUTOMATION,
    RUN_STEP,
    SPLIT_DELIVERIES,
    START_JOB,
    SWEEP_OUTBOX,
    route,
)
from workers import app
from workers.base import CrmsyncTask


def _task(name: str):
    route(name)  # only names of the table (their queues come from task_routes, built from it)
    return app.task(name=name, base=CrmsyncTask, bind=True)


@_task(START_JOB)
def start_job(self, job_id: str) -> str:
    return self.run_library(job_id)


@_task(RUN_STEP)
def run_step(self, step_id: str) -> str:
    return self.run_library(step_id)


@_task(SPLIT_DELIVERIES)
def split_deliveries(self, *delivery_ids: str) -> str:
    return self.run_library(*delivery_ids)


@_task(PROCESS_EVENT)
def process_event(self, event_id: str) -> str:
    return self.run_library(event_id)


@_task(RUN_AUTOMATION)
def run_automation(self, event_id: str) -> str:
    return self.run_library(event_id)


@_task(DISPATCH_DUE_SYNCS)
def dispatch_due_syncs(self) -> str:
    return self.run_library()


@_task(SWEEP_OUTBOX)
def sweep_outbox(self) -> str:
    return self.run_library()
