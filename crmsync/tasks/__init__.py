"""Tasks: what runs on the workers (or inline), by name.

    names.py      the task table: name constants, queues, library function and failure hook of each
    enqueue.py    `enqueue`, `enqueue_after_commit`: to the broker, or inline without one
    producer.py   the producer-only Celery app (send by name, task-sent events, ping)
    retry.py      retry or fail after an error, read off the error tree (`crmsync.errors`)
    execution.py  running one task: session scope, log context, failure hook
    inline.py     the in-process FIFO runner used when no broker is configured
    errors.py     errors of enqueueing and running

crmsync never imports `workers/`: the Celery worker app there registers one thin task per entry
of `names.TASKS` and runs it through `execution.execute` and `retry.classify`, as the inline
runner does.
"""
from crmsync.tasks.enqueue import enqueue, enqueue_after_commit

__all__ = ["enqueue", "enqueue_after_commit"]
