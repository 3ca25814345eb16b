"""Moto in server mode behind a small fault-injecting HTTP proxy, for the AWS collector tests.

moto answers EC2/STS for real over HTTP. The proxy sits between the collector and moto and, per region
(read from the SigV4 credential scope in the Authorization header), can:
- throttle: answer the first N EC2 calls with HTTP 400 ``RequestLimitExceeded`` (botocore retries it),
- error: answer every EC2 call with HTTP 503 ``Unavailable`` (retries exhaust, the region fails),
- fail_on_next_page: answer calls that carry a ``NextToken`` with ``UnauthorizedOperation`` (page 1 arrives,
  the rest of the listing fails: a partial region),
- enabled_regions: answer ``DescribeRegions`` with the regions an account has enabled (a real account
  reports its opted-in regions; moto reports every region, each costly to initialise),
- delay: sleep before answering EC2 calls (a slow region, to kill a sync mid-way),
- serve ``DescribeCapacityReservations`` from a table, since moto does not implement that action,
- placement: rewrite an instance's ``Placement.AvailabilityZone`` in ``DescribeInstances`` answers (moto
  refuses Local Zone and Wavelength Zone names such as ``ap-northeast-1-tpe-1a`` in ``RunInstances``).
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from moto.server import ThreadedMotoServer

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/")


def _error(code: str, msg: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{msg}</Message></Error></Errors><RequestID>fake</RequestID></Response>"
    ).encode()


def _reservations_xml(items: list[dict[str, Any]]) -> bytes:
    rows = "".join(
        f"<item><capacityReservationId>{c['id']}</capacityReservationId><instanceType>{c['type']}</instanceType>"
        f"<availableInstanceCount>{c['available']}</availableInstanceCount>"
        f"<totalInstanceCount>{c['total']}</totalInstanceCount><state>active</state>"
        + (f"<ownerId>{c['owner']}</ownerId>" if c.get("owner") else "")
        + (f"<availabilityZone>{c['zone']}</availabilityZone>" if c.get("zone") else "") +
        f"<reservationType>{c.get('kind', 'capacity-block')}</reservationType></item>"
        for c in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><DescribeCapacityReservationsResponse '
        'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fake</requestId>'
        f"<capacityReservationSet>{rows}</capacityReservationSet></DescribeCapacityReservationsResponse>"
    ).encode()


def _place(body: bytes, placement: dict[str, str]) -> bytes:
    """Set the availability zone of the listed instances in a DescribeInstances answer.

    moto writes ``<instanceId>`` before ``<placement><availabilityZone>`` in each instance item, so the first
    zone after an instance's id is that instance's.
    """
    text = body.decode("utf-8")
    for iid, zone in placement.items():
        at = text.find(f"<instanceId>{iid}</instanceId>")
        if at < 0:
            continue
        m = re.compile(r"<availabilityZone>[^<]*</availabilityZone>").search(text, at)
        if m is not None:
            text = text[: m.start()] + f"<availabilityZone>{zone}</availabilityZone>" + text[m.end():]
    return text.encode("utf-8")


def _regions_xml(regions: list[str]) -> bytes:
    rows = "".join(f"<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint>"
                   f"<optInStatus>opt-in-not-required</optInStatus></item>" for r in regions)
    return ('<?xml version="1.0" encoding="UTF-8"?><DescribeRegionsResponse '
            'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fake</requestId>'
            f"<regionInfo>{rows}</regionInfo></DescribeRegionsResponse>").encode()


@dataclass
class Faults:
    throttle: dict[str, int] = field(default_factory=dict)  # region -> EC2 calls to throttle
    error: set[str] = field(default_factory=set)
    fail_on_next_page: set[str] = field(default_factory=set)
    reservations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    enabled_regions: list[str] | None = None  # what DescribeRegions reports (None: moto's full list)
    delay: dict[str, float] = field(default_factory=dict)  # region -> seconds before each EC2 answer
    placement: dict[str, str] = field(default_factory=dict)  # instance id -> zone DescribeInstances reports
    calls: dict[str, int] = field(default_factory=dict)  # region -> EC2 calls seen
    throttled: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class AwsFake:
    """moto server + proxy; ``url`` is what AWS_ENDPOINT_URL should point at."""

    def __init__(self) -> None:
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.faults = Faults()

    def start(self) -> AwsFake:
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        # moto keeps its state per process; start every test from an empty cloud.
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        conn.close()
        self.moto_addr = (host, port)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = _SCOPE.search(self.headers.get("Authorization", ""))
                region, service = (m.group("region"), m.group("service")) if m else ("", "")
                form = parse_qs(body.decode("utf-8", "replace"))
                action = (form.get("Action") or [""])[0]
                f = fake.faults
                if service == "ec2":
                    with f.lock:
                        f.calls[region] = f.calls.get(region, 0) + 1
                        left = f.throttle.get(region, 0)
                        if left > 0:
                            f.throttle[region] = left - 1
                            f.throttled[region] = f.throttled.get(region, 0) + 1
                    if f.delay.get(region):
                        time.sleep(f.delay[region])
                    if left > 0:
                        return self._send(400, _error("RequestLimitExceeded", "Request limit exceeded."))
                    if region in f.error:
                        return self._send(503, _error("Unavailable", "The service is unavailable."))
                    if region in f.fail_on_next_page and "NextToken" in form:
                        return self._send(403, _error("UnauthorizedOperation", "You are not authorized."))
                    if action == "DescribeRegions" and f.enabled_regions is not None:
                        return self._send(200, _regions_xml(f.enabled_regions))
                    if action == "DescribeCapacityReservations":
                        return self._send(200, _reservations_xml(f.reservations.get(region, [])))
                conn = http.client.HTTPConnection(*fake.moto_addr, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if service == "ec2" and action == "DescribeInstances" and f.placement and resp.status == 200:
                    data = _place(data, dict(f.placement))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.proxy.daemon_threads = True
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.proxy.server_address[1]}"
        self.moto_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self.proxy.shutdown()
        self.proxy.server_close()
        self.moto.stop()


def seed_client(fake_url: str, service: str, region: str, account_role: str | None = None) -> Any:
    """A boto3 client on moto directly (no faults), optionally inside another account via AssumeRole."""
    import boto3

    kw: dict[str, Any] = {
        "endpoint_url": fake_url,
        "region_name": region,
        "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key": "test",
    }
    if account_role:
        c = boto3.client("sts", **kw).assume_role(RoleArn=account_role, RoleSessionName="seed")["Credentials"]
        kw.update(
            aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"],
        )
    return boto3.client(service, **kw)


def run(ec2: Any, instance_type: str, n: int) -> list[str]:
    # moto creates MinCount instances and ignores MaxCount, so both are n.
    r = ec2.run_instances(ImageId="ami-12c6146b", MinCount=n, MaxCount=n, InstanceType=instance_type)
    return [i["InstanceId"] for i in r["Instances"]]
