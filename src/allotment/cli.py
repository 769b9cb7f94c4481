"""The ``allotment`` command: ``serve``, ``demo``, ``migrate`` and ``catalog``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from allotment.catalog_cli import catalog
from allotment.config import DEFAULT_DATABASE, Settings, parse_origins
from allotment.webhook_listener import webhooks

if TYPE_CHECKING:
    from allotment.sdk import Fallback


log_level_option = click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    envvar="ALLOTMENT_LOG_LEVEL",
    show_envvar=True,
)


@click.group()
@click.version_option(package_name="allotment")
def main() -> None:
    """Allotment: entitlements, usage limits and credits, answered on every request."""


main.add_command(catalog)
main.add_command(webhooks)


@main.command()
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"SQLite database file (default: $ALLOTMENT_DB or ./{DEFAULT_DATABASE}).",
)
@click.option(
    "--database-url",
    default=None,
    help="sqlite:///PATH or memory: (default: $ALLOTMENT_DATABASE_URL, else --db).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="ALLOTMENT_HOST", show_envvar=True
)
@click.option(
    "--port", default=8080, show_default=True, type=int, envvar="ALLOTMENT_PORT", show_envvar=True
)
@click.option(
    "--demo",
    is_flag=True,
    envvar="ALLOTMENT_DEMO",
    show_envvar=True,
    help="Load the demo catalog and customers first.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="A browser origin (https://app.example.com, or *) that may call the client-key routes;"
    " repeatable (default: $ALLOTMENT_CORS_ORIGINS, comma-separated; none: CORS off).",
)
@log_level_option
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    envvar="ALLOTMENT_LOG_FORMAT",
    show_envvar=True,
    help="text lines, or one JSON object per line.",
)
@click.option(
    "--access-log-sample",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    envvar="ALLOTMENT_ACCESS_LOG_SAMPLE",
    show_envvar=True,
    help="The share of requests the access log writes a line for (0: none, 1: all).",
)
@click.option(
    "--shutdown-timeout",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    envvar="ALLOTMENT_SHUTDOWN_TIMEOUT",
    show_envvar=True,
    help="Seconds requests in flight may take to finish once SIGTERM or SIGINT arrives.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1, max=256),
    envvar="ALLOTMENT_WORKERS",
    show_envvar=True,
    help="Processes answering on the one port, acting as one service through the database.",
)
def serve(
    database: Path | None,
    database_url: str | None,
    host: str,
    port: int,
    demo: bool,
    cors_origins: tuple[str, ...],
    log_level: str,
    log_format: str,
    access_log_sample: float,
    shutdown_timeout: int,
    workers: int,
) -> None:
    """Serve the HTTP API (every option may also be set in the environment: docs/operations.md)."""
    import sys

    from allotment.api.logs import configure_logging
    from allotment.api.server import STARTUP_FAILURE
    from allotment.api.server import serve as serve_api
    from allotment.api.workers import WorkerSetup, serve_workers
    from allotment.bootstrap import UnsupportedDatabase, open_store

    configure_logging(log_level, log_format, access_log_sample)
    try:
        settings = Settings.from_environment(
            database_path=database,
            database_url=database_url,
            cors_origins=parse_origins(cors_origins) or None,
            access_log_sample=access_log_sample,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    if workers > 1:
        _refuse_for_workers(settings)
    try:
        # Refuses a database this build cannot open, at once, and brings its schema to the
        # newest version before any worker starts.
        open_store(settings).close()
    except UnsupportedDatabase as error:
        raise click.UsageError(str(error)) from error
    # Through the log, so that with --log-format json every line on stderr is JSON.
    log = logging.getLogger("allotment.serve")
    if demo:
        _load_demo(settings, announce=False, progress=log.info)
    url = settings.database_url
    where = settings.database_path if url is None else _without_password(url)
    log.info("Allotment on http://%s:%d (database %s)", host, port, where)
    if settings.admin_key is None:
        log.warning("No ALLOTMENT_ADMIN_KEY is set: create keys with `allotment demo` or set it.")
    if workers == 1:
        serve_api(
            settings, host=host, port=port, log_level=log_level, shutdown_timeout=shutdown_timeout
        )
        return
    setup = WorkerSetup(settings, log_level, log_format, access_log_sample, shutdown_timeout)
    try:
        status = serve_workers(setup, host=host, port=port, workers=workers)
    except OSError as error:  # the port: in use, or not ours to take
        log.error("cannot listen on %s:%d: %s", host, port, error)
        sys.exit(STARTUP_FAILURE)
    sys.exit(status)


def _refuse_for_workers(settings: Settings) -> None:
    """What --workers cannot share between its processes."""
    url = settings.database_url
    if url is not None and url.lower().startswith("memory:"):
        raise click.UsageError(
            "--workers needs a database the processes share: a memory: database lives in one"
            " process (use --db PATH or a postgresql:// URL)."
        )
    if settings.test_clock:
        raise click.UsageError(
            "--workers cannot run with ALLOTMENT_TEST_CLOCK: each process would have a test"
            " clock of its own (use --workers 1)."
        )


@main.command()
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"SQLite database file (default: $ALLOTMENT_DB or ./{DEFAULT_DATABASE}).",
)
def demo(database: Path | None) -> None:
    """Load the demo catalog and customers (idempotent) and print what to try."""
    _load_demo(Settings.from_environment(database_path=database), announce=True)


@main.command()
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"SQLite database file (default: $ALLOTMENT_DB or ./{DEFAULT_DATABASE}).",
)
@click.option(
    "--database-url",
    default=None,
    help="sqlite:///PATH or postgresql://USER@HOST/NAME (default: $ALLOTMENT_DATABASE_URL,"
    " else --db).",
)
def migrate(database: Path | None, database_url: str | None) -> None:
    """Bring the database schema to the newest version (processes that migrate one database at
    once take turns)."""
    import sqlalchemy.exc

    from allotment.bootstrap import sqlite_path
    from allotment.storage.migrate import is_postgresql, sqlite_url, upgrade_to_latest

    try:
        settings = Settings.from_environment(database_path=database, database_url=database_url)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    url = settings.database_url
    if url is None:
        url, where = sqlite_url(settings.database_path), str(settings.database_path)
    elif is_postgresql(url):
        where = _without_password(url)
    elif url.lower().startswith("sqlite:"):
        try:
            url, where = sqlite_url(sqlite_path(url)), url
        except ValueError as error:
            raise click.UsageError(str(error)) from error
    else:
        raise click.UsageError(
            "migrate takes sqlite:///PATH or postgresql://USER@HOST/NAME (memory: has no schema)."
        )
    try:
        upgrade_to_latest(url)
    except sqlalchemy.exc.OperationalError as error:
        raise click.ClickException(f"{where}: cannot migrate: {error.orig}") from error
    click.echo(f"{where}: schema is current.")


def _without_password(url: str) -> str:
    """The URL to print: a password in it is replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{parts.username or ''}:***@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@main.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "markdown"]),
    default="json",
    show_default=True,
    help="The OpenAPI document, or the reference in docs/api.md made from it.",
)
def openapi(output_format: str) -> None:
    """Print the HTTP API's description (what GET /openapi.json serves)."""
    import msgspec

    from allotment.api.openapi.document import document, document_bytes
    from allotment.api.openapi.markdown import render

    if output_format == "markdown":
        click.echo(render(document()), nl=False)
    else:
        click.echo(msgspec.json.format(document_bytes(), indent=2).decode())


@main.command()
@click.option(
    "--upstream",
    required=True,
    envvar="ALLOTMENT_UPSTREAM",
    show_envvar=True,
    help="The service's base URL (http://allotment.internal:8080).",
)
@click.option(
    "--api-key",
    required=True,
    envvar="ALLOTMENT_API_KEY",
    show_envvar=True,
    help="A server-scope key: the sidecar calls the service with it for every app it serves.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The sidecar has no authentication: whoever reaches it acts with --api-key, so it"
    " listens on loopback unless told otherwise.",
)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--fallback",
    "fallback_file",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON: feature id (or * for any) -> a partial check result with has_access, answered"
    " (is_fallback: true) for what the cache never saw while the service is unreachable"
    " (default: denied).",
)
@click.option(
    "--buffer",
    "buffer_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("allotment-sidecar-buffer.db"),
    help="SQLite file usage reports wait in until delivered (default:"
    " allotment-sidecar-buffer.db in the current directory); reports left there are"
    " delivered at the next start.",
)
@click.option(
    "--max-staleness",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a cached answer may age without news from the service; older ones are read"
    " again, and while they cannot be, the fallback answers.",
)
@click.option(
    "--offline",
    "offline_policies",
    multiple=True,
    metavar="FEATURE=deny|cache|allow",
    help="What an enforced usage report of FEATURE (* for any) does while the service is"
    " unreachable: refuse it, decide by the cache, or allow it (default: cache); repeatable.",
)
@log_level_option
def sidecar(
    upstream: str,
    api_key: str,
    host: str,
    port: int,
    fallback_file: Path | None,
    buffer_path: Path,
    max_staleness: float,
    offline_policies: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve the request path on loopback for apps in any language: checks and entitlements
    from a local cache kept current by the change feed, usage buffered until delivered,
    reservations passed through, and /livez, /readyz and /metrics."""
    import sys

    from allotment.api.logs import configure_logging
    from allotment.sdk import Client
    from allotment.sidecar.server import serve as serve_sidecar

    if not upstream.startswith(("http://", "https://")):
        raise _OptionError(f"--upstream {upstream}: expected an http:// or https:// URL")
    offline = _offline_policies(offline_policies)
    fallback = None if fallback_file is None else _load_fallback(fallback_file)
    configure_logging(log_level, "text", 0.0)
    if log_level != "debug":  # a line for every state read and every report delivered
        logging.getLogger("httpx").setLevel(logging.WARNING)
    client = Client(
        upstream,
        api_key=api_key,
        fallback=fallback,
        buffer_path=buffer_path,
        max_staleness=max_staleness,
        offline=offline,
    )
    log = logging.getLogger("allotment.sidecar")
    log.info(
        "Allotment sidecar on http://%s:%d for %s (buffer %s)", host, port, upstream, buffer_path
    )
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "The sidecar has no authentication: whoever reaches %s acts with its key.", host
        )
    sys.exit(serve_sidecar(client, host=host, port=port, log_level=log_level))


class _OptionError(click.ClickException):
    """A bad option value: one line on stderr naming the option, and click's usage-error exit
    status (2), rather than a traceback or the whole usage text."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause wrote


def _offline_policies(given: tuple[str, ...]) -> dict[str, str]:
    """``FEATURE=POLICY`` options as the ``Client``'s ``offline`` mapping."""
    from allotment.sdk import OfflinePolicy

    choices = [policy.value for policy in OfflinePolicy]
    policies: dict[str, str] = {}
    for option in given:
        feature, _, policy = option.partition("=")
        if not feature or policy not in choices:
            raise _OptionError(f"--offline {option}: expected FEATURE={'|'.join(choices)}")
        policies[feature] = policy
    return policies


def _load_fallback(path: Path) -> Fallback:
    import msgspec

    from allotment.sdk import Fallback

    try:
        return Fallback.load(path)
    except OSError as error:
        raise _OptionError(f"--fallback {path}: {error.strerror or error}") from error
    except (ValueError, msgspec.MsgspecError) as error:  # not JSON, or not check results
        reason = str(error).removeprefix(f"{path}: ")
        raise _OptionError(f"--fallback {path}: {reason}") from error


def _load_demo(
    settings: Settings, *, announce: bool, progress: Callable[[str], None] | None = None
) -> None:
    from allotment.api.services import Services
    from allotment.demo import load_demo

    services = Services.open(settings)
    try:
        summary = asyncio.run(
            load_demo(services, progress=progress or (lambda line: click.echo(line, err=True)))
        )
    finally:
        services.close()
    if announce:
        click.echo(summary)
