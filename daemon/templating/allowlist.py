"""What a template may contain, checked on its parsed tree before it ever runs: an allowlist of
Jinja constructs, variables, filters and tests; every problem names file and line.  The
run-time guards live in daemon.templating.sandbox."""

from __future__ import annotations

import functools

import re
from typing import Any, Callable

from jinja2 import TemplateSyntaxError, nodes

ALLOWED = {
    "client_first_name": "the client's first name",
    "client_name": "the client's full name (call tasks only: never in a message to the client)",
    "client_phone": "the client's phone number (call tasks only: never in a message to the client)",
    "session_date": "the missed session's date, e.g. 'Tuesday, March 3'",
    "session_time": "the missed session's start time, e.g. '10:00 AM'",
    "session_weekday": "the weekday of the missed session",
    "trigger": "cancelled, late_cancel or no_show",
    "therapist": "the therapist's name",
    "therapist_first_name": "the therapist's first name",
    "practice": "the practice's name",
    "practice_phone": "the practice's phone number (may be empty)",
    "rebooking_link": "where the client can book again (may be empty)",
    "safety_protocol": "the practice's [safety] protocol text (call tasks only: never in a message to the client)",
    "emergency_contact": "the client's emergency contact (call tasks only: never in a message to the client)",
}


CALL_TASK_ONLY = frozenset({"client_name", "client_phone", "safety_protocol", "emergency_contact"})   # the therapist's, never the client's


FILTERS = frozenset({"default", "d", "upper", "lower", "title", "capitalize", "trim", "replace",
                     "truncate", "wordwrap", "center", "indent", "e", "escape", "length", "count",
                     "first", "last", "string"})


TESTS = frozenset({"defined", "undefined", "none", "string", "lower", "upper", "eq", "ne",
                   "equalto", "==", "!=", "in"})


METHODS = frozenset({"upper", "lower", "title", "capitalize", "strip"})


RESERVED = frozenset({"loop", "self", "caller", "varargs", "kwargs", "super"})


EXPRESSIONS = (nodes.Name, nodes.Const, nodes.Filter, nodes.Test, nodes.Compare, nodes.Operand,
               nodes.And, nodes.Or, nodes.Not, nodes.CondExpr, nodes.Getitem, nodes.Slice,
               nodes.Call, nodes.Keyword)


STATEMENTS = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.Assign)


NAMES = {"For": "loops ('for')", "Macro": "macros", "CallBlock": "'call' blocks", "Import": "'import'",
         "FromImport": "'from ... import'", "Include": "'include'", "Extends": "'extends'",
         "Block": "blocks", "FilterBlock": "'filter' blocks", "With": "'with' blocks",
         "AssignBlock": "'set' blocks", "ScopedEvalContextModifier": "'autoescape' blocks", "Scope": "'autoescape' blocks",
         "Concat": "joining with '~' (write the parts next to each other)",
         "Getattr": "attribute access", "Add": "arithmetic ('+')", "Sub": "arithmetic ('-')",
         "Mul": "arithmetic ('*')", "Div": "arithmetic ('/')", "FloorDiv": "arithmetic ('//')",
         "Mod": "arithmetic ('%')", "Pow": "arithmetic ('**')", "Neg": "arithmetic ('-')", "Pos": "arithmetic ('+')", "Tuple": "tuples", "List": "lists", "Dict": "dicts"}


MAX_SOURCE = 20_000      # characters of template source


MAX_CONST = 500          # characters of one string literal


MAX_INT = 10_000         # magnitude of an integer literal (widths, lengths)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_source(source: str, filename: str) -> list[str]:
    """Problems of one template text found without running it, each with ``file:line``."""
    return list(_checked(source, filename))


@functools.lru_cache(maxsize=256)
def _checked(source: str, filename: str) -> tuple[str, ...]:
    """``check_source``, once per text: each render of a step checks its template again."""
    return tuple(_check_source(source, filename))


def _check_source(source: str, filename: str) -> list[str]:
    if len(source) > MAX_SOURCE:
        return [f"{filename}: the template is {len(source)} characters; at most {MAX_SOURCE} are allowed"]
    bad = _CONTROL.search(source)
    if bad:
        line = source.count("\n", 0, bad.start()) + 1
        return [f"{filename}:{line}: control character U+{ord(bad.group()):04X} is not allowed"]
    try:
        tree = _parse(source, filename)
    except TemplateSyntaxError as exc:
        return [f"{filename}:{exc.lineno}: {exc.message}"]
    assigned = {n.target.name for n in tree.find_all(nodes.Assign) if isinstance(n.target, nodes.Name)}
    problems: list[str] = []
    _check(tree, assigned, 1, lambda line, text: problems.append(f"{filename}:{line}: {text}"))
    return list(dict.fromkeys(problems))


def _check(node: nodes.Node, assigned: set[str], line: int, report: Callable[[int, str], None]) -> None:
    """Walk the tree; report every construct outside the allowlist at its line."""
    line = node.lineno or next((n.lineno for n in node.find_all(nodes.Node) if n.lineno), line)
    problem = _problem(node, assigned)
    if problem:
        report(line, problem)
        return
    children: Any = node.iter_child_nodes()
    if isinstance(node, nodes.Call):
        children = [getattr(node.node, "node", node.node)]   # the string whose method is called
    for child in children:
        _check(child, assigned, line, report)


def _problem(node: nodes.Node, assigned: set[str]) -> str | None:
    kind = type(node).__name__
    if not isinstance(node, STATEMENTS + EXPRESSIONS):
        return f"{NAMES.get(kind, repr(kind.lower()))} not allowed in templates"
    if isinstance(node, nodes.Name):
        return _name_problem(node, assigned)
    if isinstance(node, nodes.Const):
        return _const_problem(node.value)
    if isinstance(node, (nodes.Filter, nodes.Test)):
        allowed, what = (FILTERS, "filter") if isinstance(node, nodes.Filter) else (TESTS, "test")
        if node.name not in allowed:
            return f"{what} '{node.name}' is not allowed; allowed: {', '.join(sorted(allowed))}"
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return f"{what} '{node.name}': '*' and '**' arguments are not allowed"
    if isinstance(node, nodes.Call):
        target = node.node
        ok = isinstance(target, nodes.Getattr) and target.attr in METHODS and not (
            node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
        return None if ok else "only .upper(), .lower(), .title(), .capitalize() and .strip() can be called"
    if isinstance(node, nodes.Getitem):
        arg = node.arg
        parts = [arg] if not isinstance(arg, nodes.Slice) else [p for p in (arg.start, arg.stop, arg.step) if p]
        if not all(isinstance(p, nodes.Const) and type(p.value) is int for p in parts):
            return "only a letter or slice with whole numbers can be taken, e.g. client_first_name[0]"
    if isinstance(node, nodes.Assign) and not isinstance(node.target, nodes.Name):
        return "'set' takes one name"
    return None


def client_facing_problems(source: str, filename: str) -> list[str]:
    """Uses of the call-task-only variables in a template sent to the client (email, SMS),
    each with ``file:line`` and the part (subject or message).  A message to the client never
    carries their full name or phone number: a shared inbox or lock screen shows it to others."""
    return list(_client_facing(source, filename))


@functools.lru_cache(maxsize=256)
def _client_facing(source: str, filename: str) -> tuple[str, ...]:
    try:
        tree = _parse(source, filename)
    except TemplateSyntaxError:
        return ()            # check_source reports it
    subject = source.split("\n", 1)[0].lower().startswith("subject:") and not filename.endswith(".html")
    out = []
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name in CALL_TASK_ONLY:
            part = "the subject" if subject and node.lineno == 1 else "the message"
            out.append(f"{filename}:{node.lineno}: '{node.name}' is for call tasks only and cannot be "
                       f"in {part} of a template sent to the client")
    return tuple(dict.fromkeys(out))


def _name_problem(node: nodes.Name, assigned: set[str]) -> str | None:
    if node.ctx == "store":
        if node.name.startswith("_") or node.name in RESERVED or node.name in ALLOWED:
            return f"the name '{node.name}' cannot be set"
        return None
    if node.name in ALLOWED or (node.name in assigned and node.name not in RESERVED):
        return None
    return f"unknown variable '{node.name}'; allowed: {', '.join(sorted(ALLOWED))}"


def _const_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return None if len(value) <= MAX_CONST else f"a text literal longer than {MAX_CONST} characters"
    if value is None or isinstance(value, bool):
        return None
    if type(value) is int:
        return None if abs(value) <= MAX_INT else f"the number {str(value)[:20]} is too large (at most {MAX_INT})"
    return f"a {type(value).__name__} literal is not allowed in templates"


@functools.lru_cache(maxsize=256)
def _parse(source: str, filename: str) -> nodes.Template:
    """The tree of ``source`` as the sandbox's own environment parses it (imported here, not at
    the top: the sandbox takes its allowlists from this module).  Kept per text: every step of
    a dispatch renders the same few templates, and the checks only read the tree."""
    from daemon.templating.sandbox import environment

    return environment().parse(source, filename=filename)
