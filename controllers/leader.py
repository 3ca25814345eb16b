"""Leader election on a Kubernetes ``coordination.k8s.io/v1`` Lease: only the leader replica collects.

A small Lease loop over ``CoordinationV1Api`` rather than ``kubernetes.leaderelection`` (which calls
``sys.exit`` on bad timings and configures global logging at import). Semantics follow client-go:
- the holder renews every ``retry_period``; if it cannot renew within ``renew_deadline`` it steps down;
- a candidate takes the lease only when ``renewTime + leaseDurationSeconds`` has passed (or it is free);
- writes are merge patches carrying the read ``resourceVersion``, so two candidates cannot both win
  (HTTP 409 -> lost race);
- ``release()`` on shutdown empties the holder so a standby takes over at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


def default_identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def in_cluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", "default")


def _micro(t: datetime) -> str:
    """A Kubernetes MicroTime."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        identity: str | None = None,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        from kubernetes import client

        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("leader_election: need lease_duration > renew_deadline > retry_period > 0")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_started = on_started_leading or (lambda: None)
        self.on_stopped = on_stopped_leading or (lambda: None)
        self.stop = threading.Event()
        self.leading = False
        self._last_renew = 0.0

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this identity holds the lease afterwards."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        now = self._now()
        timeout = self._call_timeout()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=int(self.lease_duration),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=timeout)
                return True
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        patch: dict[str, Any] = {
            "holderIdentity": self.identity,
            "renewTime": _micro(now),
            "leaseDurationSeconds": int(self.lease_duration),
        }
        if holder != self.identity:
            renewed = spec.renew_time or spec.acquire_time
            duration = timedelta(seconds=spec.lease_duration_seconds or self.lease_duration)
            if holder and renewed is not None and renewed + duration > now:
                return False  # someone else holds a live lease
            patch["acquireTime"] = _micro(now)
            patch["leaseTransitions"] = (spec.lease_transitions or 0) + 1
        return self._patch(lease, patch, timeout)

    def _call_timeout(self) -> float:
        """How long one API call may take: a leader's must answer before its renew deadline passes.

        Without a bound, a renewal hung in the network keeps this replica believing it leads while the
        lease expires and another takes it (two leaders); with it, the call fails in time and the loop
        steps down before ``lease_duration`` lets anyone else in (as client-go bounds its renew context).
        """
        if self.leading and self._last_renew:
            left = self.renew_deadline - (time.monotonic() - self._last_renew)
            return max(0.05, min(left, self.renew_deadline))
        return self.renew_deadline

    def _patch(self, lease: Any, spec: dict[str, Any], timeout: float | None = None) -> bool:
        """Merge-patch the spec, guarded by the read resourceVersion (409 means another writer won)."""
        from kubernetes.client.exceptions import ApiException

        body: dict[str, Any] = {"spec": spec}
        rv = lease.metadata.resource_version if lease.metadata else None
        if rv:
            body["metadata"] = {"resourceVersion": rv}
        try:
            self.api.patch_namespaced_lease(self.name, self.namespace, body,
                                            _request_timeout=timeout or self.renew_deadline)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """Give the lease up (holder emptied) so a standby need not wait for it to expire."""
        from kubernetes.client.exceptions import ApiException

        if not self.leading:
            return
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                past = self._now() - timedelta(seconds=self.lease_duration + 1)
                self._patch(lease, {"holderIdentity": "", "renewTime": _micro(past)})
        except ApiException as exc:
            log.warning("leader election: could not release lease %s/%s: %s", self.namespace, self.name, exc.reason)
        self._set(False)

    def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        log.info(
            "leader election: %s %s lease %s/%s",
            self.identity,
            "acquired" if leading else "lost",
            self.namespace,
            self.name,
        )
        (self.on_started if leading else self.on_stopped)()

    def run(self) -> None:
        """Campaign and renew until ``stop`` is set; callbacks fire on every change of leadership."""
        while not self.stop.is_set():
            try:
                ok = self.try_acquire_or_renew()
            except Exception as exc:
                log.warning("leader election: %s", type(exc).__name__)
                ok = False
            mono = time.monotonic()
            if ok:
                self._last_renew = mono
                self._set(True)
            elif self.leading and mono - self._last_renew > self.renew_deadline:
                self._set(False)
            elif self.leading and not ok:
                pass  # a failed renew inside the deadline: keep leading, retry soon
            self.stop.wait(self.retry_period)
        self.release()
