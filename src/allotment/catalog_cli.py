"""``allotment catalog``: the whole catalog as one YAML or JSON file (``catalog_files.py``),
read from a running service (``export``) and applied to it (``apply``) through
``GET``/``PUT /v1/catalog``, and the JSON Schema that editors check such a file against
(``schema``). The service's answers are read with every fraction as a ``Decimal``, as files are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import msgspec

from allotment.catalog_files import (
    CatalogFileError,
    describe,
    dump_json,
    dump_yaml,
    encode_json,
    inline_yaml,
    read_catalog_file,
)

DEFAULT_URL = "http://127.0.0.1:8080"
CATALOG_PATH = "/v1/catalog"
# A whole catalog is applied in one transaction, which may take a while on a large one; a
# service that does not even accept the connection is reported at once.
ANSWER_SECONDS = 60.0
TIMEOUT = httpx.Timeout(ANSWER_SECONDS, connect=5.0)
# The service's answers: numbers with a fraction as Decimal, never float.
_decode_answer = msgspec.json.Decoder(float_hook=Decimal).decode


def _format_of(output: Path | None, given: str | None) -> str:
    """``--format``, else what ``--output``'s name says, else YAML: the format ``apply`` will
    read the file in."""
    if given is not None:
        return given
    return "json" if output is not None and output.suffix.lower() == ".json" else "yaml"


# ------------------------------------------------------------------------------------ service


@dataclass(frozen=True, slots=True)
class Service:
    """Where the service answers and the key to call it with."""

    url: str
    api_key: str

    def request(self, method: str, *, dry_run: bool = False, body: bytes | None = None) -> bytes:
        """The body of the service's successful answer to ``method /v1/catalog``; a failed
        exchange or any other answer is a ``ClickException`` saying what happened."""
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        params = {"dry_run": "true"} if dry_run else None
        try:
            with httpx.Client(base_url=self.url, timeout=TIMEOUT) as client:
                response = client.request(
                    method, CATALOG_PATH, params=params, content=body, headers=headers
                )
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise click.ClickException(f"could not reach {self.url}: {error}") from error
        except httpx.TimeoutException as error:
            raise click.ClickException(
                f"{self.url} did not answer within {ANSWER_SECONDS:g} seconds"
            ) from error
        except httpx.HTTPError as error:
            raise click.ClickException(f"the request to {self.url} failed: {error}") from error
        if response.is_success:
            return response.content
        raise refusal(response)


class _Problem(msgspec.Struct):
    message: str
    kind: str | None = None
    id: str | None = None


class _Details(msgspec.Struct):
    problems: list[_Problem] = []


class _Error(msgspec.Struct):
    code: str
    message: str
    details: _Details = msgspec.field(default_factory=_Details)


class _ErrorBody(msgspec.Struct):
    error: _Error


def refusal(response: httpx.Response) -> click.ClickException:
    """The service's error answer as one message: its own sentence, the status and code, and
    each problem it found in the document on a line of its own."""
    status = f"HTTP {response.status_code}"
    try:
        error = msgspec.json.decode(response.content, type=_ErrorBody).error
    except msgspec.MsgspecError:  # not the contract's body: a proxy's page, say
        return click.ClickException(f"{status} {response.reason_phrase} from {response.url}")
    lines = [f"{error.message} ({status}, {error.code})"]
    lines += [f"  {_problem_line(problem)}" for problem in error.details.problems]
    return click.ClickException("\n".join(lines))


def _problem_line(problem: _Problem) -> str:
    named = " ".join(part for part in (problem.kind, problem.id) if part)
    return f"{named}: {problem.message}" if named else problem.message


# ------------------------------------------------------------------------------ apply's answer


class FieldChange(msgspec.Struct):
    """One field's value before and after."""

    before: Any = msgspec.field(default=None, name="from")
    after: Any = msgspec.field(default=None, name="to")


class Change(msgspec.Struct):
    """What applying the document does, or did, to one catalog object."""

    kind: str
    id: str
    action: str
    version: int | None = None
    fields: list[str] = []
    diff: dict[str, FieldChange] = {}


class ApplyAnswer(msgspec.Struct):
    """``PUT /v1/catalog``'s answer."""

    dry_run: bool
    changes: list[Change]


_decode_apply_answer = msgspec.json.Decoder(ApplyAnswer, float_hook=Decimal).decode
_MARKS = {"create": "+", "update": "~"}


def change_lines(answer: ApplyAnswer) -> list[str]:
    """The answer for a reader: each object created (+) or changed (~) with its changed fields,
    then the counts."""
    lines = ["Dry run: nothing was changed."] if answer.dry_run else []
    for change in answer.changes:
        if change.action != "unchanged":
            lines += _lines_of(change)
    counts = Counter(change.action for change in answer.changes)
    if answer.dry_run:
        lines.append(f"{counts['unchanged']} unchanged")
    else:
        lines.append(
            f"Applied: {counts['create']} created, {counts['update']} changed,"
            f" {counts['unchanged']} unchanged."
        )
    return lines


def _lines_of(change: Change) -> list[str]:
    mark = _MARKS.get(change.action)
    head = f"{mark or '?'} {change.kind} {change.id}"
    if change.version is not None:
        head += f" (version {change.version})"
    if mark is None:  # an action this command does not know yet
        return [f"{head}: {change.action}"]
    if change.action == "create":
        return [head]
    if not change.fields:
        # Publishing a plan publishes every plan below it, its own definition unchanged.
        return [f"{head}: republished to follow its parent"]
    return [head, *(f"    {_field_line(field, change.diff.get(field))}" for field in change.fields)]


def _field_line(field: str, values: FieldChange | None) -> str:
    if values is None:
        return field
    before = _shown(values.before, values.after)
    after = _shown(values.after, values.before)
    return f"{field}: {before} → {after}"


def _shown(value: Any, other: Any) -> str:
    # A spec or a credit block added or removed is null on the side where it is missing.
    if value is None and isinstance(other, dict | list):
        return "(none)"
    return inline_yaml(value)


# ----------------------------------------------------------------------------------- commands

_Command = TypeVar("_Command", bound=Callable[..., Any])


def service_options(command: _Command) -> _Command:
    """``--url`` and ``--api-key``, for every command that calls the service."""
    command = click.option(
        "--api-key",
        envvar="ALLOTMENT_API_KEY",
        show_envvar=True,
        help="A key with the admin scope.",
    )(command)
    return click.option(
        "--url",
        default=DEFAULT_URL,
        show_default=True,
        envvar="ALLOTMENT_URL",
        show_envvar=True,
        help="The service's base URL.",
    )(command)


def _service(url: str, api_key: str | None) -> Service:
    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"--url {url}: expected an http:// or https:// URL")
    if not api_key:
        raise click.UsageError(
            "no API key: pass --api-key or set ALLOTMENT_API_KEY (a key with the admin scope)"
        )
    return Service(url, api_key)


@click.group()
def catalog() -> None:
    """The whole catalog as one YAML or JSON file: export it, edit it, apply it."""


@catalog.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["yaml", "json"]),
    default=None,
    help="yaml or json (default: json when --output ends in .json, else yaml).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The file to write (default: standard output).",
)
@service_options
def export(output_format: str | None, output: Path | None, url: str, api_key: str | None) -> None:
    """Write the service's catalog (GET /v1/catalog), in the format `apply` reads."""
    service = _service(url, api_key)
    document = _catalog_document(service.request("GET"), service.url)
    dump = dump_json if _format_of(output, output_format) == "json" else dump_yaml
    text = dump(document)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"{output}: {error.strerror or error}") from error
    click.echo(f"Wrote the catalog of {service.url} to {output}.", err=True)


def _catalog_document(body: bytes, url: str) -> dict[str, Any]:
    try:
        document = _decode_answer(body)
    except msgspec.DecodeError as error:
        raise click.ClickException(f"{url} answered with something other than JSON") from error
    if not isinstance(document, dict):
        raise click.ClickException(f"{url} answered {describe(document)} instead of a catalog")
    return document


@catalog.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change, and change nothing.")
@service_options
def apply(file: Path, dry_run: bool, url: str, api_key: str | None) -> None:
    """Apply FILE (YAML, or JSON when it ends in .json) to the service (PUT /v1/catalog) and
    print what changed: objects it does not name are left as they are."""
    service = _service(url, api_key)
    try:
        document = read_catalog_file(file)
    except CatalogFileError as error:
        raise click.ClickException(str(error)) from error
    try:
        body = encode_json(document)
    except (TypeError, msgspec.EncodeError) as error:  # a YAML value JSON has no form for
        raise click.ClickException(f"{file}: cannot be sent as JSON: {error}") from error
    answer = service.request("PUT", dry_run=dry_run, body=body)
    try:
        lines = change_lines(_decode_apply_answer(answer))
    except msgspec.MsgspecError as error:
        raise click.ClickException(f"{service.url} answered unexpectedly: {error}") from error
    click.echo("\n".join(lines))


@catalog.command()
def schema() -> None:
    """Print the JSON Schema of a catalog file, for editors to check one against (with the YAML
    language server: `# yaml-language-server: $schema=catalog.schema.json`)."""
    from allotment.api.openapi.components import standalone_schema
    from allotment.api.schemas import CatalogIn

    document = standalone_schema(CatalogIn, "Allotment catalog")
    click.echo(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
