"""The deploy/ files as data: the Prometheus rules, the Grafana dashboard, the manifests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "feed-worker.json"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "feed-worker.service"

_METRIC = re.compile(r"\bfeed_worker_[a-z0-9_]+\b")


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [str(rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return data


def dashboard_exprs() -> list[str]:
    return [str(t["expr"]) for p in dashboard()["panels"] for t in p["targets"]]


def metric_names(exprs: list[str]) -> set[str]:
    """The sample names the expressions read (a histogram's `_bucket`, `_sum`, `_count`)."""
    return {name for e in exprs for name in _METRIC.findall(e)}


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every document of every file in deploy/kubernetes/ (but the kustomization, which
    lists them), with its file."""
    return [(path, doc) for path in sorted(KUBERNETES.glob("*.yaml")) if path != KUSTOMIZATION
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    return data


def systemd_unit() -> dict[str, list[str]]:
    """`Key=value` lines of the unit: each key's values in order (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in SYSTEMD_UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found
