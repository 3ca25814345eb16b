"""Paged listings: every page is collected, and a listing that breaks after page 1 retires nothing.

Kubernetes against a real local HTTP server that pages ``/api/v1/nodes`` by ``limit``/``continue`` (kmock
answers in one piece); Compute Engine against the local REST fake paging by ``maxResults``/``pageToken``.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import ClusterConfig, NodeWatcher
from agent.inventory import sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.kmockthread import node
from tests.inventory.pagedapiserver import PagedNodesAPIServer
from tests.inventory.test_aws_collector import _moto_type_only_the_api_describes

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


# --- Kubernetes nodes ----------------------------------------------------------------------------------


@pytest.fixture()
def api() -> Iterator[PagedNodesAPIServer]:
    # Pages of 5 whatever the client asks for: the API server may return fewer items than ``limit``.
    srv = PagedNodesAPIServer(max_page=5).start()
    yield srv
    srv.stop()


@pytest.fixture()
def site(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Frankfurt Colo", "DE", cluster="fra-1")
    return store


def _k8s(api: PagedNodesAPIServer):  # type: ignore[no-untyped-def]
    return build(
        "k8s", {"clusters": [{"name": "fra-1", "api_url": api.url, "owner": "Acme Cloud", "operator": "Acme Ops"}]}
    )


def _fleet(api: PagedNodesAPIServer, n: int = 12) -> set[str]:
    for i in range(n):
        api.put(node(f"gpu-{i:02d}", H100))
    return {f"fra-1/gpu-{i:02d}" for i in range(n)}


def _lists(api: PagedNodesAPIServer) -> list[dict[str, str]]:
    return [q for q in api.requests if q.get("watch") not in ("true", "1")]


def test_nodes_are_collected_from_every_page_following_continue(api: PagedNodesAPIServer, site: str) -> None:
    want = _fleet(api)
    summary = sync(_k8s(api), site)
    assert summary.status == "ok", summary.as_dict()
    assert set(_live(site)) == want
    lists = _lists(api)
    assert len(lists) == 3  # 5 + 5 + 2
    assert all(q.get("limit") == "500" for q in lists)
    assert [bool(q.get("continue")) for q in lists] == [False, True, True]


def test_expired_continue_token_restarts_the_list_and_the_fleet_is_complete(
    api: PagedNodesAPIServer, site: str,
) -> None:
    want = _fleet(api)
    sync(_k8s(api), site)
    api.delete("gpu-11")
    api.requests.clear()
    api.expire_continue = 1  # page 2's token outlived compaction: 410 Gone, reason Expired
    summary = sync(_k8s(api), site)
    # Not a partial fleet recorded as complete (page 1 alone would retire gpu-05..gpu-10), and not a failure
    # either: the list starts again as one piece, as client-go's pager does, and is complete.
    assert summary.status == "ok", summary.as_dict()
    assert set(_live(site)) == want - {"fra-1/gpu-11"}
    lists = _lists(api)
    assert not lists[-1].get("continue") and not lists[-1].get("limit")


def test_expired_continue_token_never_duplicates_or_keeps_nodes_from_the_abandoned_list(
    api: PagedNodesAPIServer,
) -> None:
    _fleet(api)
    api.expire_continue = 1
    real = api.page

    def page(limit: str | None, cont: str | None) -> tuple[int, dict[str, object]]:
        # Between page 1 and the expired page 2, gpu-00 (on page 1) is drained of its GPUs.
        if cont and api.expire_continue:
            api.put(node("gpu-00", {}))
        return real(limit, cont)

    api.page = page  # type: ignore[method-assign]
    (res,) = list(_k8s(api).collect())
    assert res.complete, res.error
    ids = [o.external_id for o in res.observations]
    assert len(ids) == len(set(ids)) == 11 and "fra-1/gpu-00" not in ids


def test_server_error_on_a_later_page_fails_the_cluster_and_retires_nothing(
    api: PagedNodesAPIServer, site: str,
) -> None:
    want = _fleet(api)
    sync(_k8s(api), site)
    for i in range(5, 12):
        api.delete(f"gpu-{i:02d}")  # had page 2 been read as the end, these would be retired
    api.put(node("gpu-new", H100))
    api.fail_continue = 1
    summary = sync(_k8s(api), site)
    assert summary.status == "failed"
    error = summary.scopes[0].error or ""
    assert "fra-1" in error and "500" in error and "etcdserver: request timed out" in error, error
    assert set(_live(site)) == want  # nothing retired; page 1 upserted
    with session_scope(site) as s:
        assert s.exec(select(Holding).where(Holding.retired_at != None)).first() is None  # noqa: E711


def test_node_watcher_relists_every_page_and_restarts_on_an_expired_continue(api: PagedNodesAPIServer) -> None:
    _fleet(api)
    api.expire_continue = 1
    changed: list[str] = []
    w = NodeWatcher(ClusterConfig(name="fra-1", api_url=api.url), changed.append, window_seconds=1)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    deadline = time.time() + 10
    while w.relists < 1 and time.time() < deadline:
        time.sleep(0.05)
    w.stop.set()
    t.join(10)
    assert w.relists == 1
    assert set(w.known) == {f"gpu-{i:02d}" for i in range(12)}
    assert w.resource_version == str(api.version)
    assert changed == []


def test_node_watcher_keeps_what_it_knew_when_a_relist_fails_on_a_later_page(api: PagedNodesAPIServer) -> None:
    from kubernetes import client

    from agent.collectors.k8s_nodes import api_client

    _fleet(api)
    c = ClusterConfig(name="fra-1", api_url=api.url)
    w = NodeWatcher(c, lambda _: None)
    v1 = client.CoreV1Api(api_client(c))
    w.relist(v1)
    before, rv = dict(w.known), w.resource_version
    for i in range(5, 12):
        api.delete(f"gpu-{i:02d}")
    api.put(node("gpu-new", H100))
    api.fail_continue = 1
    with pytest.raises(client.exceptions.ApiException):
        w.relist(v1)
    assert (w.known, w.resource_version, w.relists) == (before, rv, 1)


# --- Compute Engine ------------------------------------------------------------------------------------


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    fake = ComputeFake().start()
    yield fake
    fake.stop()


def _gcp(fake: ComputeFake, *projects: str, page_size: int = 3):  # type: ignore[no-untyped-def]
    return build(
        "gcp",
        {
            "api_endpoint": fake.url,
            "anonymous": True,
            "page_size": page_size,
            "projects": [{"id": p, "owner": "Acme Cloud", "operator": "Acme Ops"} for p in projects],
        },
    )


def test_gcp_every_page_of_every_project_is_collected(gce: ComputeFake, store: str) -> None:
    gce.instances["a"] = [instance("a", f"vm{i}", "us-central1-a", "a3-highgpu-8g", iid=100 + i) for i in range(7)]
    gce.instances["b"] = [instance("b", f"vm{i}", "europe-west4-b", "a3-highgpu-8g", iid=200 + i) for i in range(4)]
    summary = sync(_gcp(gce, "a", "b"), store)
    assert summary.status == "ok", summary.as_dict()
    assert set(_live(store)) == {f"a/{100 + i}" for i in range(7)} | {f"b/{200 + i}" for i in range(4)}
    assert all("maxResults=3" in r for r in gce.requests)
    assert sum("pageToken" in r for r in gce.requests) == 2 + 1


def test_gcp_server_error_on_a_later_page_fails_the_project_and_retires_nothing(gce: ComputeFake, store: str) -> None:
    gce.instances["a"] = [instance("a", f"vm{i}", "us-central1-a", "a3-highgpu-8g", iid=100 + i) for i in range(7)]
    gce.instances["b"] = [instance("b", "y", "europe-west4-b", "a3-highgpu-8g", iid=2)]
    sync(_gcp(gce, "a", "b"), store)
    before = set(_live(store))
    gce.instances["a"] = gce.instances["a"][:4]  # two pages now; page 2 fails, so vm3..vm6 must not retire
    gce.instances["b"] = []
    gce.fail_on_page_token["a"] = 500
    summary = sync(_gcp(gce, "a", "b"), store)
    assert summary.status == "partial"  # one project failed, the other listed completely
    by_scope = {x.scope: x for x in summary.scopes}
    assert not by_scope["project:a"].complete and "500" in (by_scope["project:a"].error or "")
    assert by_scope["project:b"].complete  # another project listed completely still retires what it lost
    assert set(_live(store)) == before - {"b/2"}


def test_gcp_a_project_answering_503_fails_within_retry_seconds_not_the_librarys_ten_minutes(
    gce: ComputeFake, store: str,
) -> None:
    import time

    gce.instances["a"] = [instance("a", f"vm{i}", "us-central1-a", "a3-highgpu-8g", iid=100 + i) for i in range(7)]
    gce.fail_on_page_token["a"] = 503
    collector = build("gcp", {"api_endpoint": gce.url, "anonymous": True, "page_size": 3, "retry_seconds": 2,
                              "projects": [{"id": "a", "owner": "Acme Cloud", "operator": "Acme Ops"}]})
    started = time.monotonic()
    summary = sync(collector, store)
    assert time.monotonic() - started < 30
    assert summary.status == "partial" and "503" in (summary.scopes[0].error or ""), summary.as_dict()
    assert sum("pageToken" in r for r in gce.requests) >= 2  # retried, within the bound


# --- AWS -----------------------------------------------------------------------------------------------


ACCOUNT = "123456789012"  # moto's default account
P5 = "p5.48xlarge"


def _aws(aws: AwsFake, regions: list[str], **kw: object):  # type: ignore[no-untyped-def]
    acct = {"owner": "Acme Cloud", "operator": "Acme Ops", "regions": regions}
    return build("aws", {"accounts": [acct], "max_attempts": 2, "retry_mode": "standard"} | kw)


def test_aws_every_page_of_every_region_is_collected(aws: AwsFake, store: str) -> None:
    want: set[str] = set()
    for region, n in (("us-east-1", 7), ("eu-west-1", 11)):
        ec2 = seed_client(aws.moto_url, "ec2", region)
        want |= {f"{ACCOUNT}:{i}" for _ in range(n) for i in run(ec2, P5, 1)}  # one reservation each
    summary = sync(_aws(aws, ["us-east-1", "eu-west-1"], page_size=5), store)
    assert summary.status == "ok", summary.as_dict()
    assert set(_live(store)) == want  # 2 pages in us-east-1, 3 in eu-west-1


class _PagedInstanceTypes:
    """A real HTTP hop in front of the AWS fake that answers ``DescribeInstanceTypes`` in two pages.

    Page 1 is empty with a ``NextToken`` (EC2 may answer a short or empty page); the call carrying the token
    gets moto's full answer. Every other call passes through unchanged.
    """

    def __init__(self, upstream: str, omit: bool = False) -> None:
        self.upstream = urlparse(upstream)
        self.omit = omit  # answer one empty page and no token: the requested types go undescribed
        self.first_pages = 0
        hop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qs(body.decode("utf-8"))
                paged = (form.get("Action") or [""])[0] == "DescribeInstanceTypes"
                continued = paged and form.pop("NextToken", None) is not None
                if continued:  # moto knows no token: ask it for the whole answer
                    body = urlencode({k: v[0] for k, v in form.items()}).encode()
                conn = http.client.HTTPConnection(hop.upstream.hostname or "", hop.upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if paged and not continued and resp.status == 200:
                    hop.first_pages += 1
                    rest = b"" if hop.omit else b"<nextToken>page-2</nextToken>"
                    data = re.sub(rb"<instanceTypeSet>.*</instanceTypeSet>", b"<instanceTypeSet/>" + rest, data,
                                  flags=re.S)
                self.send_response(resp.status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_aws_instance_types_described_on_a_later_page_are_counted_not_retired(aws: AwsFake, store: str) -> None:
    # GPUs in moto's data, a type the catalog lacks: placed through DescribeInstanceTypes.
    itype, _, _ = _moto_type_only_the_api_describes()
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-1"), itype, 2)
    assert sync(_aws(aws, ["us-east-1"]), store).status == "ok"
    assert {f"{ACCOUNT}:{i}" for i in ids} <= set(_live(store))
    hop = _PagedInstanceTypes(aws.url)
    try:
        summary = sync(_aws(aws, ["us-east-1"], endpoint_url=hop.url), store)
    finally:
        hop.stop()
    assert hop.first_pages == 1
    assert summary.status == "ok", summary.as_dict()
    assert {f"{ACCOUNT}:{i}" for i in ids} <= set(_live(store))


def test_aws_instance_type_left_undescribed_is_uncounted_and_retires_nothing(aws: AwsFake, store: str) -> None:
    itype, _, _ = _moto_type_only_the_api_describes()
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-1"), itype, 2)
    sync(_aws(aws, ["us-east-1"]), store)
    hop = _PagedInstanceTypes(aws.url, omit=True)
    try:
        summary = sync(_aws(aws, ["us-east-1"], endpoint_url=hop.url), store)
    finally:
        hop.stop()
    # Not described is not "no GPU": the region is partial, its chips are kept, and the error names the type.
    assert summary.status == "failed"
    error = summary.scopes[0].error or ""
    assert itype in error and "DescribeInstanceTypes did not describe it" in error, error
    assert {f"{ACCOUNT}:{i}" for i in ids} <= set(_live(store))


def test_node_watcher_reports_a_change_made_while_it_was_not_watching(api: PagedNodesAPIServer) -> None:
    """A relist after a watch gap (a 410) finds a node changed in the gap: the callback fires, as the watch's
    event would have, instead of waiting for the next periodic re-sync. The first list is only the baseline."""
    from kubernetes import client

    from agent.collectors.k8s_nodes import api_client

    _fleet(api)
    c = ClusterConfig(name="fra-1", api_url=api.url)
    changed: list[str] = []
    w = NodeWatcher(c, changed.append)
    v1 = client.CoreV1Api(api_client(c))
    w.relist(v1)
    assert changed == []
    w.relist(v1)  # nothing changed in between: no call
    assert changed == []
    api.delete("gpu-03")
    w.relist(v1)
    assert changed == ["fra-1"] and "gpu-03" not in w.known


def test_a_continue_token_given_back_unchanged_stops_the_list_instead_of_looping() -> None:
    from types import SimpleNamespace

    from agent.collectors.k8s_nodes import list_all

    calls: list[dict[str, object]] = []

    def stuck(**kw: object) -> SimpleNamespace:
        calls.append(kw)
        assert len(calls) < 10, "the list did not stop"
        return SimpleNamespace(items=[1], metadata=SimpleNamespace(_continue="same", resource_version="7"))

    with pytest.raises(RuntimeError, match="continue token it was given"):
        list_all(stuck)
    assert len(calls) == 2
