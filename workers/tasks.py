"""Thin tasks, one per entry of `crmsync.queue.TASKS` (same names, same queues): each is one call
into the library through `CrmsyncTask.run_library`. Arguments are ids only, so Flower and the
broker never see a secret."""
from __future__ import annotations

from crmsync.queue import route
from workers import app
from workers.base import CrmsyncTask


def _task(name: str):
    route(name)  # only names of the table (their queues come from task_routes, built from it)
    return app.task(name=name, base=CrmsyncTask, bind=True)


@_task("crmsync.sync.start_job")
def start_job(self, job_id: str) -> str:
    return self.run_library(job_id)


@_task("crmsync.sync.run_step")
def run_step(self, step_id: str) -> str:
    return self.run_library(step_id)


@_task("crmsync.events.split")
def split_deliveries(self, *delivery_ids: str) -> str:
    return self.run_library(*delivery_ids)


@_task("crmsync.events.process")
def process_event(self, event_id: str) -> str:
    return self.run_library(event_id)


@_task("crmsync.automation.run")
def run_automation(self, event_id: str) -> str:
    return self.run_library(event_id)


@_task("crmsync.schedule.dispatch_due_syncs")
def dispatch_due_syncs(self) -> str:
    return self.run_library()


@_task("crmsync.schedule.sweep_outbox")
def sweep_outbox(self) -> str:
    return self.run_library()
