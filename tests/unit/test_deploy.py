"""deploy/: the manifests are valid Kubernetes, agree with the settings and with each
other; the alert rules pass promtool; every metric the rules and the dashboard read is one
the worker exports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

from tests.support import deployfiles
from worker import constants as C
from worker import metrics
from worker.settings import Settings

KEDA = "keda.sh/v1alpha1"
MANIFESTS = deployfiles.manifests()
BUILT_IN = [(p, d) for p, d in MANIFESTS if not d["apiVersion"].startswith("keda.sh/")]


def _kind(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for _, d in MANIFESTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_every_manifest_is_read() -> None:
    kinds = sorted(d["kind"] for _, d in MANIFESTS)
    assert kinds == ["Deployment", "Deployment", "Job", "PodDisruptionBudget",
                     "PodDisruptionBudget", "ScaledObject", "Secret", "Service",
                     "TriggerAuthentication"]


@pytest.mark.parametrize(("path", "doc"), BUILT_IN,
                         ids=[f"{p.name}:{d['kind']}:{d['metadata']['name']}" for p, d in BUILT_IN])
def test_built_in_kinds_are_valid_kubernetes(path: Path, doc: dict[str, Any]) -> None:
    """Strict: an unknown field (a typo) fails too."""
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(f"{path.name}: {exc.message} at {list(exc.path)}") from None


def test_the_daemon_drains_before_kubernetes_kills_it() -> None:
    deployment = _kind("Deployment", "feed-worker")
    container = _container(deployment)
    grace = float(_env(container).get("FEED_WORKER_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace + 10
    assert container["command"] == ["feed-worker", "run"]


@pytest.mark.parametrize(("name", "port_var", "default"),
                         [("feed-worker", "FEED_WORKER_HTTP_PORT", Settings().http_port),
                          ("feed-worker-api", "FEED_WORKER_API_PORT", Settings().api_port)])
def test_probes_and_resources(name: str, port_var: str, default: int) -> None:
    container = _container(_kind("Deployment", name))
    port = int(_env(container).get(port_var, default))
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    resources = container["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_secrets_referenced_exist_with_the_urls() -> None:
    secret = _kind("Secret", "feed-worker")
    assert set(secret["stringData"]) == {"DATABASE_URL", "AMQP_URL"}
    for _, doc in MANIFESTS:
        if doc["kind"] in ("Deployment", "Job"):
            refs = [e["secretRef"]["name"] for c in doc["spec"]["template"]["spec"]["containers"]
                    for e in c["envFrom"]]
            assert refs == ["feed-worker"], doc["metadata"]["name"]


def test_the_migration_job_migrates() -> None:
    job = _kind("Job", "feed-worker-migrate")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["feed-worker", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


@pytest.mark.parametrize(("budget", "deployment"),
                         [("feed-worker", "feed-worker"), ("feed-worker-api", "feed-worker-api")])
def test_each_budget_selects_its_deployment_only(budget: str, deployment: str) -> None:
    selector = _kind("PodDisruptionBudget", budget)["spec"]["selector"]["matchLabels"]
    for _, doc in MANIFESTS:
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            selected = selector.items() <= labels.items()
            assert selected == (doc["metadata"]["name"] == deployment), doc["metadata"]["name"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_scaled_object_scales_the_daemon_on_the_pull_request_queue() -> None:
    """KEDA's CRDs are not among kubernetes-validate's schemas: the shape is checked here,
    field by field, after KEDA's ScaledObject and TriggerAuthentication references."""
    scaled = _kind("ScaledObject", "feed-worker")
    assert scaled["apiVersion"] == KEDA
    spec = scaled["spec"]
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount",
                         "pollingInterval", "cooldownPeriod", "idleReplicaCount", "triggers",
                         "advanced", "fallback"}
    assert spec["scaleTargetRef"] == {"name": "feed-worker"}
    _kind("Deployment", spec["scaleTargetRef"]["name"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert all(isinstance(spec[k], int) and spec[k] > 0 for k in ("pollingInterval",
                                                                   "cooldownPeriod"))
    [trigger] = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    meta = trigger["metadata"]
    assert meta["queueName"] == C.QUEUE_PULL
    assert meta["mode"] == "QueueLength"
    assert meta["protocol"] == "amqp"
    assert all(isinstance(v, str) for v in meta.values())  # KEDA's metadata is strings
    assert meta["value"].isdigit()
    assert int(meta["value"]) > 0
    auth = _kind("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["apiVersion"] == KEDA
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    assert ref["key"] in _kind("Secret", ref["name"])["stringData"]


def test_the_systemd_unit_is_notified_and_drains() -> None:
    unit = deployfiles.systemd_unit()
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    # Pinged every half of it from the event loop; a loop stuck that long is restarted.
    assert int(unit["WatchdogSec"][0]) >= 10
    assert int(unit["TimeoutStopSec"][0]) > Settings().shutdown_grace_s + 10
    assert unit["ExecStart"][0].endswith("feed-worker run")
    assert unit["KillSignal"] == ["SIGTERM"]


def test_systemd_reads_the_unit_without_a_complaint(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit (its binary pointed at this checkout's): an
    unknown key or a bad value is a warning on stderr, so stderr must stay empty."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd"
    installed = Path(sys.executable).parent / "feed-worker"
    unit = tmp_path / deployfiles.SYSTEMD_UNIT.name
    unit.write_text(deployfiles.SYSTEMD_UNIT.read_text(encoding="utf-8").replace(
        "/opt/feed-worker/bin/feed-worker", str(installed)), encoding="utf-8")
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, ("promtool is missing: `make promtool` installs it (Debian's prometheus "
                      "package)")
    done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_passes_the_rules() -> None:
    out = _promtool("check", "rules", str(deployfiles.RULES))
    assert f"SUCCESS: {len(deployfiles.rule_exprs())} rules found" in out


def test_the_alerts_fire_on_a_failing_fleet_and_not_before() -> None:
    """deploy/prometheus/rules.test.yaml: series in, alerts (labels and words) out."""
    tests = yaml.safe_load(deployfiles.RULE_TESTS.read_text(encoding="utf-8"))
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    promised = {"FeedWorkerDeadLettersGrowing", "FeedWorkerPushGroupsFailing",
                "FeedWorkerRunsFailing", "FeedWorkerFeedsStale", "FeedWorkerConsumerMissing",
                "FeedWorkerSchedulerLeaderless"}
    assert promised <= tested
    assert "SUCCESS" in _promtool("test", "rules", str(deployfiles.RULE_TESTS))


def test_the_kustomization_lists_every_manifest() -> None:
    listed = deployfiles.kustomization()["resources"]
    assert sorted(listed) == sorted({p.name for p, _ in MANIFESTS})


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
             "gauge": ("",)}


def _exported() -> set[str]:
    """The sample names of every registered family, including a labelled one that has no
    series yet (the scrape test finds those on a daemon that set them)."""
    return {family.name + suffix for family in REGISTRY.collect()
            for suffix in _SUFFIXES.get(family.type, ("",))}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_read_is_exported(source: str) -> None:
    """Here against this process's registry; tests/integration/test_observability.py does it
    against a running daemon's /metrics."""
    assert metrics.FEEDS_STALE is not None  # the module is imported: its metrics registered
    exprs = deployfiles.rule_exprs() if source == "rules" else deployfiles.dashboard_exprs()
    names = deployfiles.metric_names(exprs)
    assert len(names) >= 6
    assert names - _exported() == set()


def test_the_dashboard_panels_are_distinct_and_placed() -> None:
    board = deployfiles.dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    for wanted in ("Pull runs by outcome", "Pull run duration", "Rows per second",
                   "Push messages per second", "Push group latency", "Dead letters",
                   "Queue depth", "Stale feeds"):
        assert wanted in titles
    for p in panels:
        assert p["targets"], p["title"]
        assert p["gridPos"]["x"] >= 0
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
