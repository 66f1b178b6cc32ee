"""The template sandbox: an allowlist checked on the parsed template, and run-time guards.

Two independent layers keep a template harmless:

1. ``check_source`` accepts only an *allowlist* of Jinja constructs: text,
   allowlisted variables, ``{% if %}``, ``{% set name = ... %}``, comparisons,
   a few length-bounded filters and the string methods ``upper`` & co.  No
   loops, macros, includes, arithmetic, literals of lists, ``~``, ``|attr`` or
   attribute access.  Every problem names file and line.  every render runs
   it first, so a template forced into the folder is refused before it runs.
2. The sandbox at render time: the same attribute/filter allowlist, a size
   check before and after every filter (so ``replace``/``center``/``indent``
   cannot multiply text), a cap on the output, and a cooperative deadline
   checked at every filter, call, item access and output chunk.

Why no timer thread or subprocess: without loops or recursion, the work of a
render is bounded by (number of nodes, at most ``MAX_SOURCE`` characters of
source) x (cost of one filter on at most ``MAX_OUTPUT`` characters), which is
milliseconds; the deadline is the backstop.  Python cannot kill a thread, and
a subprocess per message would cost more than the render.
"""

from __future__ import annotations

import functools
import re
import time
from contextvars import ContextVar
from typing import Any, Callable

import jinja2
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from daemon.errors import TemplateError
from daemon.templating.allowlist import (
    FILTERS,
    METHODS,
    TESTS,
)


def _require_jinja(version: str) -> None:
    """Refuse a Jinja2 older than 3.1.6 (sandbox escapes CVE-2024-56326, CVE-2025-27516)."""
    found = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    if found < (3, 1, 6):
        raise ImportError(f"welcomeback needs Jinja2 >= 3.1.6 for a safe template sandbox "
                          f"(found {version}); run: pip install -U 'Jinja2>=3.1.6'")


_require_jinja(jinja2.__version__)

MAX_OUTPUT = 32_000      # characters of rendered text, and of any value built on the way
MAX_SECONDS = 1.0        # render deadline, checked cooperatively
RenderClock = Callable[[], float]
# (clock, deadline on that clock, budget) of the render in progress
_DEADLINE: ContextVar[tuple[RenderClock, float, float]] = ContextVar(
    "template_deadline", default=(time.monotonic, float("inf"), MAX_SECONDS))


def _tick() -> None:
    clock, deadline, budget = _DEADLINE.get()
    if clock() > deadline:
        raise SecurityError(f"the template took longer than {budget:g} s to render")


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_OUTPUT:
        raise SecurityError(f"the template builds a text longer than {MAX_OUTPUT} characters")
    return value


def _width(args: tuple[Any, ...], kwargs: dict[str, Any], key: str, default: int) -> int:
    value = args[0] if args else kwargs.get(key, default)
    if isinstance(value, str):
        return len(value)
    return max(value, 1) if isinstance(value, int) else default


def _growth(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """An upper bound of the result length of the filters that can grow a text."""
    text = str(value)
    size, lines = len(text), text.count("\n") + 1
    extra = sum(len(a) for a in (*args, *kwargs.values()) if isinstance(a, str))
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        return size + (text.count(old) if old else size + 1) * max(0, len(new) - len(old))
    if name == "indent":
        return size + lines * _width(args, kwargs, "width", 4)
    if name == "wordwrap":
        return 2 * size + (size // _width(args, kwargs, "width", 79) + lines) * (extra + 1)
    if name == "center":
        return size + _width(args, kwargs, "width", 80)
    if name == "truncate":
        return size + extra
    return size


def _guard(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the deadline, a size bound before and a size check after."""
    skip = 2 if getattr(func, "jinja_pass_arg", None) is not None else 1

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        value, rest = args[skip - 1] if len(args) >= skip else "", args[skip:]
        if (rest or kwargs) and _growth(name, value, rest, kwargs) > MAX_OUTPUT:
            raise SecurityError(f"'{name}' would build a text longer than {MAX_OUTPUT} characters")
        return _bounded(func(*args, **kwargs))
    return guarded


class SandboxEnv(ImmutableSandboxedEnvironment):
    """The sandbox with our allowlists; arithmetic is refused at run time too.

    ``render_clock``/``render_budget``: the deadline of one render (a test passes its own clock)."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, *args: Any, render_clock: RenderClock = time.monotonic,
                 render_budget: float = MAX_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.render_clock = render_clock
        self.render_budget = render_budget
        self._compiled: dict[str, Any] = {}    # source → compiled template (a dispatch renders few)

    def compiled(self, source: str) -> Any:
        """``from_string(source)``, compiled once per text for this environment."""
        template = self._compiled.get(source)
        if template is None:
            if len(self._compiled) >= 128:
                self._compiled.clear()
            template = self._compiled[source] = self.from_string(source)
        return template

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        raise SecurityError(f"arithmetic ('{operator_}') is not allowed in templates")

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return isinstance(obj, str) and attr in METHODS

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        if isinstance(obj, str) and isinstance(argument, (int, slice)) and not isinstance(argument, bool):
            return obj[argument]
        raise SecurityError("only a letter or a slice of a text can be taken in templates")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if not self.is_safe_attribute(obj, attribute, None):
            raise SecurityError(f"attribute '{attribute}' is not allowed in templates")
        return getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        owner = getattr(__obj, "__self__", None)
        if args or kwargs or not isinstance(owner, str) or getattr(__obj, "__name__", "") not in METHODS:
            raise SecurityError("only upper(), lower(), title(), capitalize() and strip() can be called")
        return _bounded(__obj())


def environment(*, clock: RenderClock = time.monotonic, budget: float = MAX_SECONDS) -> SandboxEnv:
    """The one sandbox every template renders in: no globals, allowlisted filters and tests.
    A render may take ``budget`` seconds on ``clock`` (production: MAX_SECONDS, monotonic time)."""
    env = SandboxEnv(undefined=StrictUndefined, autoescape=False, trim_blocks=True, keep_trailing_newline=False,
                     render_clock=clock, render_budget=budget)
    env.globals.clear()
    env.filters = {name: _guard(name, f) for name, f in env.filters.items() if name in FILTERS}
    env.tests = {name: t for name, t in env.tests.items() if name in TESTS}
    return env


def sandboxed_render(env: SandboxEnv, source: str, filename: str, context: dict[str, str]) -> str:
    """The run-time layer alone (the tests prove it holds without ``check_source``)."""
    clock, budget = env.render_clock, env.render_budget
    token = _DEADLINE.set((clock, clock() + budget, budget))
    try:
        out: list[str] = []
        size = 0
        for chunk in env.compiled(source).generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"{filename}: the rendered text is longer than {MAX_OUTPUT} characters")
            _tick()
            out.append(chunk)
        return "".join(out)
    except TemplateError:
        raise
    except Exception as exc:  # whatever a template does, the caller sees one error type
        line = _line_of(exc)
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, JinjaTemplateError) else type(exc).__name__
        raise TemplateError(f"{filename}{':' + str(line) if line else ''}: cannot render: {detail}") from None
    finally:
        _DEADLINE.reset(token)


def _line_of(exc: BaseException) -> int | None:
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


