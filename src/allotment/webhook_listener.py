"""``allotment webhooks listen``: a receiver for trying webhooks out.

It serves one path on localhost, checks every delivery's signature with the endpoint's secret
(Standard Webhooks, through the ``standardwebhooks`` package, as a receiver would), prints one
line per event, and answers 204, or 400 to a delivery whose signature does not verify. With
``--fail`` it answers 503 to everything, to watch retries and the order they keep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click
from standardwebhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 1024 * 1024


def describe(event: dict[str, Any]) -> str:
    """One line for an event: its seq, type, customer and the first fields of its data."""
    data = event.get("data")
    fields = ""
    if isinstance(data, dict):
        shown = [f"{k}={json.dumps(v)}" for k, v in list(data.items())[:4]]
        fields = " " + " ".join(shown)
    customer = event.get("customer") or "-"
    return f"{event.get('seq', '?'):>6} {event.get('type', '?'):<26} {customer:<16}{fields}"


def make_handler(
    secret: str, fail: bool, echo: Callable[[str], None]
) -> type[BaseHTTPRequestHandler]:
    webhook = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                self._answer(413)
                return
            body = self.rfile.read(length)
            if fail:
                echo(f"  answered 503 to {self.headers.get('webhook-id')}")
                self._answer(503)
                return
            try:
                event = webhook.verify(body, {k.lower(): v for k, v in self.headers.items()})
            except WebhookVerificationError as error:
                echo(f"  refused {self.headers.get('webhook-id')}: {error}")
                self._answer(400)
                return
            echo(describe(event) if isinstance(event, dict) else str(event))
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per event is printed above

    return Handler


@click.group()
def webhooks() -> None:
    """Try webhooks out."""


@webhooks.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--secret",
    envvar="ALLOTMENT_WEBHOOK_SECRET",
    required=True,
    help="The endpoint's whsec_... secret (or ALLOTMENT_WEBHOOK_SECRET).",
)
@click.option("--fail", is_flag=True, help="Answer 503 to every delivery.")
def listen(host: str, port: int, secret: str, fail: bool) -> None:
    """Print every delivery whose signature verifies; answer 204 (or 503 with --fail)."""
    try:
        handler = make_handler(secret, fail, lambda line: click.echo(line))
    except Exception as error:  # the package refuses a secret it cannot decode
        raise click.BadParameter(f"not a webhook secret: {error}", param_hint="--secret") from error
    server = ThreadingHTTPServer((host, port), handler)
    click.echo(f"listening on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
