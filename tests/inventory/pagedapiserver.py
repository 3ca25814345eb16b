"""A small real HTTP server speaking the Kubernetes ``/api/v1/nodes`` list with chunking (``limit``/``continue``).

kmock answers a list in one piece whatever ``limit`` says, so it cannot show whether a client follows
``metadata.continue``. This server pages the way the API server does:

- a list is a snapshot at one ``resourceVersion``; every page of it carries that version and the ``continue``
  token names the snapshot and the offset, so nodes created or deleted between pages do not show up mid-list;
- a page holds at most ``limit`` items, and fewer when ``max_page`` is set (the API server may return fewer
  than asked; a client must follow ``continue``, not count items); without ``limit`` the list is one answer;
- ``expire_continue``: the next N requests carrying a ``continue`` token get 410 Gone, reason ``Expired``,
  with the API server's message (the token outlived etcd compaction);
- ``fail_continue``: the next N requests carrying a ``continue`` token get HTTP 500 (page 1 arrives, the rest
  of the listing fails);
- a watch (``watch=true``) waits briefly and ends with no events, so a watcher simply watches again.

Every request's query is kept in ``requests`` for assertions.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


def _status(code: int, reason: str, message: str, cont: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {"continue": cont} if cont else {},
            "status": "Failure", "message": message, "reason": reason, "code": code}


def _token(rv: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": offset}).encode()).decode()


class PagedNodesAPIServer:
    def __init__(self, max_page: int | None = None) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.version = 1
        self.snapshots: dict[int, list[dict[str, Any]]] = {}  # resourceVersion -> the list a token continues
        self.max_page = max_page
        self.expire_continue = 0
        self.fail_continue = 0
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()
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

            def do_GET(self) -> None:
                u = urlparse(self.path)
                if u.path.rstrip("/") != "/api/v1/nodes":
                    return self._send(404, _status(404, "NotFound", self.path))
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                with server.lock:
                    server.requests.append(q)
                if q.get("watch") in ("true", "1"):
                    # No events: end the watch soon so the watcher (and the test) carries on.
                    time.sleep(min(float(q.get("timeoutSeconds") or 1), 0.3))
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                code, body = server.page(q.get("limit"), q.get("continue"))
                return self._send(code, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> PagedNodesAPIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- the store -------------------------------------------------------------------------------------

    def put(self, node: dict[str, Any]) -> None:
        """Create or replace a node (a new resourceVersion, as every write makes)."""
        with self.lock:
            self.version += 1
            node = json.loads(json.dumps(node))
            node.setdefault("metadata", {})["resourceVersion"] = str(self.version)
            self.nodes[node["metadata"]["name"]] = node

    def delete(self, name: str) -> None:
        with self.lock:
            self.version += 1
            self.nodes.pop(name)

    def page(self, limit: str | None, cont: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if cont:
                if self.expire_continue > 0:
                    self.expire_continue -= 1
                    # The API server offers an inconsistent continuation in the 410; a client that wants a
                    # consistent list starts again instead.
                    return 410, _status(410, "Expired", EXPIRED_MESSAGE, cont=cont)
                if self.fail_continue > 0:
                    self.fail_continue -= 1
                    return 500, _status(500, "InternalError", "etcdserver: request timed out")
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    rv, start = int(tok["rv"]), int(tok["start"])
                    items = self.snapshots[rv]
                except (ValueError, KeyError, TypeError):
                    return 400, _status(400, "BadRequest", f"continue key is not valid: {cont!r}")
            else:
                rv, start = self.version, 0
                items = [self.nodes[n] for n in sorted(self.nodes)]
                self.snapshots[rv] = items
            want = int(limit) if limit else 0
            # No limit: the whole list in one answer, as the API server gives it.
            size = min(want, self.max_page or want) if want > 0 else len(items)
            chunk = items[start:start + size]
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if start + size < len(items):
                meta["continue"] = _token(rv, start + size)
                meta["remainingItemCount"] = len(items) - start - size
            return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": meta,
                         "items": json.loads(json.dumps(chunk))}
