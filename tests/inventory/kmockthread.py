"""kmock's Kubernetes emulator served on 127.0.0.1 from a background event loop, for sync clients."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kmock import KubernetesEmulator, Server


class KmockThread:
    def start(self) -> KmockThread:
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
