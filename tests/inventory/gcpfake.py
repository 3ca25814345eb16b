"""A local HTTP server speaking the Compute Engine REST API's ``instances.aggregatedList`` (with paging)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_PATH = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)/aggregated/instances$")
BASE = "https://www.googleapis.com/compute/v1/projects"


def instance(
    project: str,
    name: str,
    zone: str,
    machine_type: str,
    status: str = "RUNNING",
    accelerators: list[tuple[str, int]] | None = None,
    iid: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "compute#instance",
        "id": str(iid if iid is not None else abs(hash((project, name))) % 10**18),
        "name": name,
        "status": status,
        "zone": f"{BASE}/{project}/zones/{zone}",
        "machineType": f"{BASE}/{project}/zones/{zone}/machineTypes/{machine_type}",
    }
    if accelerators:
        body["guestAccelerators"] = [
            {"acceleratorType": f"{BASE}/{project}/zones/{zone}/acceleratorTypes/{t}", "acceleratorCount": n}
            for t, n in accelerators
        ]
    return body


class ComputeFake:
    def __init__(self) -> None:
        self.instances: dict[str, list[dict[str, Any]]] = {}
        self.failing: set[str] = set()
        self.unreachable: dict[str, list[str]] = {}
        self.unreachable_scopes: dict[str, list[str]] = {}  # project -> zones reported with warning UNREACHABLE
        self.requests: list[str] = []
        # project -> HTTP status for requests carrying a pageToken: page 1 arrives, the rest of the list fails.
        self.fail_on_page_token: dict[str, int] = {}

    def start(self) -> ComputeFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                u = urlparse(self.path)
                fake.requests.append(self.path)
                m = _PATH.match(u.path)
                if not m:
                    return self._json(404, {"error": {"code": 404, "message": "not found"}})
                project = m.group("project")
                if project in fake.failing:
                    return self._json(
                        403, {"error": {"code": 403, "message": "Required 'compute.instances.list' permission"}}
                    )
                q = parse_qs(u.query)
                if q.get("pageToken") and project in fake.fail_on_page_token:
                    code = fake.fail_on_page_token[project]
                    return self._json(code, {"error": {"code": code, "message": "Internal error. Please try again."}})
                size = int((q.get("maxResults") or ["500"])[0])
                start = int((q.get("pageToken") or ["0"])[0])
                insts = fake.instances.get(project, [])
                chunk = insts[start : start + size]
                items: dict[str, Any] = {}
                for i in chunk:
                    zone = i["zone"].rsplit("/", 1)[-1]
                    items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(i)
                body: dict[str, Any] = {
                    "kind": "compute#instanceAggregatedList",
                    "id": f"projects/{project}/aggregated/instances",
                    "items": items,
                }
                if start + size < len(insts):
                    body["nextPageToken"] = str(start + size)
                if fake.unreachable.get(project):
                    body["unreachables"] = fake.unreachable[project]
                for scope in fake.unreachable_scopes.get(project, []):
                    # How aggregatedList reports a zone it cannot reach: a per-scope warning, no instances.
                    items[scope] = {"warning": {"code": "UNREACHABLE", "message": f"Scope [{scope}] is unreachable."}}
                return self._json(200, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def gcp_collector(fake: ComputeFake, *projects: str) -> Any:
    """The GCP collector listing ``projects`` (owned by Acme Cloud, operated by Acme Ops) from ``fake``."""
    from agent.collectors.base import build

    return build("gcp", {"api_endpoint": fake.url, "anonymous": True,
                         "projects": [{"id": p, "owner": "Acme Cloud", "operator": "Acme Ops"} for p in projects]})
