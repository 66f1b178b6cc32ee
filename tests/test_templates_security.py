"""Server-side template injection: every payload is refused at save and at render, quickly.

Two layers are tested separately: ``validate_text`` (what ``templates edit`` and
``check`` run), and ``Templates.render`` on a file forced into the therapist's
folder.  Where a payload compiles at all, the run-time sandbox alone
(``sandboxed_render``, without the static check) must stop it too.

"Quickly" is measured on a render clock the test owns (``TickClock``: every
cooperative deadline check reads it once and moves it on), never on the
machine's speed: a payload must be stopped by a rule or a size bound before
the render budget runs out, and the deadline itself is tested by its count.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.errors import TemplateError
from daemon.templating.allowlist import check_source
from daemon.templating.sandbox import MAX_SECONDS, environment, sandboxed_render
from daemon.templating.templates import (
    Templates,
    render_text,
    sample_context,
    validate_text,
)


class TickClock:
    """A render clock that advances ``step`` seconds each time the sandbox reads it."""

    def __init__(self, step: float = 1e-5) -> None:        # by default 100 000 checks make one second
        self.step, self.now, self.reads = step, 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now

PAYLOADS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ client_first_name|attr('__class__') }}",
    "{{ client_first_name.__class__ }}",
    "{{ client_first_name['__class__'] }}",
    '{{ "{0.__class__}".format(client_first_name) }}',
    "{{ client_first_name.format_map({}) }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 'x' * 100000000 }}",
    "{% for a in practice %}{% for b in practice %}{% for c in practice %}{{ a }}{% endfor %}{% endfor %}{% endfor %}",
    "{{ cycler }}",
    "{{ joiner }}",
    "{{ namespace() }}",
    "{{ lipsum }}",
    "{{ self }}",
    "{{ config }}",
    "{{ request }}",
    "{{ range(10) }}",
    '{% include "/etc/passwd" %}',
    "{% import 'x' as y %}",
    "{% from 'x' import y %}",
    "{% extends 'base.txt' %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% set x = client_first_name * 1000000 %}{{ x }}",
    "{% for a in practice %}{% for b in practice %}{% set s = s ~ practice ~ practice %}{% endfor %}{% endfor %}",
    "{{ 9**9**9 }}",
    "{{ client_first_name|map('upper')|list }}",
    "{{ client_first_name|selectattr('x') }}",
    "{{ '%s'|format(client_first_name) }}",
    "{{ client_first_name|pprint }}",
    "{{ client_first_name|tojson }}",
    "{{ diagnosis }}",
    "{{ client_first_name.upper.__globals__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% with x = client_first_name %}{{ x }}{% endwith %}",
    "{% filter upper %}{{ client_first_name }}{% endfilter %}",
    "{{ client_first_name|replace('a', 'b'*10000000) }}",
    "{{ client_first_name|replace('', practice)|replace('', practice)|replace('', practice)|replace('', practice) }}",
    "{{ client_first_name|center(100000000) }}",
    "{{ client_first_name|indent(100000000) }}",
    "{{ client_first_name|wordwrap(1, true, '" + "x" * 400 + "')|wordwrap(1, true, '" + "x" * 400 + "') }}",
    "{{ client_first_name|truncate(5, true, 'x' * 10000000) }}",
    "{{ client_first_name|join('x' * 100000) }}",
    "{{ client_first_name[client_first_name] }}",
    "{{ client_first_name ~ practice }}",
    "{% call m() %}x{% endcall %}",
    "{% autoescape false %}{{ client_first_name }}{% endautoescape %}",
    "{% set x %}{{ practice }}{% endset %}{{ x }}",
    "{{ [client_first_name] * 1000 }}",
    "{{ {'a': 1} }}",
    "{{ client_first_name.replace('a', 'b') }}",
    "{% set loop = 1 %}{{ loop }}",
    "{% do client_first_name.upper() %}",
    "{{ client_first_name|e|e|e|safe }}",
    "{{ 99999999999999999999999 }}",
    "{{ client_first_name.__len__() }}",
    "{{ client_first_name|string|attr('__mro__') }}",
    "Hi {{ client_first_name }\x00",
    "{{ missing_ok|default('x') if missing_ok is defined else 'none' }}",
]
# The payloads that compile in the sandbox alone, and the harmless text each renders to.
SANDBOX_RENDERS = {
    "{% for a in practice %}{% for b in practice %}{% for c in practice %}{{ a }}{% endfor %}{% endfor %}{% endfor %}":
        "".join(letter * 21 * 21 for letter in "Riverside Counselling"),
    "{{ self }}": "<TemplateReference None>",
    "{% with x = client_first_name %}{{ x }}{% endwith %}": "Sam",
    "{% filter upper %}{{ client_first_name }}{% endfilter %}": "SAM",
    "{{ client_first_name ~ practice }}": "SamRiverside Counselling",
    "{% autoescape false %}{{ client_first_name }}{% endautoescape %}": "Sam",
    "{% set x %}{{ practice }}{% endset %}{{ x }}": "Riverside Counselling",
    "{{ {'a': 1} }}": "{'a': 1}",
    "{% set loop = 1 %}{{ loop }}": "1",
    "{{ 99999999999999999999999 }}": "99999999999999999999999",
    "{{ missing_ok|default('x') if missing_ok is defined else 'none' }}": "none",
}
REFUSED_BY_THE_SANDBOX = [p for p in PAYLOADS if p not in SANDBOX_RENDERS]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_rejected_at_save_with_file_and_line(payload: str) -> None:
    problems = validate_text("Subject: Hello\n\n" + payload + "\n", "/t/phone_call.txt")
    assert problems, payload
    assert all(p.startswith("/t/phone_call.txt:") for p in problems)
    assert any(p.startswith("/t/phone_call.txt:3:") for p in problems), problems


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_forced_into_the_folder_never_renders(payload: str, tmp_path: Path) -> None:
    path = tmp_path / "phone_call.txt"
    path.write_text("Subject: Hello\n\n" + payload + "\n", encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        Templates(tmp_path).render("phone_call", sample_context())
    assert "phone_call.txt" in str(caught.value)
    clock = TickClock()                        # the same render path, on a clock the test owns
    with pytest.raises(TemplateError) as again:
        render_text(path.read_text(encoding="utf-8"), str(path), sample_context(), env=environment(clock=clock))
    assert "took longer" not in str(again.value)             # stopped by a rule or bound, not the deadline


@pytest.mark.parametrize("payload", REFUSED_BY_THE_SANDBOX)
def test_the_sandbox_alone_stops_every_payload(payload: str) -> None:
    """Without the static check: refused with TemplateError, by a rule or bound, within the budget."""
    clock = TickClock()
    with pytest.raises(TemplateError) as caught:
        sandboxed_render(environment(clock=clock), payload, "p.txt", sample_context())
    assert "took longer" not in str(caught.value)


@pytest.mark.parametrize("payload,expected", SANDBOX_RENDERS.items(), ids=range(len(SANDBOX_RENDERS)))
def test_the_few_payloads_the_sandbox_compiles_render_harmless_text(payload: str, expected: str) -> None:
    clock = TickClock()
    assert sandboxed_render(environment(clock=clock), payload, "p.txt", sample_context()) == expected


HARMLESS = {
    "{% raw %}{{ ''.__class__ }}{% endraw %}": "{{ ''.__class__ }}",
    "{% raw %}{% include '/etc/passwd' %}{% endraw %}": "{% include '/etc/passwd' %}",
    "{{ client_first_name|upper }}": "SAM",
    "{{ client_first_name.upper() }}": "SAM",
    "{{ client_first_name[0] }}.": "S.",
    "{% if practice_phone %}call {{ practice_phone }}{% endif %}": "call +1 555 010 0100",
    "{% set who = therapist_first_name|default('us') %}{{ who }}": "Ana",
    "{{ client_first_name|replace('S', 'P') }}": "Pam",
}


@pytest.mark.parametrize("source,expected", HARMLESS.items())
def test_harmless_templates_still_render_as_text(source: str, expected: str, tmp_path: Path) -> None:
    assert validate_text(source, "ok.txt") == []
    (tmp_path / "ok.txt").write_text(source + "\n")
    assert Templates(tmp_path).render("ok", sample_context()).text.strip() == expected


def test_the_defaults_pass_and_the_output_cap_holds(tmp_path: Path) -> None:
    templates = Templates(tmp_path)
    assert all(templates.validate(name) == [] for name in templates.names())
    big = "x" * 400
    (tmp_path / "big.txt").write_text(("{{ practice|center(9000) }}" + big) * 4 + "\n")
    with pytest.raises(TemplateError, match="longer than"):
        templates.render("big", sample_context())


def test_a_template_name_cannot_be_a_path(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not a template name"):
        Templates(tmp_path).render("../../etc/passwd", sample_context())


SLOW_UNIT = "{% set a = practice|center(9000)|wordwrap(1) %}"       # two deadline checks per unit


def test_the_render_deadline_stops_a_slow_but_valid_template() -> None:
    """Hundreds of individually small filters: allowed one by one, stopped together by the budget."""
    source = SLOW_UNIT * (19_000 // len(SLOW_UNIT))
    assert check_source(source, "slow.txt") == []             # every construct is allowed
    clock = TickClock(step=0.01)                              # 100 checks make one second
    with pytest.raises(TemplateError, match="took longer than 1 s"):
        render_text(source, "slow.txt", sample_context(), env=environment(clock=clock, budget=1.0))
    assert 100 <= clock.reads <= 103                          # stopped at the first check past the budget


def test_a_template_within_the_budget_is_not_stopped() -> None:
    """The twin: the same filters, fewer of them, on the same clock, render to the end."""
    clock = TickClock(step=0.01)
    source = SLOW_UNIT * 40 + "{{ practice }}"                # 80 filter checks and 2 output checks
    out = render_text(source, "ok.txt", sample_context(), env=environment(clock=clock, budget=1.0))
    assert out == "Riverside Counselling" and clock.reads < 100


def test_production_renders_on_the_monotonic_clock_with_the_documented_budget() -> None:
    env = environment()
    assert (env.render_clock, env.render_budget, MAX_SECONDS) == (time.monotonic, 1.0, 1.0)


def test_a_forced_payload_holds_the_step_and_nothing_is_sent(practice, capsys) -> None:
    """Through the real CLI: the step is held (nothing lost, nothing sent) until the template is fixed."""
    from tests.conftest import local
    from tests.ics import Ev

    folder = practice.root / "templates"
    folder.mkdir()
    (folder / "phone_call.txt").write_text("Subject: Call\n\n{{ client_first_name|attr('__class__') }}\n")
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.calendar([session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "Jane Doe no-show"
    practice.calendar([session])
    practice.once(local(2026, 11, 3, 11))
    capsys.readouterr()
    practice.once(local(2026, 11, 4, 10, 5))
    assert "held:template" in capsys.readouterr().out
    assert (practice.status(capsys)[0]["state"], practice.status(capsys)[0]["reason"]) == ("held", "template")
    assert practice.mails() == []
