"""A small typed-schema engine: dataclasses + field metadata → validated objects.

Every section of the configuration is a dataclass.  Each field may carry
metadata: ``doc`` (reference text), ``parse`` (a converter that raises
ValueError with the expected form), ``choices``, ``example``.  Validation
collects *every* problem with its place instead of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable


def option(default: Any = MISSING, *, doc: str, parse: Callable[[Any], Any] | None = None,
           choices: tuple[str, ...] | None = None, example: Any = None,
           default_factory: Any = MISSING, key: str | None = None) -> Any:
    """Declare a config key with its documentation and converter.

    ``key`` names the TOML key when it differs from the field (``from``).
    """
    meta = {"doc": doc, "parse": parse, "choices": choices, "example": example, "key": key}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Problems:
    """Collected findings, each already phrased with its place."""

    items: list[str] = field(default_factory=list)
    locate: Callable[[str, str], int | None] = lambda table, key: None
    file: str = "config.toml"

    def add(self, table: str, key: str | None, message: str) -> None:
        line = self.locate(table, key or "")
        where = f"{self.file}:{line}" if line else self.file
        keypart = f" {key}" if key else ""
        self.items.append(f"{where}: [{table}]{keypart}: {message}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _check_type(tp: Any, value: Any) -> str | None:
    """Return an error text when ``value`` does not fit the plain type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if any(_check_type(a, value) is None for a in args) else _check_type(args[0], value)
    if origin is list:
        if not isinstance(value, list):
            return f"expected a list, found {_describe(value)}"
        (inner,) = typing.get_args(tp) or (Any,)
        for item in value:
            err = _check_type(inner, item)
            if err:
                return err
        return None
    if origin is dict:
        return None if isinstance(value, dict) else f"expected a table, found {_describe(value)}"
    if tp is bool:
        return None if isinstance(value, bool) else f"expected true or false, found {_describe(value)}"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected a whole number, found {_describe(value)}"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"expected a number, found {_describe(value)}"
    if tp is str:
        return None if isinstance(value, str) else f"expected a string, found {_describe(value)}"
    return None


def build(cls: type, data: Any, table: str, problems: Problems,
          extra_keys: frozenset[str] = frozenset()) -> Any:
    """Validate ``data`` against dataclass ``cls``; returns an instance or None.

    Unknown keys (not in ``cls`` nor ``extra_keys``) are problems.
    """
    if not isinstance(data, dict):
        problems.add(table, None, f"expected a table, found {_describe(data)}")
        return None
    hints = typing.get_type_hints(cls)
    known = {key_of(f) for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known and key not in extra_keys:
            close = _closest(key, known | extra_keys)
            hint = f"; did you mean '{close}'?" if close else ""
            problems.add(table, key, f"unknown key{hint} (known: {', '.join(sorted(known | extra_keys))})")
    values: dict[str, Any] = {}
    ok = True
    for f in dataclasses.fields(cls):
        if key_of(f) not in data:
            if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                problems.add(table, key_of(f), f"missing; expected {_expectation(f, hints[f.name])}")
                ok = False
            continue
        converted = _convert(f, hints[f.name], data[key_of(f)], table, problems)
        if converted is _INVALID:
            ok = False
        else:
            values[f.name] = converted
    if not ok:
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        problems.add(table, None, str(exc))
        return None


_INVALID = object()


def key_of(f: dataclasses.Field) -> str:
    """The TOML key of a field."""
    return f.metadata.get("key") or f.name


def keys_of(cls: type) -> frozenset[str]:
    return frozenset(key_of(f) for f in dataclasses.fields(cls))


def _convert(f: dataclasses.Field, tp: Any, value: Any, table: str, problems: Problems) -> Any:
    meta = f.metadata
    if dataclasses.is_dataclass(tp) and meta.get("parse") is None:
        built = build(typing.cast(type, tp), value, f"{table}.{key_of(f)}", problems)
        return _INVALID if built is None else built
    parse = meta.get("parse")
    choices = meta.get("choices")
    if parse is None:
        err = _check_type(tp, value)
        if err:
            problems.add(table, key_of(f), err)
            return _INVALID
    if choices and value not in choices:
        problems.add(table, key_of(f), f"{_describe(value)} is not one of {', '.join(choices)}")
        return _INVALID
    if parse is not None:
        try:
            return parse(value)
        except (ValueError, TypeError) as exc:
            problems.add(table, key_of(f), str(exc))
            return _INVALID
    return value


def _expectation(f: dataclasses.Field, tp: Any) -> str:
    if f.metadata.get("choices"):
        return "one of " + ", ".join(f.metadata["choices"])
    if f.metadata.get("example") is not None:
        return f"e.g. {f.metadata['example']!r}"
    return getattr(tp, "__name__", str(tp))


def _closest(key: str, known: set[str] | frozenset[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return match[0] if match else None


def line_locator(text: str) -> Callable[[str, str], int | None]:
    """Map (table, key) to a 1-based line in TOML ``text``, best effort.

    Array tables are addressed as ``calendars#2``.
    """
    index: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        m = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", stripped)
        if m:
            name = m.group(1)
            counts[name] = counts.get(name, 0) + 1
            table = f"{name}#{counts[name]}"
            index[(table, "")] = number
            continue
        m = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if m:
            table = m.group(1)
            index[(table, "")] = number
            continue
        m = re.match(r'^([A-Za-z0-9_\-]+|"[^"]*")\s*=', stripped)
        if m:
            index.setdefault((table, m.group(1).strip('"')), number)

    def locate(tbl: str, key: str) -> int | None:
        base = re.sub(r" \(.*\)$", "", tbl)
        found = index.get((base, key)) or index.get((base, ""))
        if found is None and "." in base:   # an inline table in an array: cadence.steps#2
            parent, _, child = base.rpartition(".")
            found = index.get((parent, child.split("#")[0])) or index.get((parent, ""))
        return found

    return locate


def fields_doc(cls: type) -> list[tuple[str, str, Any]]:
    """(key, doc, default) for each field: used by the reference docs and their test."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not MISSING else None
        out.append((key_of(f), f.metadata.get("doc", ""), default))
    return out
