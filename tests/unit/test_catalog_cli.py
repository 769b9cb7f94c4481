"""``allotment catalog``: export, apply and schema, against a fake service on loopback that
records each request and answers what the test set up."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import msgspec
import pytest
import yaml
from click.testing import CliRunner, Result

from allotment.catalog_files import CatalogLoader, dump_yaml, inline_yaml
from allotment.cli import main

DEMO_CATALOG = Path(__file__).parents[2] / "src" / "allotment" / "demo_catalog.yaml"
KEY = "test-admin-key"

# The smallest and the largest quantities the contract allows, which a float would not keep.
TINY, HUGE = "0.000001", "999999999999.999999"
CATALOG_BODY = (
    b'{"features":{"gpu-minutes":{"name":"GPU minutes","kind":"metered","unit":null}},'
    b'"currencies":{"ai-credits":{"name":"Credits","unit":"credit","burn_order":["priority"]}},'
    b'"products":{"coder":{"name":"Coder"}},'
    b'"plans":{"team":{"product":"coder","name":"Team","parent":null,"trial_days":14,'
    b'"billing_period":"month","entitlements":{"gpu-minutes":{"limit":' + HUGE.encode() + b","
    b'"reset":"month","enforcement":"hard","credit_cost":{"currency":"ai-credits",'
    b'"per_unit":' + TINY.encode() + b"}}},"
    b'"credits":{"ai-credits":{"amount":1000,"every":"month","category":"paid",'
    b'"cost_basis":0.01,"overdraft_limit":null}}}},'
    b'"addons":{}}'
)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes


@dataclass
class FakeService:
    """What the fake service answers each method with, and every request it received."""

    url: str = ""
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def answer(self, method: str, status: int, body: bytes | dict[str, Any]) -> None:
        encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[method] = (status, encoded)


def _handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            target = urlsplit(self.path)
            service.requests.append(
                Recorded(
                    self.command,
                    target.path,
                    parse_qs(target.query),
                    dict(self.headers.items()),
                    self.rfile.read(length),
                )
            )
            status, body = service.answers.get(self.command, (500, b"no answer set up"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_PUT(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows what the test asserts."""

    return Handler


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll, so that each test's shutdown does not wait half a second.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


def run(*args: str, env: Mapping[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["catalog", *args], env=dict(env or {}))


def at(service: FakeService) -> list[str]:
    return ["--url", service.url, "--api-key", KEY]


def exact(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal)


def changes_answer(dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "changes": [
            {"kind": "feature", "id": "gpu-minutes", "action": "create", "fields": []},
            {"kind": "feature", "id": "sso", "action": "unchanged", "fields": []},
            {
                "kind": "plan",
                "id": "team",
                "action": "update",
                "version": 3,
                "fields": ["entitlements.ai-requests.limit", "entitlements.gpu-minutes"],
                "diff": {
                    "entitlements.ai-requests.limit": {"from": 1000, "to": 2000},
                    "entitlements.gpu-minutes": {
                        "from": None,
                        "to": {"limit": 100, "reset": "month", "enforcement": "hard"},
                    },
                },
            },
            {"kind": "plan", "id": "enterprise", "action": "update", "version": 4, "fields": []},
            {"kind": "plan", "id": "starter", "action": "unchanged", "version": 1, "fields": []},
        ],
    }


# -------------------------------------------------------------------------------------- export


def test_export_writes_yaml_with_every_digit(service: FakeService) -> None:
    service.answer("GET", 200, CATALOG_BODY)
    result = run("export", *at(service))
    assert result.exit_code == 0, result.output
    assert f"limit: {HUGE}\n" in result.stdout
    assert f"per_unit: {TINY}\n" in result.stdout
    assert "parent: null\n" in result.stdout
    assert "burn_order:\n      - priority\n" in result.stdout  # block style, list indented
    # The document's order, not sorted: features come first, plans before add-ons.
    assert [line for line in result.stdout.splitlines() if not line.startswith(" ")] == [
        "features:",
        "currencies:",
        "products:",
        "plans:",
        "addons: {}",
    ]
    (request,) = service.requests
    assert (request.method, request.path) == ("GET", "/v1/catalog")
    assert request.headers["Authorization"] == f"Bearer {KEY}"


def test_export_writes_json_with_every_digit(service: FakeService) -> None:
    service.answer("GET", 200, CATALOG_BODY)
    result = run("export", "--format", "json", *at(service))
    assert result.exit_code == 0, result.output
    assert f'"limit": {HUGE},\n' in result.stdout
    assert f'"per_unit": {TINY}\n' in result.stdout
    assert result.stdout.startswith('{\n  "features": {\n')
    assert exact(result.stdout.encode()) == exact(CATALOG_BODY)


@pytest.mark.parametrize("name", ["catalog.yaml", "catalog.json"])
def test_an_exported_file_applies_byte_for_byte(
    service: FakeService, tmp_path: Path, name: str
) -> None:
    service.answer("GET", 200, CATALOG_BODY)
    service.answer("PUT", 200, {"dry_run": False, "changes": []})
    exported = tmp_path / name
    assert run("export", "--output", str(exported), *at(service)).exit_code == 0
    if name.endswith(".json"):  # the format follows the file's name
        assert exported.read_text().startswith("{")
    result = run("apply", str(exported), *at(service))
    assert result.exit_code == 0, result.output
    put = service.requests[-1]
    assert (put.method, put.path, put.query) == ("PUT", "/v1/catalog", {})
    assert put.headers["Content-Type"] == "application/json"
    assert put.body == CATALOG_BODY


def test_export_to_a_directory_that_does_not_exist_says_so(
    service: FakeService, tmp_path: Path
) -> None:
    service.answer("GET", 200, CATALOG_BODY)
    result = run("export", "--output", str(tmp_path / "missing" / "c.yaml"), *at(service))
    assert result.exit_code == 1
    assert "missing" in result.stderr


# --------------------------------------------------------------------------------------- apply


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_apply_prints_each_change_and_the_counts(service: FakeService, tmp_path: Path) -> None:
    service.answer("PUT", 200, changes_answer(dry_run=False))
    result = run("apply", str(write(tmp_path, "c.yaml", "features: {}\n")), *at(service))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "+ feature gpu-minutes",
        "~ plan team (version 3)",
        "    entitlements.ai-requests.limit: 1000 → 2000",
        "    entitlements.gpu-minutes: (none) → {limit: 100, reset: month, enforcement: hard}",
        "~ plan enterprise (version 4): republished to follow its parent",
        "Applied: 1 created, 2 changed, 2 unchanged.",
    ]
    assert service.requests[0].query == {}


def test_a_dry_run_asks_for_one_and_says_nothing_changed(
    service: FakeService, tmp_path: Path
) -> None:
    service.answer("PUT", 200, changes_answer(dry_run=True))
    result = run(
        "apply", str(write(tmp_path, "c.yaml", "features: {}\n")), "--dry-run", *at(service)
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Dry run: nothing was changed."
    assert lines[1] == "+ feature gpu-minutes"
    assert lines[-1] == "2 unchanged"
    assert service.requests[0].query == {"dry_run": ["true"]}


def test_apply_reads_numbers_exactly_whatever_their_spelling(
    service: FakeService, tmp_path: Path
) -> None:
    service.answer("PUT", 200, {"dry_run": False, "changes": []})
    text = f"a: {HUGE}\nb: {TINY}\nc: 1.5e3\nd: 1e-6\ne: 12\nf: '7.25'\ng: 1_000.5\n"
    assert run("apply", str(write(tmp_path, "c.yaml", text)), *at(service)).exit_code == 0
    assert service.requests[0].body == (
        f'{{"a":{HUGE},"b":{TINY},"c":1500,"d":{TINY},"e":12,"f":"7.25","g":1000.5}}'.encode()
    )


def test_json_is_read_exactly_too(service: FakeService, tmp_path: Path) -> None:
    service.answer("PUT", 200, {"dry_run": False, "changes": []})
    text = json.dumps({"a": {"b": [1]}}).replace("1", HUGE)
    assert run("apply", str(write(tmp_path, "c.json", text)), *at(service)).exit_code == 0
    assert service.requests[0].body == f'{{"a":{{"b":[{HUGE}]}}}}'.encode()


def test_the_problems_of_a_refused_document_are_listed(
    service: FakeService, tmp_path: Path
) -> None:
    problems = [
        {"kind": "plan", "id": "team", "message": "entitlements.gpu: no feature 'gpu'."},
        {"kind": "addon", "id": "seat-pack", "message": "product: no product 'x'."},
    ]
    service.answer(
        "PUT",
        400,
        {
            "error": {
                "code": "invalid_request",
                "message": "The catalog has 2 problems.",
                "details": {"problems": problems},
            }
        },
    )
    result = run("apply", str(write(tmp_path, "c.yaml", "plans: {}\n")), *at(service))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "The catalog has 2 problems. (HTTP 400, invalid_request)" in result.stderr
    assert "  plan team: entitlements.gpu: no feature 'gpu'.\n" in result.stderr
    assert "  addon seat-pack: product: no product 'x'.\n" in result.stderr


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            403,
            {"error": {"code": "forbidden", "message": "The key lacks the scope.", "details": {}}},
            "The key lacks the scope. (HTTP 403, forbidden)",
        ),
        (502, b"<html>Bad gateway</html>", "HTTP 502 Bad Gateway from "),
    ],
)
def test_other_refusals_give_the_message_and_status(
    service: FakeService, tmp_path: Path, status: int, body: Any, said: str
) -> None:
    service.answer("PUT", status, body)
    result = run("apply", str(write(tmp_path, "c.yaml", "plans: {}\n")), *at(service))
    assert result.exit_code == 1
    assert said in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("broken.yaml", "plans:\n  team:\n    name: [Team\n", "broken.yaml, line 4"),
        ("broken.yaml", "plans:\n  team: {}\n team: {}\n", "broken.yaml, line 3"),
        ("twice.yaml", "plans:\n  team: {}\n  team: {}\n", "twice.yaml, line 3"),
        ("infinite.yaml", "a:\n  b: .inf\n", "infinite.yaml, line 2"),
        ("broken.json", '{\n  "plans": {\n    "team": }\n}', "broken.json, line 3"),
        ("nan.json", '{"a": NaN}', "nan.json: NaN is not a finite number"),
    ],
)
def test_a_broken_file_is_named_with_its_line_and_not_sent(
    service: FakeService, tmp_path: Path, name: str, text: str, where: str
) -> None:
    result = run("apply", str(write(tmp_path, name, text)), *at(service))
    assert result.exit_code == 1
    assert where in result.stderr
    assert service.requests == []


@pytest.mark.parametrize(
    ("text", "found"),
    [("- features\n", "a list"), ("", "an empty document"), ("features\n", "a string")],
)
def test_a_file_that_is_not_a_mapping_is_refused(
    service: FakeService, tmp_path: Path, text: str, found: str
) -> None:
    result = run("apply", str(write(tmp_path, "c.yaml", text)), *at(service))
    assert result.exit_code == 1
    assert "expected a mapping of sections" in result.stderr
    assert f"found {found}" in result.stderr
    assert service.requests == []


def test_an_unreachable_service_is_named(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = run(
        "apply", str(write(tmp_path, "c.yaml", "plans: {}\n")), "--url", url, "--api-key", KEY
    )
    assert result.exit_code == 1
    assert f"could not reach {url}" in result.stderr


def test_a_missing_key_is_a_usage_error(service: FakeService) -> None:
    result = run("export", "--url", service.url)
    assert result.exit_code == 2
    assert "ALLOTMENT_API_KEY" in result.stderr
    assert service.requests == []


def test_the_url_and_key_come_from_the_environment(service: FakeService) -> None:
    service.answer("GET", 200, CATALOG_BODY)
    result = run("export", env={"ALLOTMENT_URL": service.url, "ALLOTMENT_API_KEY": "from-env"})
    assert result.exit_code == 0, result.output
    assert service.requests[0].headers["Authorization"] == "Bearer from-env"


# -------------------------------------------------------------------------------------- schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    result = run("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def demo_catalog() -> Any:
    return yaml.load(DEMO_CATALOG.read_text(), Loader=CatalogLoader)


def test_the_schema_accepts_the_demo_catalog(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(demo_catalog())) == []
    # What the service is sent, as its decoder sees it: numbers as JSON numbers.
    wire = json.loads(msgspec.json.encode(demo_catalog()))
    assert list(validator.iter_errors(wire)) == []


@pytest.mark.parametrize(
    "spoil",
    [
        lambda c: c["features"]["sso"].update(colour="blue"),  # an unknown field
        lambda c: c.update(discounts={}),  # an unknown section
        lambda c: c["plans"].update({"-team": c["plans"]["team"]}),  # a bad id
        lambda c: c["plans"]["team"]["entitlements"].update({"a b": {}}),
        lambda c: c["plans"]["team"].update(billing_period="fortnight"),
        lambda c: c["plans"]["team"]["credits"]["ai-credits"].update(amount=[1]),
    ],
)
def test_the_schema_refuses_what_the_service_would(
    validator: jsonschema.Draft202012Validator, spoil: Any
) -> None:
    catalog = demo_catalog()
    spoil(catalog)
    assert list(validator.iter_errors(catalog)) != []


# ------------------------------------------------------------------------------- demo catalog


def test_the_demo_catalog_is_written_as_export_writes() -> None:
    text = DEMO_CATALOG.read_text()
    comment = [line for line in text.splitlines() if line.startswith("#")]
    assert any("allotment catalog apply src/allotment/demo_catalog.yaml" in c for c in comment)
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert dump_yaml(demo_catalog()) == body


# ----------------------------------------------------------------------------- YAML, exactly


@pytest.mark.parametrize("text", ["1e3", "yes", "null", "0.5", "12", "on", "2026-01-01", "~"])
def test_text_that_looks_like_another_value_stays_text(text: str) -> None:
    document = {"name": text}
    assert yaml.load(dump_yaml(document), Loader=CatalogLoader) == document


def test_a_value_met_twice_is_written_twice() -> None:
    shared = {"amount": Decimal("0.01")}
    written = dump_yaml({"a": shared, "b": shared})
    assert "&" not in written
    assert "*" not in written
    assert written.count("amount: 0.01") == 2


def test_a_merge_key_is_not_a_key_given_twice() -> None:
    text = "base: &b {limit: 1, reset: day}\nplan:\n  <<: *b\n  limit: 2\n"
    assert yaml.load(text, Loader=CatalogLoader)["plan"] == {"limit": 2, "reset": "day"}


def test_values_shown_inline() -> None:
    assert inline_yaml(Decimal("1E+3")) == "1000"
    assert inline_yaml(Decimal("0.000001")) == "0.000001"
    assert inline_yaml("Team plus") == "Team plus"
    assert inline_yaml(None) == "null"
    assert inline_yaml({"value": None}) == "{value: null}"
