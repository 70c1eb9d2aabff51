"""deploy/k8s offline: `kubectl kustomize` renders the base and the example overlay; the result
passes `kubernetes-validate --strict` (Kubernetes' own schemas) and KEDA's objects pass KEDA's CRD
schemas (tests/specs/keda, `check-jsonschema`); and the manifests keep the promises of the README:
graceful stops longer than any task, one beat, a scaler per queue, secrets only referenced."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crmsync.tasks.names import QUEUES
from tests.deploy import tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMAS = ROOT / "tests" / "specs" / "keda"
BIN = Path(sys.executable).parent
SECRET_VARIABLES = ("CRMSYNC_DATABASE_URL", "CRMSYNC_BROKER_URL", "CRMSYNC_REDIS_URL", "CRMSYNC_SECRET_KEY",
                    "CRMSYNC_CRON_SECRET", "FLOWER_BASIC_AUTH")


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def rendered(request) -> list[dict]:
    result = run(tool("kubectl"), "kustomize", K8S / request.param)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs, kind) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs):
    for d in docs:
        spec = d["spec"].get("template", {}).get("spec") if d["kind"] in ("Deployment", "Job") else None
        for c in (spec or {}).get("containers", []):
            yield d, c


def test_kubernetes_objects_pass_strict_validation(rendered, tmp_path):
    core = [d for d in rendered if not d["apiVersion"].startswith("keda.sh/")]
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = run(BIN / "kubernetes-validate", "--strict", "--quiet", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_refuses_an_unknown_field(rendered, tmp_path):
    """The validator is really strict (else the test above could never fail)."""
    deployment = json.loads(json.dumps(next(d for d in rendered if d["kind"] == "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert run(BIN / "kubernetes-validate", "--strict", "--quiet", path).returncode != 0


@pytest.mark.parametrize("kind, schema", [("ScaledObject", "scaledobject_v1alpha1.json"),
                                          ("TriggerAuthentication", "triggerauthentication_v1alpha1.json")])
def test_keda_objects_pass_the_keda_crd_schemas(rendered, tmp_path, kind, schema):
    objects = by_kind(rendered, kind)
    assert objects
    files = []
    for name, obj in objects.items():
        files.append(tmp_path / f"{kind}-{name}.json")
        files[-1].write_text(json.dumps(obj))
    result = run(BIN / "check-jsonschema", "--schemafile", KEDA_SCHEMAS / schema, *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_queue_has_a_worker_that_stops_gracefully_and_a_scaler_on_its_length(rendered):
    from crmsync.settings import load_settings
    config = by_kind(rendered, "ConfigMap")["crmsync-config"]["data"]
    longest_task = load_settings({"CRMSYNC_TASK_TIME_LIMIT": config["CRMSYNC_TASK_TIME_LIMIT"]}).task_time_limit
    deployments, scalers = by_kind(rendered, "Deployment"), by_kind(rendered, "ScaledObject")
    for queue in QUEUES:
        worker = deployments[f"crmsync-worker-{queue}"]
        pod = worker["spec"]["template"]["spec"]
        command = pod["containers"][0]["command"]
        assert command[:4] == ["celery", "-A", "workers", "worker"] and command[command.index("-Q") + 1] == queue
        assert pod["terminationGracePeriodSeconds"] >= longest_task + 10
        env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
        assert env["CRMSYNC_WORKER_METRICS_PORT"] and env["PROMETHEUS_MULTIPROC_DIR"]
        scaler = scalers[f"crmsync-worker-{queue}"]
        assert scaler["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
        trigger = scaler["spec"]["triggers"][0]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue


def test_one_beat_with_a_disruption_budget_a_migration_job_and_the_other_processes(rendered):
    deployments = by_kind(rendered, "Deployment")
    beat = deployments["crmsync-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    budget = by_kind(rendered, "PodDisruptionBudget")["crmsync-beat"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= \
        beat["spec"]["template"]["metadata"]["labels"].items()
    job = by_kind(rendered, "Job")["crmsync-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["crmsync", "db", "upgrade"]
    assert {"crmsync-ingest", "crmsync-flower", "crmsync-metrics"} <= set(deployments)
    assert {"crmsync-ingest", "crmsync-flower", "crmsync-metrics"} <= set(by_kind(rendered, "Service"))


def test_secrets_are_referenced_never_inlined(rendered):
    assert not by_kind(rendered, "Secret")
    config = by_kind(rendered, "ConfigMap")["crmsync-config"]["data"]
    assert not set(config) & set(SECRET_VARIABLES)
    for doc, container in containers(rendered):
        refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
        assert refs == ["crmsync-secrets"], doc["metadata"]["name"]
        assert not {e["name"] for e in container.get("env", [])} & set(SECRET_VARIABLES)
