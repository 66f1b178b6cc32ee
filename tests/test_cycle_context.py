"""Planning, dispatch and the digest work from a CycleContext alone: no Engine is built.

The context is made from real parts — the practice's config, a SQLite store in the test's
folder, the CSV directory, the default templates and the outbox channel — so each step of the
cycle can be tested on its own.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from connectors.channels.base import ChannelContext
from daemon.backends import EMAIL_BACKENDS, PHONE_BACKENDS
from daemon.client_files import load_directory
from daemon.clock import FixedClock
from daemon.config import load
from daemon.engine.context import CycleContext
from daemon.engine.digest import build_digest
from daemon.engine.dispatch import Dispatcher
from daemon.engine.planning import start_follow_up
from daemon.model import SessionRow, Trigger
from daemon.store import followups
from daemon.store import sessions as session_store
from daemon.store.db import Store
from daemon.templating.templates import Templates
from tests.conftest import local, make_practice

START = local(2026, 11, 3, 10)
SEEN = local(2026, 11, 3, 11)


def context(root: Path, clock: FixedClock) -> CycleContext:
    config = load(make_practice(root).config)
    p = config.practice
    channels = ChannelContext(base_dir=config.base_dir, state_dir=root, timezone=p.timezone, clock=clock,
                              secret=lambda name: "", practice_name=p.name, therapist_name=p.therapist,
                              therapist_email=p.therapist_email, sender=config.email.common.sender)
    email = EMAIL_BACKENDS.load("outbox")(config.email.options, channels)
    phone = PHONE_BACKENDS.load("therapist-email")(config.phone.options,
                                                  ChannelContext(**{**vars(channels), "email_channel": email}))
    return CycleContext(config=config, store=Store(f"sqlite:///{root / 'state.db'}"),
                        directory=load_directory(root / "clients.csv"), templates=Templates(root / "templates"),
                        email=email, phone=phone, clock=clock, worker="test:1")


def jane_missed(ctx: CycleContext) -> Trigger:
    """Jane's session, marked a no-show in the store's snapshot, as detection leaves it."""
    jane = ctx.directory.find("Jane Doe")[0]
    row = SessionRow(calendar="main", key="s1", uid="s1", start=START, end=local(2026, 11, 3, 10, 50),
                     client_id=jane.id, client_name=jane.name, client_email=jane.email, no_show=True,
                     first_seen_at=local(2026, 11, 2, 8), last_seen_at=SEEN)
    with ctx.store.transaction() as conn:
        session_store.save(conn, [row], {})
    return Trigger("no_show", "main", "s1", START, jane.id, jane.name, jane.email, "", SEEN)


def test_planning_dispatch_and_digest_run_from_the_context_alone(tmp_path: Path) -> None:
    clock = FixedClock(SEEN)
    ctx = context(tmp_path / "p", clock)
    trigger = jane_missed(ctx)
    with ctx.store.transaction() as conn:
        assert start_follow_up(ctx, conn, trigger, SEEN) == 1
        due = [(s["n"], s["channel"], s["state"]) for s in followups.all_steps(conn)]
    assert due == [(1, "phone", "planned"), (2, "email", "planned")]
    clock.set(local(2026, 11, 4, 7, 30))
    digest = build_digest(ctx, clock.now())
    assert digest is not None and "Calls to make today" in digest.text and "Jane Doe" in digest.text
    clock.set(local(2026, 11, 4, 10, 5))
    assert Dispatcher(ctx).run() == {"sent": 1}
    (task,) = (tmp_path / "p" / "outbox").glob("*.eml")
    assert "To: Ana Ruiz <ana@riverside.example>" in task.read_text()
    ctx.store.close()


def test_the_same_trigger_twice_starts_one_follow_up(tmp_path: Path) -> None:
    ctx = context(tmp_path / "p", FixedClock(SEEN))
    trigger = jane_missed(ctx)
    with ctx.store.transaction() as conn:
        assert start_follow_up(ctx, conn, trigger, SEEN) == 1
        assert start_follow_up(ctx, conn, trigger, SEEN) == 0
        assert len(followups.all_steps(conn)) == 2
    ctx.store.close()


def test_contexts_are_keyword_only_and_frozen(tmp_path: Path) -> None:
    ctx = context(tmp_path / "p", FixedClock(SEEN))
    with pytest.raises(TypeError):
        CycleContext(ctx.config, ctx.store)  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        ctx.worker = "another"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ChannelContext(tmp_path, tmp_path)  # type: ignore[misc]
    ctx.store.close()
