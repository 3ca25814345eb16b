"""Leader election on a Kubernetes ``coordination.k8s.io/v1`` Lease: only the leader replica collects.

A small Lease loop over ``CoordinationV1Api`` rather than ``kubernetes.leaderelection`` (which calls
``sys.exit`` on bad timings and configures global logging at import). Semantics follow client-go
(``k8s.io/client-go/tools/leaderelection``):
- the holder renews every ``retry_period``; if it cannot renew within ``renew_deadline`` (counted from when the write
  of its last successful renewal was sent, not when it was answered nor when its read began) it steps down, and at
  once when it reads the Lease naming another holder; ``lease_duration`` must exceed ``renew_deadline`` and
  ``retry_period`` together, so a standby never takes over before the leader has noticed its deadline passed;
- expiry is judged on the candidate's own monotonic clock, never by comparing another replica's
  ``renewTime`` with the local wall clock (clocks of replicas may be skewed by more than a lease). Each
  elector remembers the last Lease record it read (holder, durations, acquire/renew times, transitions,
  ``resourceVersion``) and the local monotonic time at which it saw that record change; a lease held by
  someone else is expired only once its ``leaseDurationSeconds`` (never less than this elector's own
  ``lease_duration``) has passed on that clock without the record changing. So a candidate that has just
  started, or that has just seen the holder renew, waits a full lease duration before taking over, however
  old or new the written ``renewTime`` looks; the times written into the Lease are informational only;
- a released lease (empty ``holderIdentity``) is taken at once;
- writes are merge patches carrying the read ``resourceVersion``, so two candidates cannot both win
  (HTTP 409 -> lost race);
- ``release()`` on shutdown empties the holder so a standby takes over at once.
"""

from __future__ import annotations

import logging
import math
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
        # A leader notices it missed its deadline only when an attempt ends, which may be a retry period after the
        # deadline passed: a standby that waited no longer than both could take over while it still led.
        if not lease_duration > renew_deadline + retry_period:
            raise ValueError(
                f"leader_election: lease_duration ({lease_duration:g}) must exceed renew_deadline + retry_period "
                f"({renew_deadline:g} + {retry_period:g} = {renew_deadline + retry_period:g}): a standby could take "
                "the lease while the leader has not yet noticed its renew deadline passed")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_started = on_started_leading or (lambda: None)
        self.on_stopped = on_stopped_leading or (lambda: None)
        self.stop = threading.Event()
        self.leading = False
        # Local monotonic time at which the last successful renewal's write was sent (see run), at which this attempt
        # began, and at which its write (PATCH or create) was sent.
        self._last_renew = 0.0
        self._attempt_start = 0.0
        self._write_sent = 0.0
        # The last Lease record read or written, and when (local monotonic clock) it was seen to change.
        self._observed: tuple[Any, ...] | None = None
        self._observed_duration = lease_duration
        self._observed_time = 0.0

    @staticmethod
    def _now() -> datetime:
        """Wall clock: only for the timestamps written into the Lease, never to judge another's lease."""
        return datetime.now(UTC)

    @staticmethod
    def _monotonic() -> float:
        """The local clock that all expiry and deadline decisions use."""
        return time.monotonic()

    def _observe(self, lease: Any) -> None:
        """Remember ``lease``'s record; restart the local expiry clock when it differs from the last one seen."""
        spec = lease.spec
        meta = lease.metadata
        record = (
            getattr(spec, "holder_identity", None) or "",
            getattr(spec, "lease_duration_seconds", None),
            getattr(spec, "acquire_time", None),
            getattr(spec, "renew_time", None),
            getattr(spec, "lease_transitions", None),
            getattr(meta, "resource_version", None),
        )
        if record != self._observed:
            self._observed = record
            self._observed_duration = max(float(record[1] or 0), self.lease_duration)
            self._observed_time = self._monotonic()

    def _observed_valid(self) -> bool:
        """The last record seen has not gone a lease duration unchanged (on this replica's own clock)."""
        return self._observed is not None and self._monotonic() < self._observed_time + self._observed_duration

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this identity holds the lease afterwards."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        now = self._now()
        self._attempt_start = self._write_sent = self._monotonic()
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
                    lease_duration_seconds=self._duration_seconds(),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            try:
                # What is left of the renew deadline after the read: one attempt, read and write, ends within it.
                timeout = self._call_timeout()
                self._write_sent = self._monotonic()
                created = self.api.create_namespaced_lease(self.namespace, body, _request_timeout=timeout)
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            self._observe(created if getattr(created, "spec", None) is not None else body)
            return True
        self._observe(lease)
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        patch: dict[str, Any] = {
            "holderIdentity": self.identity,
            "renewTime": _micro(now),
            "leaseDurationSeconds": self._duration_seconds(),
        }
        if holder != self.identity:
            if holder and self._observed_valid():
                return False  # someone else holds a lease whose record changed less than a lease ago
            patch["acquireTime"] = _micro(now)
            patch["leaseTransitions"] = (spec.lease_transitions or 0) + 1
        # What is left of the renew deadline after the read, not the whole of it again: given as much as the
        # read, a renewal whose read was slow ran on to twice the deadline, past the lease a standby waits out.
        timeout = self._call_timeout()
        self._write_sent = self._monotonic()
        return self._patch(lease, patch, timeout)

    def _duration_seconds(self) -> int:
        """``leaseDurationSeconds`` as written: whole seconds, rounded up (the API server refuses 0)."""
        return max(1, math.ceil(self.lease_duration))

    def _call_timeout(self) -> float:
        """How long one API call may take: a leader's must answer before its renew deadline passes.

        Without a bound, a renewal hung in the network keeps this replica believing it leads while the
        lease expires and another takes it (two leaders); with it, the call fails in time and the loop
        steps down before ``lease_duration`` lets anyone else in (as client-go bounds its renew context).
        Asked again before each call of an attempt, so the read and the write share what is left. A candidate's
        attempt (read and write) ends within one renew deadline too: counted from when it began (see :meth:`run`),
        an acquisition whose calls took twice the deadline started leading with none of it left.
        """
        since = self._last_renew if self.leading and self._last_renew else self._attempt_start
        if not since:
            return self.renew_deadline
        left = self.renew_deadline - (self._monotonic() - since)
        return max(0.05, min(left, self.renew_deadline))

    def _held_by_other(self) -> bool:
        """The last Lease record read names another holder."""
        return self._observed is not None and self._observed[0] not in ("", self.identity)

    def _patch(self, lease: Any, spec: dict[str, Any], timeout: float | None = None) -> bool:
        """Merge-patch the spec, guarded by the read resourceVersion (409 means another writer won)."""
        from kubernetes.client.exceptions import ApiException

        body: dict[str, Any] = {"spec": spec}
        rv = lease.metadata.resource_version if lease.metadata else None
        if rv:
            body["metadata"] = {"resourceVersion": rv}
        try:
            patched = self.api.patch_namespaced_lease(self.name, self.namespace, body,
                                                      _request_timeout=timeout or self.renew_deadline)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        if getattr(patched, "spec", None) is not None:
            self._observe(patched)
        return True

    def close(self, election: threading.Thread) -> None:
        """Stop campaigning, ``election`` being the thread running :meth:`run`: its loop releases the lease as it
        ends; released from here only if it has not ended within a renewal (releasing beside it raced with a
        renewal in flight, which could take the lease back during shutdown)."""
        self.stop.set()
        election.join(self.renew_deadline + self.retry_period)
        if election.is_alive():
            self.release()

    def release(self) -> None:
        """Give the lease up (holder emptied) so a standby need not wait for it to expire.

        Each call is bounded by the renew deadline, and an API server that cannot be reached only costs the
        standby the lease's expiry: this replica stops leading either way (a shutdown never hangs on it)."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if not self.leading:
            return
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.renew_deadline)
            if lease.spec and lease.spec.holder_identity == self.identity:
                # renewTime in the past only for replicas that still judge expiry by wall clock (an older
                # release during a rolling upgrade); the empty holder is what lets a standby in at once.
                past = self._now() - timedelta(seconds=self.lease_duration + 1)
                self._patch(lease, {"holderIdentity": "", "renewTime": _micro(past)})
        except ApiException as exc:
            log.warning("leader election: could not release lease %s/%s: %s", self.namespace, self.name, exc.reason)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("leader election: could not release lease %s/%s: API server not reachable (%s)",
                        self.namespace, self.name, type(exc).__name__)
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
            mono = self._monotonic()
            if ok:
                # From when the write was sent, not when its answer came: a standby's expiry clock starts when it
                # reads the write, which the API server may apply long before its answer reaches this replica (a
                # renewal answered 1.2 s late kept a leading 1.2 s past the standby taking over). Not from before
                # the read either: the write cannot land before it is sent, and charging the read's latency too had
                # a lone leader whose API server answered 2.2 s late flap every ~6 s at the chart's timings.
                self._last_renew = self._write_sent
                self._set(True)
            elif self.leading and (self._held_by_other() or mono - self._last_renew > self.renew_deadline):
                # The Lease names another holder (taken over, handed over, deleted and created again): lost now,
                # not a renew deadline from now.
                self._set(False)
            elif self.leading and not ok:
                pass  # a failed renew inside the deadline: keep leading, retry soon
            self.stop.wait(self.retry_period)
        self.release()
