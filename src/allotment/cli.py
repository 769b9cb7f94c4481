"""The ``allotment`` command: ``serve``, ``demo`` and ``migrate``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import click

from allotment.config import DEFAULT_DATABASE, Settings, parse_origins


@click.group()
@click.version_option(package_name="allotment")
def main() -> None:
    """Allotment: entitlements, usage limits and credits, answered on every request."""


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
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    envvar="ALLOTMENT_LOG_LEVEL",
    show_envvar=True,
)
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
