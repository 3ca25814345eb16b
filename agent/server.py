"""Serve the API, dashboard and admission webhook under uvicorn with TLS, reloading the certificate on change.

Certificates are the second most common webhook outage (anchors.md §2.3-2.4): cert-manager or a rotator
rewrites the mounted Secret files, and a server that loaded them once keeps presenting the old, expiring
leaf. ``run_server`` watches the cert and key files and loads the new pair into the live ``SSLContext``;
new TLS handshakes use it at once, with no restart and no dropped connections. A pair that does not load
(half-written during rotation) is logged and retried on the next poll, the old pair staying in use.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

import uvicorn

log = logging.getLogger("veu.server")


class CertReloader:
    """Polls ``cert``/``key`` (mtime, size, inode) and reloads them into ``ctx`` when they change."""

    def __init__(self, ctx: ssl.SSLContext, cert: str, key: str, interval: float = 2.0) -> None:
        self.ctx, self.cert, self.key, self.interval = ctx, cert, key, interval
        self._stamp = self._stat()
        self._stop = threading.Event()
        self.reloads = 0
        self._thread = threading.Thread(target=self._run, name="cert-reloader", daemon=True)

    def _stat(self) -> tuple[tuple[float, int, int], ...]:
        out = []
        for p in (self.cert, self.key):
            try:
                st = os.stat(p)
                out.append((st.st_mtime, st.st_size, st.st_ino))
            except OSError:
                out.append((0.0, 0, 0))
        return tuple(out)

    def check(self) -> bool:
        """Reload if the files changed; True when a new pair was loaded."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        try:
            self.ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS certificate changed but does not load yet (%s); keeping the previous one", exc)
            return False
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def start(self) -> CertReloader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


# How long an idle client connection is kept open. The API server re-uses its connections to a webhook;
# closing them after uvicorn's default 5 s would put a TLS handshake in front of the next review.
KEEP_ALIVE_SECONDS = 30


# uvicorn's --log-level names (it registers TRACE with the logging module).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _readable(option: str, path: str) -> None:
    from policies.errors import PolicyError

    f = Path(path)
    if not f.exists():
        raise PolicyError(f"{option}: {path}: no such file")
    if not f.is_file():
        raise PolicyError(f"{option}: {path}: not a file")
    if not os.access(f, os.R_OK):
        raise PolicyError(f"{option}: {path}: cannot read it (permission denied)")


def check_options(tls_cert: str | None, tls_key: str | None, client_ca: str | None = None,
                  log_level: str = "info") -> None:
    """Refuse bad ``veuctl serve`` options, naming the option, before anything else runs: no store is opened or
    migrated and no log line written for a server that cannot start (a PEM pair that does not load, too)."""
    from policies.errors import PolicyError

    if log_level.lower() not in LOG_LEVELS:
        raise PolicyError(f"--log-level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if bool(tls_cert) != bool(tls_key):
        given, missing = ("--tls-cert", "--tls-key") if tls_cert else ("--tls-key", "--tls-cert")
        raise PolicyError(f"{missing}: required with {given}; give both files, or neither for plain HTTP")
    if client_ca is not None and not tls_cert:
        raise PolicyError("--client-ca: requires --tls-cert/--tls-key (client certificates need TLS)")
    if tls_cert and tls_key:
        _readable("--tls-cert", tls_cert)
        _readable("--tls-key", tls_key)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise PolicyError(f"--tls-cert/--tls-key: {tls_cert} and {tls_key} do not load as a PEM certificate "
                              f"and its private key ({getattr(exc, 'reason', None) or exc})") from None
    if client_ca is not None:
        _readable("--client-ca", client_ca)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise PolicyError(f"--client-ca: {client_ca} does not load as PEM CA certificates "
                              f"({getattr(exc, 'reason', None) or exc})") from None


def build_config(host: str, port: int, tls_cert: str | None, tls_key: str | None, database_url: str | None,
                 log_level: str = "info", *, webhook_only: bool = False,
                 client_ca: str | None = None, webhook: bool = True) -> uvicorn.Config:
    check_options(tls_cert, tls_key, client_ca, log_level)  # before the app (and its store) exists
    from agent.api.app import create_app, create_webhook_app

    app = create_webhook_app(database_url) if webhook_only else create_app(database_url, webhook=webhook)
    tls_extra: dict[str, object] = {}
    if client_ca:
        # Only the kube-apiserver (configured with a client certificate from this CA) may call.
        tls_extra = {"ssl_ca_certs": client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(
        app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
        log_level=log_level, access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS, **tls_extra,  # type: ignore[arg-type]
    )
    config.load()
    return config


def configure_logging(level: str) -> None:
    """Send the product's own loggers (``veu.*``) to stderr at ``level``, as uvicorn's are: uvicorn's
    ``log_level`` configures only its own loggers, so the webhook's and API's records were dropped below
    WARNING whatever ``--log-level`` said."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    root.setLevel(level.upper())


def run_server(host: str, port: int, tls_cert: str | None, tls_key: str | None, database_url: str | None,
               *, reload_interval: float = 2.0, log_level: str = "info", webhook_only: bool = False,
               client_ca: str | None = None, webhook: bool = True, metrics_port: int | None = None) -> None:
    """Run until interrupted; with TLS, cert/key changes are picked up every ``reload_interval`` seconds."""
    configure_logging(log_level)
    config = build_config(host, port, tls_cert, tls_key, database_url, log_level, webhook_only=webhook_only,
                          client_ca=client_ca, webhook=webhook)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host)
    server = uvicorn.Server(config)
    reloader = None
    if config.ssl is not None and tls_cert and tls_key:
        reloader = CertReloader(config.ssl, tls_cert, tls_key, reload_interval).start()
    try:
        server.run()
    finally:
        if reloader is not None:
            reloader.stop()
