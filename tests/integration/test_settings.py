"""``allotment serve`` reads every option from the environment too, and docs/operations.md lists
every option and variable in one table, which this test keeps in step with the code."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from allotment.bootstrap import open_store
from allotment.cli import main, serve
from allotment.config import Settings
from allotment.storage.sqlite.store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
_VARIABLE = re.compile(r"ALLOTMENT_[A-Z_]+")
_OPTION = re.compile(r"--[a-z][a-z-]*")


def settings_table() -> dict[str, str]:
    """The table under "### Settings": each variable by the option it sets (``—`` for none)."""
    text = OPERATIONS.read_text()
    section = text[text.index("### Settings") :]
    rows: dict[str, str] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] in {"option", ""} or set(cells[0]) <= {"-"}:
            continue
        options = _OPTION.findall(cells[0]) or ["—"]
        (variable,) = _VARIABLE.findall(cells[1])
        for option in options:
            rows[variable if option == "—" else option] = variable
    return rows


def serve_options() -> dict[str, click.Option]:
    options: dict[str, click.Option] = {}
    for param in serve.params:
        if isinstance(param, click.Option):
            (long_name,) = (name for name in param.opts if name.startswith("--"))
            options[long_name] = param
    return options


def test_the_table_lists_every_option_of_serve_with_its_variable() -> None:
    table = settings_table()
    options = serve_options()
    assert {name for name in table if name.startswith("--")} == set(options)
    for name, option in options.items():
        if option.envvar is not None:  # read by click; the others by Settings.from_environment
            assert table[name] == option.envvar, name
    config = (ROOT / "src" / "allotment" / "config.py").read_text()
    for name, variable in table.items():
        if name.startswith("--") and options[name].envvar is None:
            assert variable in config, f"{variable} ({name}) is read nowhere"


def test_the_table_lists_every_variable_the_code_reads() -> None:
    documented = set(settings_table().values())
    read = {
        variable
        for source in (ROOT / "src").rglob("*.py")
        for variable in _VARIABLE.findall(source.read_text())
    }
    assert read <= documented, sorted(read - documented)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``serve`` would have started, and how it configured its logs; nothing is started."""
    calls: list[dict[str, Any]] = []

    def record(settings: object, **options: Any) -> None:
        calls.append({"settings": settings, **options})

    def configure(level: str, log_format: str, access_sample: float) -> None:
        calls.append({"log_level": level, "log_format": log_format, "sample": access_sample})

    monkeypatch.setattr("allotment.api.server.serve", record)
    monkeypatch.setattr("allotment.api.logs.configure_logging", configure)
    return calls


def test_serve_takes_its_options_from_the_environment_and_the_command_line_wins(
    tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    env = {
        "ALLOTMENT_DB": str(tmp_path / "from-env.db"),
        "ALLOTMENT_HOST": "127.0.0.2",
        "ALLOTMENT_PORT": "9123",
        "ALLOTMENT_LOG_LEVEL": "debug",
        "ALLOTMENT_LOG_FORMAT": "json",
        "ALLOTMENT_ACCESS_LOG_SAMPLE": "0.25",
        "ALLOTMENT_SHUTDOWN_TIMEOUT": "3",
        "ALLOTMENT_USAGE_KEY_RETENTION_DAYS": "30",
    }
    runner = CliRunner()
    result = runner.invoke(main, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    logs, started = served
    assert logs == {"log_level": "debug", "log_format": "json", "sample": 0.25}
    assert (started["host"], started["port"], started["log_level"]) == ("127.0.0.2", 9123, "debug")
    assert started["shutdown_timeout"] == 3
    assert started["settings"].database_path == tmp_path / "from-env.db"
    assert started["settings"].access_log_sample == 0.25
    assert started["settings"].usage_key_retention == timedelta(days=30)

    served.clear()
    options = ["--host", "127.0.0.3", "--port", "9124", "--log-format", "text"]
    options += ["--access-log-sample", "0", "--shutdown-timeout", "0"]
    options += ["--db", str(tmp_path / "from-option.db")]
    result = runner.invoke(main, ["serve", *options], env=env)
    assert result.exit_code == 0, result.output
    logs, started = served
    assert logs == {"log_level": "debug", "log_format": "text", "sample": 0.0}
    assert (started["host"], started["port"], started["shutdown_timeout"]) == ("127.0.0.3", 9124, 0)
    assert started["settings"].database_path == tmp_path / "from-option.db"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALLOTMENT_ACCESS_LOG_SAMPLE", "1.5"),
        ("ALLOTMENT_ACCESS_LOG_SAMPLE", "often"),
        ("ALLOTMENT_LOG_FORMAT", "xml"),
        ("ALLOTMENT_SHUTDOWN_TIMEOUT", "-1"),
        ("ALLOTMENT_PORT", "http"),
    ],
)
def test_a_wrong_value_in_the_environment_is_refused(
    tmp_path: Path, served: list[dict[str, Any]], variable: str, value: str
) -> None:
    env = {"ALLOTMENT_DB": str(tmp_path / "db.sqlite"), variable: value}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    assert variable in result.output
    assert served == []


@pytest.mark.parametrize("value", ["6", "a week", "-7"])
def test_a_usage_key_retention_under_a_week_or_not_a_number_is_refused(
    tmp_path: Path, served: list[dict[str, Any]], value: str
) -> None:
    env = {"ALLOTMENT_DB": str(tmp_path / "db.sqlite"), "ALLOTMENT_USAGE_KEY_RETENTION_DAYS": value}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    assert "ALLOTMENT_USAGE_KEY_RETENTION_DAYS" in result.output
    assert not [call for call in served if "settings" in call]  # nothing was started


@pytest.mark.parametrize(
    ("variable", "field", "default", "pragma", "applied", "refused"),
    [
        (
            "ALLOTMENT_SQLITE_CACHE_MIB",
            "sqlite_cache_mib",
            64,
            "cache_size",
            -16 * 1024,  # in KiB, negative: a size rather than a page count
            ("0", "-1", "lots", "1e3", "1048577"),
        ),
        (
            "ALLOTMENT_SQLITE_WAL_PAGES",
            "sqlite_wal_pages",
            10_000,
            "wal_autocheckpoint",
            16,
            ("0", "-1", "many", "1e3", "1000001"),
        ),
    ],
)
def test_sqlites_page_cache_and_log_length_are_set_by_settings(
    tmp_path: Path,
    variable: str,
    field: str,
    default: int,
    pragma: str,
    applied: int,
    refused: tuple[str, ...],
) -> None:
    assert getattr(Settings(), field) == default
    assert getattr(Settings.from_environment({variable: "16"}), field) == 16
    for value in refused:
        with pytest.raises(ValueError, match=variable):
            Settings.from_environment({variable: value})
    store = open_store(Settings(database_path=tmp_path / "db.sqlite", **{field: 16}))
    try:
        assert isinstance(store, SqliteStore)
        for connection in (store._connection, store._reader):
            assert connection.execute(f"PRAGMA {pragma}").fetchone() == (applied,)
    finally:
        store.close()
