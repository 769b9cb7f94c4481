"""Catalog files: the catalog document of ``GET``/``PUT /v1/catalog`` as YAML or JSON.

Quantities are exact decimals of up to 18 significant digits: a float would round them. Every
number with a fraction is read as a ``Decimal`` and written back in plain notation, digit for
digit as it was read. ``allotment catalog`` reads and writes these files; the demo's catalog is
one (``demo_catalog.yaml``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec
import yaml
from yaml.constructor import ConstructorError

SECTIONS = ("features", "currencies", "products", "plans", "addons")


class CatalogFileError(ValueError):
    """A catalog file that cannot be read: the message names the file and, when it can, the
    line."""


_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# PyYAML follows YAML 1.1, where a float needs a dot (`1e3` and `1.5e3` would be strings);
# JSON, and YAML 1.2 readers such as editors, read those as numbers, so this file does too.
_EXPONENT_NUMBER = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_NUMBER_FIRST_CHARACTERS = list("-+.0123456789")
_NO_WRAP = 1 << 16  # long names stay on one line


def plain_number(number: Decimal) -> str:
    """``number`` as written in a file: every digit it holds, never an exponent."""
    return format(number, "f")


def _exact_number(text: str) -> Decimal:
    """A YAML float's text as an exact ``Decimal``; ``ValueError`` when it is not a finite
    number a catalog can hold."""
    if ":" in text:  # YAML 1.1's base 60 (`1:30.5`): nobody means it in a catalog
        raise ValueError(f"{text} is written in base 60: write it as a decimal number")
    try:
        number = Decimal(text.replace("_", ""))
    except InvalidOperation:
        number = Decimal("NaN")  # .inf, .nan and their spellings
    if not number.is_finite():
        raise ValueError(f"{text} is not a finite number: quantities are exact decimals")
    return number


# --------------------------------------------------------------------------------------- YAML


class CatalogLoader(yaml.SafeLoader):
    """PyYAML's safe loader with numbers read exactly (floats as ``Decimal``) and a key given
    twice in one mapping refused, since the second would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: keys written here override those
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_exact_number(loader: CatalogLoader, node: yaml.ScalarNode) -> Decimal:
    try:
        return _exact_number(loader.construct_scalar(node))
    except ValueError as error:
        raise ConstructorError(None, None, str(error), node.start_mark) from None


CatalogLoader.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_NUMBER, _NUMBER_FIRST_CHARACTERS)
CatalogLoader.add_constructor(_FLOAT_TAG, _construct_exact_number)


class CatalogDumper(yaml.SafeDumper):
    """PyYAML's safe dumper writing ``Decimal`` in plain notation, lists indented under their
    key, every value in full, and quoting any text the loader above would read as a number
    (``1e3``)."""

    def ignore_aliases(self, data: Any) -> bool:
        # A value met twice is written twice, never as an anchor (`&id001`) and its alias.
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # PyYAML puts a block list's dashes level with its key; indented reads as nested.
        super().increase_indent(flow, indentless=False)


def _represent_decimal(dumper: CatalogDumper, number: Decimal) -> yaml.ScalarNode:
    text = plain_number(number)
    # A whole number written without a dot is an int to every reader, and tagged so, or the
    # dumper would spell the tag out (`!!float 1000`).
    return dumper.represent_scalar(_FLOAT_TAG if "." in text else _INT_TAG, text)


CatalogDumper.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_NUMBER, _NUMBER_FIRST_CHARACTERS)
CatalogDumper.add_representer(Decimal, _represent_decimal)


def dump_yaml(document: Any) -> str:
    """A catalog document as block-style YAML, keys in the document's order."""
    return yaml.dump(
        document,
        Dumper=CatalogDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=_NO_WRAP,
    )


def inline_yaml(value: Any) -> str:
    """One value on one line, as it would be written in a catalog file."""
    text = yaml.dump(
        value,
        Dumper=CatalogDumper,
        sort_keys=False,
        default_flow_style=True,
        allow_unicode=True,
        width=_NO_WRAP,
    )
    # A lone scalar is followed by the explicit end of its document.
    return text.removesuffix("\n...\n").removesuffix("\n")


def _load_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=CatalogLoader)  # a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as error:
        raise CatalogFileError(_marked_error(path, error)) from error
    except yaml.YAMLError as error:
        raise CatalogFileError(f"{path}: {error}") from error


def _marked_error(path: Path, error: yaml.MarkedYAMLError) -> str:
    """The file, line and column at fault, what is wrong there, and that line."""
    mark = error.problem_mark or error.context_mark
    what = "; ".join(part for part in (error.context, error.problem) if part)
    if mark is None:
        return f"{path}: {what}"
    snippet = mark.get_snippet()
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"{where}\n{snippet}" if snippet else where


# --------------------------------------------------------------------------------------- JSON


def _without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise ValueError(f"found the key {key!r} twice in one object")
        mapping[key] = value
    return mapping


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number: quantities are exact decimals")


def _load_json(path: Path, text: str) -> Any:
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_without_duplicates,
        )
    except json.JSONDecodeError as error:
        where = f"{path}, line {error.lineno}, column {error.colno}"
        raise CatalogFileError(f"{where}: {error.msg}") from error
    except ValueError as error:  # a duplicate key or a non-finite number
        raise CatalogFileError(f"{path}: {error}") from error


def _plain_numbers(value: Any) -> Any:
    """``value`` with every ``Decimal`` replaced by its plain text, which the encoder writes as
    it is: msgspec's own ``decimal_format="number"`` would write ``1E+3``."""
    if isinstance(value, Decimal):
        return msgspec.Raw(plain_number(value).encode())
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_numbers(item) for item in value]
    return value


def encode_json(document: Any) -> bytes:
    """Compact JSON with exact numbers: the body of ``PUT /v1/catalog``."""
    return msgspec.json.encode(_plain_numbers(document))


def dump_json(document: Any) -> str:
    """Indented JSON with exact numbers, ending with a newline."""
    return msgspec.json.format(encode_json(document), indent=2).decode() + "\n"


# ------------------------------------------------------------------------------ catalog files


def read_catalog_file(path: Path) -> dict[str, Any]:
    """The catalog document in ``path``: JSON when its name ends in ``.json``, else YAML (of
    which JSON is a part)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark is no content
    except UnicodeDecodeError as error:
        raise CatalogFileError(f"{path}: not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise CatalogFileError(f"{path}: {error.strerror or error}") from error
    is_json = path.suffix.lower() == ".json"
    document = _load_json(path, text) if is_json else _load_yaml(path, text)
    if not isinstance(document, dict):
        raise CatalogFileError(
            f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}) at the top level,"
            f" found {describe(document)}"
        )
    return document


def describe(value: Any) -> str:
    """What a value is, in a message: "a list", "an empty document"."""
    if value is None:
        return "an empty document"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | Decimal):
        return "a number"
    return f"a {type(value).__name__}"
