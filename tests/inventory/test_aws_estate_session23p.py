"""The AWS collector against a realistic estate (QA session 23p): what one odd instance type or account must not do.

- An instance of a type DescribeInstanceTypes does not know (here g4ad.xlarge, which neither the catalog nor this
  fake knows, as a region answers for a type it does not offer) made AWS refuse the whole lookup
  (``InvalidInstanceType``), so every other instance on that page and the pages after it went uncounted.
- A call the IAM policy does not allow (DescribeCapacityReservations, DescribeInstanceTypes) or a configured opt-in
  region the account has not enabled (AWS answers AuthFailure) was reported as "Code: message" alone: neither the
  call, nor the IAM action to grant, nor that the region may simply not be enabled.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlmodel import select

from agent.inventory import sync
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.awsfake import _SCOPE, AwsFake, _error, run, seed_client
from tests.inventory.test_aws_collector import ACCOUNT_A, ROLE_B, _collector, _live


def test_an_instance_type_aws_says_does_not_exist_leaves_out_only_its_own_instances(
    aws: AwsFake, store: str
) -> None:
    """DescribeInstanceTypes refuses a list naming a type it does not describe (InvalidInstanceType: "The following
    supplied instance types do not exist: [g4ad.xlarge]"): the p5s beside it still count, the dl1 is named with
    what to add, and the region retires nothing."""
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    old = run(ec2, "p4d.24xlarge", 1)
    assert sync(_collector(["us-east-1"]), store).status == "ok"
    seed_client(aws.moto_url, "ec2", "us-east-1").terminate_instances(InstanceIds=old)
    p5 = run(ec2, "p5.48xlarge", 2)
    cpu = run(ec2, "m5.large", 1)  # described, no accelerator: counted nowhere, never an error
    dl1 = run(ec2, "g4ad.xlarge", 1)
    g6f = run(ec2, "g6f.large", 1)  # uncatalogued but described: an eighth of an L4 from GpuInfo

    summary = sync(_collector(["us-east-1"]), store)

    scope = {x.scope: x for x in summary.scopes}[f"{ACCOUNT_A}/us-east-1"]
    live = _live(store)
    assert {f"{ACCOUNT_A}:{i}" for i in p5 + g6f} <= set(live), scope.error
    assert live[f"{ACCOUNT_A}:{p5[0]}"].count == 8 and live[f"{ACCOUNT_A}:{p5[0]}"].accelerator == "h100-sxm"
    assert live[f"{ACCOUNT_A}:{g6f[0]}"].accelerator == "l4" and live[f"{ACCOUNT_A}:{g6f[0]}"].count == 0.125
    assert f"{ACCOUNT_A}:{cpu[0]}" not in live
    assert summary.status == "partial" and not scope.complete
    err = scope.error or ""
    assert "g4ad.xlarge" in err and dl1[0] in err, err  # the type and its instance
    assert "instance_types.aws" in err and "VEU_CATALOG_FILES" in err, err  # what to add
    assert "m5.large" not in err and "p5.48xlarge" not in err, err
    assert f"{ACCOUNT_A}:{old[0]}" in live  # partial: the terminated p4d is not retired on this listing
    with session_scope(store) as s:
        assert s.exec(select(Holding).where(Holding.external_id == f"{ACCOUNT_A}:{dl1[0]}")).first() is None


# --- IAM and opt-in regions: errors that say what to grant or enable -----------------------------------------


class Denying:
    """A proxy in front of the fake AWS answering chosen (region, action) calls with an AWS error, as an IAM policy
    without that action (UnauthorizedOperation) or a region not enabled for the account (AuthFailure) does."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.deny: dict[tuple[str, str], tuple[int, str, str]] = {}  # (region or "*", action) -> status, code, msg

    def start(self) -> Denying:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = _SCOPE.search(self.headers.get("Authorization", ""))
                region = m.group("region") if m else ""
                action = (parse_qs(body.decode("utf-8", "replace")).get("Action") or [""])[0]
                hit = proxy.deny.get((region, action)) or proxy.deny.get((region, "*")) or proxy.deny.get(("*", action))
                if hit:
                    status, code, msg = hit
                    data = _error(code, msg)
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                else:
                    conn = http.client.HTTPConnection(proxy.upstream.hostname or "", proxy.upstream.port, timeout=300)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                            self.send_header(k, v)
                    conn.close()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def denying(aws: AwsFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[Denying]:
    proxy = Denying(aws.url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_policy_without_describe_capacity_reservations_names_the_iam_action_to_grant(
    aws: AwsFake, denying: Denying, store: str
) -> None:
    """The instances are counted; the reservations could not be read, so the region retires nothing, and the error
    says which call was refused and what to grant (or to stop reading reservations)."""
    p5 = run(seed_client(aws.moto_url, "ec2", "us-east-1"), "p5.48xlarge", 1)
    denying.deny[("us-east-1", "DescribeCapacityReservations")] = (
        403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
    summary = sync(_collector(["us-east-1"]), store)
    scope = {x.scope: x for x in summary.scopes}[f"{ACCOUNT_A}/us-east-1"]
    assert f"{ACCOUNT_A}:{p5[0]}" in _live(store)
    assert not scope.complete
    err = scope.error or ""
    assert "DescribeCapacityReservations" in err, err
    assert "ec2:DescribeCapacityReservations" in err and "capacity_reservations: false" in err, err


def test_a_policy_without_describe_instance_types_names_the_iam_action_to_grant(
    aws: AwsFake, denying: Denying, store: str
) -> None:
    run(seed_client(aws.moto_url, "ec2", "us-east-1"), "m5.large", 1)  # not catalogued: DescribeInstanceTypes asked
    denying.deny[("us-east-1", "DescribeInstanceTypes")] = (
        403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
    summary = sync(_collector(["us-east-1"]), store)
    err = {x.scope: x for x in summary.scopes}[f"{ACCOUNT_A}/us-east-1"].error or ""
    assert "ec2:DescribeInstanceTypes" in err, err


def test_a_configured_opt_in_region_not_enabled_says_so_not_only_that_credentials_failed(
    aws: AwsFake, denying: Denying, store: str
) -> None:
    """AWS answers every EC2 call in an opt-in region the account has not enabled with AuthFailure ("AWS was not
    able to validate the provided access credentials"): the error names the region and the two ways out, and the
    enabled region beside it is listed completely."""
    p5 = run(seed_client(aws.moto_url, "ec2", "us-east-1"), "p5.48xlarge", 1)
    denying.deny[("me-south-1", "*")] = (
        401, "AuthFailure", "AWS was not able to validate the provided access credentials")
    summary = sync(_collector(["us-east-1", "me-south-1"]), store)
    scopes = {x.scope: x for x in summary.scopes}
    assert scopes[f"{ACCOUNT_A}/us-east-1"].complete and f"{ACCOUNT_A}:{p5[0]}" in _live(store)
    err = scopes[f"{ACCOUNT_A}/me-south-1"].error or ""
    assert "me-south-1" in err and "opt-in" in err and "regions" in err, err


def test_an_account_whose_role_is_refused_is_named_with_what_to_allow_and_the_other_account_is_listed(
    aws: AwsFake, denying: Denying, store: str
) -> None:
    p5 = run(seed_client(aws.moto_url, "ec2", "us-east-1"), "p5.48xlarge", 1)
    denying.deny[("*", "AssumeRole")] = (403, "AccessDenied", "User is not authorized to perform: sts:AssumeRole")
    summary = sync(_collector(["us-east-1"]), store)  # account A directly, account B through its role
    scopes = {x.scope: x for x in summary.scopes}
    assert scopes[f"{ACCOUNT_A}/us-east-1"].complete and f"{ACCOUNT_A}:{p5[0]}" in _live(store)
    failed = [x for x in summary.scopes if not x.complete]
    assert len(failed) == 1 and summary.status == "partial", summary.as_dict()
    err = failed[0].error or ""
    assert ROLE_B in err and "AssumeRole" in err and "trust policy" in err, err
