"""docker-compose.yml against the Compose specification, the beat schedule, and the local stack
script's shape (there is no Docker engine here; `make stack` runs the same processes)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import yaml

import beat_schedule
from crmsync.settings import load_settings
from crmsync.tasks.names import QUEUES, TASKS

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "specs" / "compose" / "compose-spec.json"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_spec():
    schema = json.loads(SPEC.read_text())
    jsonschema.Draft7Validator(schema).validate(compose())


def test_compose_has_every_process_and_a_scalable_worker():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "ingest", "worker", "beat", "flower", "metrics",
            "sandbox-hubspot", "sandbox-pipedrive"} <= set(services)
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N must work
    command = worker["command"]
    assert command[:4] == ["celery", "-A", "workers", "worker"]
    assert command[command.index("-Q") + 1].split(",") == list(QUEUES)
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "crmsync.ingest:create_app()" in services["ingest"]["command"]
    assert services["migrate"]["command"] == ["crmsync", "db", "upgrade"]
    for name in ("sandbox-hubspot", "sandbox-pipedrive"):
        assert services[name]["profiles"] == ["demo"]
    for name in ("ingest", "worker", "beat", "flower", "metrics"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "noeviction" in services["redis"]["command"]


def test_compose_serves_metrics_from_ingest_every_worker_and_one_collector():
    services = compose()["services"]
    worker, ingest, collector = services["worker"], services["ingest"], services["metrics"]
    port = load_settings({"CRMSYNC_WORKER_METRICS_PORT": worker["environment"]["CRMSYNC_WORKER_METRICS_PORT"]}
                         ).worker_metrics_port
    assert port and worker["expose"] == [str(port)]          # on the network, no host port: --scale works
    for service in (worker, ingest):
        directory = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert [t.split(":")[0] for t in service["tmpfs"]] == [directory]   # empty at every container start
    assert "python:crmsync.ingest.gunicorn_conf" in ingest["command"]
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["beat"]["environment"]
    assert collector["command"][:3] == ["crmsync", "metrics", "serve"] and collector["deploy"]["replicas"] == 1


def test_beat_schedule_ticks_the_dispatcher_and_the_sweeper():
    entries = beat_schedule.schedule(load_settings({}))
    assert {e["task"] for e in entries.values()} == {"crmsync.schedule.dispatch_due_syncs",
                                                     "crmsync.schedule.sweep_outbox"}
    by_task = {e["task"]: e for e in entries.values()}
    dispatch = by_task["crmsync.schedule.dispatch_due_syncs"]
    sweep = by_task["crmsync.schedule.sweep_outbox"]
    assert dispatch["schedule"] == 5.0 and sweep["schedule"] == 30.0
    for e in entries.values():
        assert e["task"] in TASKS
        assert e["options"]["queue"] == TASKS[e["task"]].queue
        assert e["options"]["expires"] == e["schedule"]  # no pile-up while workers are down


def test_procfile_and_stack_script_run_the_same_processes():
    procfile = (ROOT / "deploy" / "Procfile").read_text()
    for process in ("ingest:", "worker:", "beat:", "flower:", "release: crmsync db upgrade"):
        assert process in procfile
    stack = ROOT / "deploy" / "stack.sh"
    subprocess.run(["bash", "-n", str(stack)], check=True)
    text = stack.read_text()
    assert text.count("celery\" -A workers worker") == 2  # two workers
    for needle in ("celery\" -A workers beat", "celery\" -A workers flower", "sandbox serve --platform hubspot",
                   "sandbox serve --platform pipedrive", "crmsync.ingest:create_app()", "trap stop INT TERM EXIT"):
        assert needle in text
    assert "crmsync\" metrics serve" in text and "python:crmsync.ingest.gunicorn_conf" in text
    assert (ROOT / "deploy" / "Dockerfile").read_text().startswith("#")
    assert (ROOT / "deploy" / "SCALING.md").exists()


def _metrics_env(command: str) -> tuple[str | None, str | None]:
    port = re.search(r"CRMSYNC_WORKER_METRICS_PORT=(\S+)", command)
    directory = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", command)
    return (port and port.group(1)), (directory and directory.group(1))


def test_procfile_and_stack_give_every_worker_its_own_metrics_port_and_directory():
    lines = (ROOT / "deploy" / "Procfile").read_text().splitlines()
    processes = dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))
    assert processes["metrics"].startswith("crmsync metrics serve")
    workers = {name: _metrics_env(cmd) for name, cmd in processes.items() if name.startswith("worker")}
    assert len(workers) == 4 and all(port and directory for port, directory in workers.values())
    assert len({port for port, _ in workers.values()}) == len({d for _, d in workers.values()}) == len(workers)
    ingest_dir = _metrics_env(processes["ingest"])[1]
    assert ingest_dir and "gunicorn_conf" in processes["ingest"] and ingest_dir not in {d for _, d in workers.values()}
    stack = [line for line in (ROOT / "deploy" / "stack.sh").read_text().splitlines()
             if "PROMETHEUS_MULTIPROC_DIR=" in line]
    directories = [_metrics_env(line)[1] for line in stack]
    assert len(directories) == len(set(directories)) == 3    # ingest and the two workers
    assert sum("CRMSYNC_WORKER_METRICS_PORT=" in line for line in stack) == 2
