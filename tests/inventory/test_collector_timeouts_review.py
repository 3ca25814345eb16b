"""A collector run has a deadline: past it, no further page, region, project or cluster is asked for.

The per-call timeout (``VEU_COLLECTOR_TIMEOUT_SECONDS``) bounds one call, not a run: an endpoint answering page
after page slowly, or hung behind many regions/clusters (each call and its retries waiting out the timeout),
held a run for as long as the listing lasted, skipping every scheduled run meanwhile. ``run_timeout_seconds``
(default: the collector's ``interval_seconds``) is checked between pages and scopes; what was not listed by then
is an error for its scope (nothing retires there), and what was listed is kept.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlmodel import select

from agent import scheduler
from agent.collectors.base import TIMEOUT_ENV, CollectorConfigError, build
from agent.collectors.config import AgentConfig
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.test_collector_timeouts import _errors
from tests.silentserver import DEADLINE, SilentServer, within

PAGE_SECONDS = 0.3  # each page of the endless listings below takes this long to arrive


class EndlessPages:
    """An API answering every list request with one instance and a further page token, slowly, for ever."""

    def __init__(self, answer: Any) -> None:
        self.pages = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _answer(self, body: bytes, ctype: str) -> None:
                time.sleep(PAGE_SECONDS)
                fake.pages += 1
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(*answer(fake.pages, urlparse(self.path).path, parse_qs(urlparse(self.path).query)))

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
                self._answer(*answer(fake.pages, self.path, form))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ec2_page(n: int, _path: str, form: dict[str, list[str]]) -> tuple[bytes, str]:
    assert form.get("Action") == ["DescribeInstances"], form
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse '
        'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fake</requestId><reservationSet><item>'
        f"<reservationId>r-{n}</reservationId><ownerId>123456789012</ownerId><instancesSet><item>"
        f"<instanceId>i-{n:017d}</instanceId><instanceType>p5.48xlarge</instanceType>"
        "<instanceState><code>16</code><name>running</name></instanceState>"
        "<placement><availabilityZone>us-east-1a</availabilityZone></placement></item></instancesSet></item>"
        f"</reservationSet><nextToken>page-{n + 1}</nextToken></DescribeInstancesResponse>"
    )
    return body.encode(), "text/xml"


def _compute_page(n: int, path: str, _query: dict[str, list[str]]) -> tuple[bytes, str]:
    assert path.endswith("/aggregated/instances"), path
    base = "https://www.googleapis.com/compute/v1/projects/ml-prod/zones/us-central1-a"
    body = {"kind": "compute#instanceAggregatedList", "nextPageToken": f"page-{n + 1}", "items": {
        "zones/us-central1-a": {"instances": [{
            "id": str(1000 + n), "name": f"vm-{n}", "status": "RUNNING", "zone": base,
            "machineType": f"{base}/machineTypes/a3-highgpu-8g"}]}}}
    return json.dumps(body).encode(), "application/json"


def _node_page(n: int, path: str, _query: dict[str, list[str]]) -> tuple[bytes, str]:
    assert path == "/api/v1/nodes", path
    body = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1", "continue": f"page-{n + 1}"},
            "items": [{"metadata": {"name": f"gpu-{n}", "labels": {
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}}}]}
    return json.dumps(body).encode(), "application/json"


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-logged")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(var, raising=False)


def _live(url: str, source: str) -> int:
    with session_scope(url) as s:
        return len(s.exec(select(Holding).where(Holding.source == source, Holding.retired_at == None)).all())  # noqa: E711


def test_aws_region_answering_page_after_page_stops_at_the_run_deadline_keeping_the_pages_read(
    db_url: str, aws_env: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "5")
    ec2 = EndlessPages(_ec2_page)
    try:
        cfg = AgentConfig(collectors={"aws": {
            "endpoint_url": ec2.url, "run_timeout_seconds": 1,
            "accounts": [{"id": "123456789012", "regions": ["us-east-1"]}],
        }})
        summary, took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "aws", db_url))
    finally:
        ec2.close()

    assert summary["status"] == "partial" and took < 5, took  # a second of pages, plus the store's and client's set-up
    _status, errs = _errors(db_url, summary["run_id"])
    assert "run_timeout_seconds" in errs["123456789012/us-east-1"], errs
    assert 0 < _live(db_url, "aws") < 10  # the pages read before the deadline are kept, nothing retired


def test_aws_regions_queued_behind_a_hung_one_are_not_called_after_the_deadline(
    db_url: str, aws_env: None, silent: SilentServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    cfg = AgentConfig(collectors={"aws": {
        "endpoint_url": silent.url, "retry_mode": "standard", "max_attempts": 1, "max_workers": 1,
        "run_timeout_seconds": 1,
        "accounts": [{"id": "123456789012", "regions": ["us-east-1", "us-west-2", "eu-west-1"]}],
    }})

    summary, _took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "aws", db_url))

    assert summary["status"] == "failed"
    _status, errs = _errors(db_url, summary["run_id"])
    late = [scope for scope, msg in errs.items() if "run_timeout_seconds" in msg]
    assert len(late) == 2 and len(errs) == 3, errs
    assert len(silent.accepted) == 2  # the first region's call and its retry; the others never connect


def test_gcp_project_answering_page_after_page_stops_at_the_run_deadline_keeping_the_pages_read(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "5")
    compute = EndlessPages(_compute_page)
    try:
        cfg = AgentConfig(collectors={"gcp": {
            "api_endpoint": compute.url, "anonymous": True, "run_timeout_seconds": 1,
            "projects": [{"id": "ml-prod"}, {"id": "ml-dev"}],
        }})
        summary, took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "gcp", db_url))
    finally:
        compute.close()

    assert summary["status"] == "partial" and took < 5, took  # a second of pages, plus the store's and client's set-up
    _status, errs = _errors(db_url, summary["run_id"])
    assert "run_timeout_seconds" in errs["project:ml-prod"] and "run_timeout_seconds" in errs["project:ml-dev"]
    assert 0 < _live(db_url, "gcp") < 10


def test_k8s_run_deadline_defaults_to_the_interval_and_later_clusters_are_not_called(
    db_url: str, silent: SilentServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    cfg = AgentConfig(collectors={"k8s": {"watch": False, "interval_seconds": 1, "clusters": [
        {"name": f"c{i}", "api_url": silent.url, "customer_label": None} for i in range(3)]}})

    summary, _took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "k8s", db_url))

    assert summary["status"] == "failed"
    _status, errs = _errors(db_url, summary["run_id"])
    assert "MaxRetryError" in errs["cluster:c0"], errs
    for later in ("cluster:c1", "cluster:c2"):
        assert "run_timeout_seconds" in errs[later] and "interval_seconds" in errs[later], errs
    assert len(silent.accepted) == 3  # the first cluster's list and its two retries only


def test_k8s_node_list_answering_page_after_page_stops_at_the_run_deadline_and_the_cluster_retires_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "5")
    apiserver = EndlessPages(_node_page)
    try:
        cfg = AgentConfig(collectors={"k8s": {"watch": False, "run_timeout_seconds": 1, "clusters": [
            {"name": "fra-1", "api_url": apiserver.url, "customer_label": None}]}})
        summary, took = within(DEADLINE, lambda: scheduler.run_collector(cfg, "k8s", db_url))
    finally:
        apiserver.close()

    assert summary["status"] == "failed" and took < 5, took
    _status, errs = _errors(db_url, summary["run_id"])
    assert "run_timeout_seconds" in errs["cluster:fra-1"], errs
    assert apiserver.pages < 10 and _live(db_url, "k8s") == 0  # a node list is whole or nothing


def test_a_run_timeout_below_one_second_is_refused_naming_the_key() -> None:
    with pytest.raises(CollectorConfigError, match=r"^collectors\.k8s\.run_timeout_seconds: .*greater than or equal"):
        build("k8s", {"run_timeout_seconds": 0})
