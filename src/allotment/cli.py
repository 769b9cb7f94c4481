"""The ``allotment`` command: ``serve``, ``demo`` and ``migrate``."""

from __future__ import annotations

import asyncio
import logging
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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Load the demo catalog and customers first.")
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
)
def serve(
    database: Path | None,
    database_url: str | None,
    host: str,
    port: int,
    demo: bool,
    cors_origins: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from allotment.api.app import create_app
    from allotment.api.protocol import BoundedHttpToolsProtocol
    from allotment.bootstrap import UnsupportedDatabase, open_store

    try:
        settings = Settings.from_environment(
            database_path=database,
            database_url=database_url,
            cors_origins=parse_origins(cors_origins) or None,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    try:
        open_store(settings).close()  # refuse a database this build cannot open, at once
    except UnsupportedDatabase as error:
        raise click.UsageError(str(error)) from error
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if demo:
        _load_demo(settings, announce=False)
    where = settings.database_url or settings.database_path
    click.echo(f"Allotment on http://{host}:{port} (database {where})", err=True)
    if settings.admin_key is None:
        click.echo(
            "No ALLOTMENT_ADMIN_KEY is set: create keys with `allotment demo` or set it.", err=True
        )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        http=BoundedHttpToolsProtocol,  # httptools, with a limit on request heads
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
@click.option("--db", "database", type=click.Path(dir_okay=False, path_type=Path), default=None)
def migrate(database: Path | None) -> None:
    """Bring the database schema to the newest version."""
    from allotment.storage.migrate import sqlite_url, upgrade_to_latest

    settings = Settings.from_environment(database_path=database)
    upgrade_to_latest(sqlite_url(settings.database_path))
    click.echo(f"{settings.database_path}: schema is current.")


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


def _load_demo(settings: Settings, *, announce: bool) -> None:
    from allotment.api.services import Services
    from allotment.demo import load_demo

    services = Services.open(settings)
    try:
        summary = asyncio.run(load_demo(services, progress=lambda line: click.echo(line, err=True)))
    finally:
        services.close()
    if announce:
        click.echo(summary)
