"""A PostgreSQL server for the tests that need one, on loopback, started once per test run.

``ALLOTMENT_TEST_POSTGRES_URL`` names a running server to use instead (a URL whose user may
create databases, e.g. ``postgresql://allotment@127.0.0.1:5432/postgres``). Otherwise the
server's programs (``initdb`` and ``pg_ctl``, from Debian's ``postgresql`` package: on ``PATH``
or under ``/usr/lib/postgresql/*/bin``) start a throwaway cluster in a temporary directory,
listening on 127.0.0.1 and a free port, with durability off (these tests do not test
PostgreSQL's own). Without them a test that needs PostgreSQL fails and says how to get it: it
never skips. Each test gets a database of its own, dropped after it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg
import pytest

URL_VARIABLE = "ALLOTMENT_TEST_POSTGRES_URL"
USER = "allotment"
_names = count()


@dataclass
class PostgresServer:
    url: str  # of its maintenance database, as a user that may create databases
    _migrated: str | None = None  # a database at the newest schema, copied for each test

    def database_url(self, name: str) -> str:
        base, _, _ = self.url.rpartition("/")
        return f"{base}/{name}"

    @contextlib.contextmanager
    def fresh_database(self, *, migrated: bool = False) -> Iterator[str]:
        """A new database, dropped after: empty, or (``migrated``) a copy of one brought to the
        newest schema once per run, which is faster than migrating each."""
        name = f"allotment_test_{os.getpid()}_{next(_names)}"
        template = f' TEMPLATE "{self._template()}"' if migrated else ""
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"{template}')
        try:
            yield self.database_url(name)
        finally:
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _template(self) -> str:
        if self._migrated is None:
            from allotment.storage.migrate import upgrade_to_latest

            name = f"allotment_template_{os.getpid()}"
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                admin.execute(f'CREATE DATABASE "{name}"')
            upgrade_to_latest(self.database_url(name))
            self._migrated = name
        return self._migrated


def _program(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} is not installed: install Debian's postgresql package"
            f" (apt-get install postgresql) or set {URL_VARIABLE} to a running server.",
            pytrace=False,
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the postgres user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def throwaway_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A cluster in a temporary directory, stopped and removed after; ``durable`` keeps
    PostgreSQL's own durability settings (benchmarks), which tests turn off."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    directory = Path(tempfile.mkdtemp(prefix="allotment-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data = directory / "data"
    port = _free_port()
    initialize = [initdb, "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync"]
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    start = [pg_ctl, "-D", str(data), "-l", str(directory / "log"), "-o", options, "-w", "start"]
    try:
        for command in ([*initialize, "--locale=C.UTF-8"], start):
            subprocess.run(_as_server_user(command), check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        log = directory / "log"
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(
            f"could not start PostgreSQL: {error.cmd[0]}: {error.stderr or error.stdout}"
            + (log.read_text() if log.exists() else ""),
            pytrace=False,
        )
    try:
        yield PostgresServer(f"postgresql://{USER}@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def transaction_pooler(server: PostgresServer) -> Iterator[str]:
    """PgBouncer (Debian's ``pgbouncer`` package) in transaction mode in front of ``server``, on
    loopback: the URL of its listener, which takes a database name like the server's."""
    pgbouncer = shutil.which("pgbouncer") or shutil.which("/usr/sbin/pgbouncer")
    if pgbouncer is None:
        pytest.fail(
            "PgBouncer is not installed: install Debian's pgbouncer package"
            " (apt-get install pgbouncer).",
            pytrace=False,
        )
    target = psycopg.conninfo.conninfo_to_dict(server.url)
    directory = Path(tempfile.mkdtemp(prefix="allotment-pgbouncer-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    port = _free_port()
    (directory / "users.txt").write_text(f'"{target.get("user", USER)}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.get('host', '127.0.0.1')} port={target.get('port', 5432)}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {directory}\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 20\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
    )
    if os.geteuid() == 0:
        for item in directory.iterdir():
            shutil.chown(item, "postgres")
    config = str(directory / "pgbouncer.ini")
    try:
        subprocess.run(
            _as_server_user([pgbouncer, "-d", config]), check=True, capture_output=True, text=True
        )
        for _ in range(100):  # it listens a moment after it forks
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield f"postgresql://{target.get('user', USER)}@127.0.0.1:{port}"
    finally:
        pid = directory / "pgbouncer.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid.read_text()), signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield PostgresServer(given)
        return
    with throwaway_server() as server:
        yield server
