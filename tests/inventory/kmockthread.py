"""kmock's Kubernetes emulator served on 127.0.0.1 from a background event loop, for sync clients."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kmock import KubernetesEmulator, Server


def _namespaces_as_a_resource() -> None:
    """Teach kmock 0.8 that ``/api/v1/namespaces[/NAME]`` is the Namespace resource itself.

    Its path parser reads ``namespaces/X`` as the namespace scope of what follows, so listing, creating,
    reading or watching Namespace objects fails with a 500 there (a real API server serves them like any
    cluster-scoped resource). Paths with a resource after the namespace are parsed as before.
    """
    from kmock._internal import parsing

    if getattr(parsing.parse_path, "_veu_namespaces", False):
        return
    original = parsing.parse_path

    def parse_path(path: str) -> parsing.ParsedPath:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"] and len(parts) <= 4:
            return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
        return original(path)

    parse_path._veu_namespaces = True  # type: ignore[attr-defined]
    parsing.parse_path = parse_path  # type: ignore[assignment]


class KmockThread:
    def start(self) -> KmockThread:
        _namespaces_as_a_resource()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def enter() -> None:
            self.handler = KubernetesEmulator()
            await self.handler.__aenter__()
            self.server = Server(self.handler)
            await self.server.__aenter__()

        asyncio.run_coroutine_threadsafe(enter(), self.loop).result(30)
        self.url = str(self.server.url).rstrip("/")
        return self

    def stop(self) -> None:
        async def leave() -> None:
            await self.server.__aexit__(None, None, None)
            await self.handler.__aexit__(None, None, None)

        try:
            asyncio.run_coroutine_threadsafe(leave(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def core(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.CoreV1Api(client.ApiClient(cfg))


def node(
    name: str, labels: dict[str, str], allocatable: dict[str, str] | None = None, provider_id: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": provider_id} if provider_id else {},
        "status": {"allocatable": allocatable or {}},
    }
