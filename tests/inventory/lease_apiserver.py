"""A small real HTTP server speaking the coordination.k8s.io/v1 Lease endpoints with the API server's
optimistic concurrency: every write bumps ``metadata.resourceVersion``; a write carrying a stale one gets
HTTP 409 Conflict, and creating an existing Lease gets 409 AlreadyExists (kmock stores objects but does
not enforce either precondition).

For races, ``barrier`` makes the next N GETs wait for each other after reading, so N candidates all read
the same version before any of them is answered (and can write).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ONE = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases/([^/?]+)")
_ALL = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases/?(\?.*)?$")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class LeaseAPIServer:
    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.conflicts = 0
        self.writes = 0
        self.barrier: threading.Barrier | None = None
        self.pause_writes_from: dict[str, float] = {}  # holder identity -> seconds to stall its PATCHes
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                data: dict[str, Any] = json.loads(self.rfile.read(n) or b"{}")
                return data

            def do_GET(self) -> None:
                m = _ONE.match(self.path)
                if not m:
                    return self._send(404, _status(404, "NotFound", self.path))
                b = server.barrier
                with server.lock:
                    lease = server.leases.get((m[1], m[2]))
                    body = json.loads(json.dumps(lease)) if lease else None
                if b is not None:
                    # After the read, not before: a GET let through the barrier first could otherwise be
                    # answered, and its PATCH applied, before the other one reads (on a slow or busy host).
                    with contextlib.suppress(threading.BrokenBarrierError):
                        b.wait(timeout=5)
                if body is None:
                    return self._send(404, _status(404, "NotFound", f'leases "{m[2]}" not found'))
                self._send(200, body)

            def do_POST(self) -> None:
                m = _ALL.match(self.path)
                if not m:
                    return self._send(404, _status(404, "NotFound", self.path))
                obj = self._body()
                name = obj["metadata"]["name"]
                with server.lock:
                    if (m[1], name) in server.leases:
                        server.conflicts += 1
                        return self._send(409, _status(409, "AlreadyExists", f'leases "{name}" already exists'))
                    server.version += 1
                    server.writes += 1
                    obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **obj}
                    obj["metadata"] = {**obj["metadata"], "namespace": m[1], "resourceVersion": str(server.version)}
                    server.leases[(m[1], name)] = obj
                    body = json.loads(json.dumps(obj))
                self._send(201, body)

            def do_PATCH(self) -> None:
                m = _ONE.match(self.path)
                if not m:
                    return self._send(404, _status(404, "NotFound", self.path))
                patch = self._body()
                stall = server.pause_writes_from.get(str((patch.get("spec") or {}).get("holderIdentity")), 0.0)
                if stall:
                    threading.Event().wait(stall)
                with server.lock:
                    lease = server.leases.get((m[1], m[2]))
                    if lease is None:
                        return self._send(404, _status(404, "NotFound", f'leases "{m[2]}" not found'))
                    want = (patch.get("metadata") or {}).get("resourceVersion")
                    if want is not None and want != lease["metadata"]["resourceVersion"]:
                        server.conflicts += 1
                        return self._send(409, _status(
                            409, "Conflict", f'Operation cannot be fulfilled on leases.coordination.k8s.io "{m[2]}": '
                                             "the object has been modified; please apply your changes to the "
                                             "latest version and try again"))
                    lease["spec"] = {**(lease.get("spec") or {}), **(patch.get("spec") or {})}
                    server.version += 1
                    server.writes += 1
                    lease["metadata"]["resourceVersion"] = str(server.version)
                    body = json.loads(json.dumps(lease))
                self._send(200, body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a stalled write (its timeout) closes the connection first

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> LeaseAPIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def expire(self, namespace: str, name: str) -> None:
        """Make the current holder's lease lapse (as if it had stopped renewing long ago)."""
        with self.lock:
            spec = self.leases[(namespace, name)]["spec"]
            spec["renewTime"] = "2000-01-01T00:00:00.000000Z"
            self.version += 1
            self.leases[(namespace, name)]["metadata"]["resourceVersion"] = str(self.version)
