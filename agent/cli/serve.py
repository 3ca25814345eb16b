"""`veuctl serve`: run the API, dashboard and admission webhook (HTTPS when given a certificate)."""

from __future__ import annotations

import typer

from agent.cli._common import DbOpt, db_url, listen_port, not_blank


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 inside a pod)."),
    port: int = typer.Option(8443, "--port", min=1, max=65535, help="Port to listen on."),
    tls_cert: str | None = typer.Option(None, "--tls-cert", help="PEM certificate (reloaded when it changes)."),
    tls_key: str | None = typer.Option(None, "--tls-key", help="PEM private key."),
    log_level: str = typer.Option("info", "--log-level", help="critical | error | warning | info | debug | trace."),
    webhook_only: bool = typer.Option(False, "--webhook-only",
                                      help="Expose only /validate and the probes on this port (no API or dashboard)."),
    no_webhook: bool = typer.Option(False, "--no-webhook",
                                    help="Serve the API, dashboard and /metrics without /validate (the API port when "
                                         "the webhook has its own --webhook-only port)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port",
                                            help="Also serve Prometheus /metrics over plain HTTP on this port (for a "
                                                 "--webhook-only process, whose own port exposes nothing else)."),
    client_ca: str | None = typer.Option(None, "--client-ca",
                                         help="PEM CA bundle: only clients with a certificate it signs (the API "
                                              "server's) complete the handshake; needs --tls-cert/--tls-key; TLS "
                                              "1.3 only; reloaded when it changes."),
    client_name: list[str] | None = typer.Option(None, "--client-name",
                                                 help="Accept only a client certificate whose Subject CN or a DNS/URI "
                                                      "SAN equals this name (the API server's webhook client "
                                                      "certificate, e.g. kube-apiserver-webhook-client); repeat for "
                                                      "several; needs --client-ca. Without it any certificate the CA "
                                                      "signed gets in (a cluster CA signs every kubelet's)."),
    header_timeout: float = typer.Option(10.0, "--header-timeout",
                                         help="Seconds a client has to send a request's line and headers, from "
                                              "connecting or from its first byte after a response (else 408 and "
                                              "the connection closed)."),
    body_timeout: float = typer.Option(10.0, "--body-timeout",
                                       help="Window in seconds over which an unfinished request body must bring "
                                            "at least 500 bytes a second (else the connection is closed)."),
    db: str | None = DbOpt,
) -> None:
    """Serve /validate (the red-flag-28 webhook), /api/v1, the dashboard and /metrics."""
    from agent.server import check_options, run_server
    from policies.errors import PolicyError

    # Every option first, naming the one at fault: nothing is logged, opened or migrated for a server that
    # cannot start.
    for option, value in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--client-ca", client_ca)):
        # Blank is not left out: a blank --tls-cert and --tls-key served plain HTTP.
        not_blank(value, option, "give the PEM file, or leave the option out")
    client_names = tuple(client_name or ())
    check_options(tls_cert, tls_key, client_ca, log_level, header_timeout=header_timeout,
                  body_timeout=body_timeout, client_names=client_names)
    if webhook_only and no_webhook:
        raise PolicyError("--webhook-only/--no-webhook: choose one (each port serves one of the two)")
    if metrics_port is not None and (not 0 < metrics_port < 65536 or metrics_port == port):
        raise PolicyError(f"--metrics-port: {metrics_port} must be a free TCP port other than --port")
    listen_port(host, port)
    if not webhook_only:
        from agent.obligations import notify_settings

        notify_settings()  # VEU_NOTIFY_* (the API's reminder job): a bad value named before any store is opened
    run_server(host, port, tls_cert, tls_key, db_url(db), log_level=log_level.lower(), webhook_only=webhook_only,
               client_ca=client_ca, webhook=not no_webhook, metrics_port=metrics_port,
               header_timeout=header_timeout, body_timeout=body_timeout, client_names=client_names)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
