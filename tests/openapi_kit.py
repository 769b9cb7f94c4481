"""Reading the API description as a client would: which operation answers a request, and does
an answer conform to what the document says of it (the status is listed, the body fits its
schema). This is what a schema-driven tester checks as ``response_schema_conformance``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from allotment.api.openapi.document import document


def schema_validator(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    rooted = {**schema, "components": doc["components"]}
    return Draft202012Validator(rooted, format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass(frozen=True)
class Described:
    method: str
    template: str
    operation: Mapping[str, Any]


class Conformance:
    def __init__(self) -> None:
        self.doc = document()
        self._routes = [
            (re.compile("^" + re.sub(r"{\w+}", "[^/]+", template) + "$"), method, template, op)
            for template, item in self.doc["paths"].items()
            for method, op in item.items()
        ]
        self.checked: list[tuple[str, str, int]] = []
        self._validators: dict[tuple[str, str, str], Draft202012Validator] = {}

    def operation(self, method: str, path: str) -> Described | None:
        found = [
            Described(method, template, op)
            for pattern, verb, template, op in self._routes
            if verb == method.lower() and pattern.match(path)
        ]
        # A literal segment beats a parameter: the fewest parameters wins.
        found.sort(key=lambda described: described.template.count("{"))
        return found[0] if found else None

    def check(self, response: httpx.Response) -> None:
        """Fail unless ``response`` is one its operation lists, with a body that fits."""
        request = response.request
        described = self.operation(request.method, request.url.path)
        assert described is not None, f"{request.method} {request.url.path} is not described"
        responses = described.operation["responses"]
        status = str(response.status_code)
        assert status in responses, (
            f"{request.method} {described.template} answered {status}, which the document does "
            f"not list ({', '.join(responses)}): {response.text[:300]}"
        )
        answer = responses[status]
        if "$ref" in answer:
            answer = self.doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        media_type = response.headers.get("content-type", "").split(";")[0]
        content = answer.get("content", {})
        if not content:
            assert not response.content, f"{request.method} {described.template} {status}"
            self.checked.append((request.method, described.template, response.status_code))
            return
        assert any(declared.split(";")[0] == media_type for declared in content), (
            f"{request.method} {described.template} {status} answered {media_type}"
        )
        if media_type == "application/json":
            key = (request.method, described.template, status)
            validator = self._validators.get(key)
            if validator is None:
                schema = content["application/json"]["schema"]
                validator = self._validators[key] = schema_validator(self.doc, schema)
            errors = sorted(validator.iter_errors(json.loads(response.content)), key=str)
            assert not errors, f"{request.method} {described.template} {status}: " + "; ".join(
                f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
            )
        self.checked.append((request.method, described.template, response.status_code))

    def hook(self, response: httpx.Response) -> None:
        """An httpx response hook checking every answer of an operation a client receives.
        Unknown paths and methods are the router's answers, not an operation's; a stream is
        never read to its end."""
        request = response.request
        if self.operation(request.method, request.url.path) is None:
            return
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return
        response.read()
        self.check(response)


_shared: Conformance | None = None


def conformance() -> Conformance:
    """One reader of the document for the whole test session."""
    global _shared
    if _shared is None:
        _shared = Conformance()
    return _shared
