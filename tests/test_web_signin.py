"""The sign-in limits: five failed sign-ins from one address in five minutes, and twenty from
all addresses together in a minute, answer 429 with Retry-After; the time is the app's clock
(a FixedClock here, advanced by the test: nothing sleeps)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.web.security import SignInLimit
from tests.conftest import make_practice
from tests.test_web_routes import login_token
from tests.web_support import PASSWORD, console

pytestmark = pytest.mark.shows_client_data


@pytest.fixture
def site(tmp_path):
    practice = make_practice(tmp_path / "p")
    app, engine, clock = console(practice, story=False)
    yield app, clock
    engine.close()


def attempt(client, token, password, address):
    return client.post("/login", data={"password": password, "csrf": token},
                       environ_base={"REMOTE_ADDR": address})


def test_one_address_is_paused_for_what_is_left_of_five_minutes(site):
    app, clock = site
    client = app.test_client()
    token = login_token(client)
    for _ in range(5):
        assert attempt(client, token, "wrong", "192.0.2.1").status_code == 401
        clock.advance(timedelta(seconds=10))
    refused = attempt(client, token, PASSWORD, "192.0.2.1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "250"
    assert "Too many attempts; wait 5 minutes" in refused.get_data(as_text=True)
    assert attempt(client, token, "wrong", "192.0.2.2").status_code == 401     # another address is not held
    clock.advance(timedelta(seconds=249))
    assert attempt(client, token, PASSWORD, "192.0.2.1").status_code == 429
    clock.advance(timedelta(seconds=1))
    assert attempt(client, token, PASSWORD, "192.0.2.1").status_code == 302


def test_all_addresses_together_are_paused_after_twenty_failures_in_a_minute(site):
    app, clock = site
    client = app.test_client()
    token = login_token(client)
    for n in range(20):
        assert attempt(client, token, "wrong", f"198.51.100.{n}").status_code == 401
        clock.advance(timedelta(seconds=2))
    refused = attempt(client, token, PASSWORD, "203.0.113.9")                  # a fresh address too
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "20"
    assert "wait 20 seconds" in refused.get_data(as_text=True)
    clock.advance(timedelta(seconds=20))
    assert attempt(client, token, PASSWORD, "203.0.113.9").status_code == 302


def test_a_good_sign_in_clears_its_address_but_not_the_overall_count():
    limit = SignInLimit(per_address=2, address_window=100, overall=3, overall_window=100)
    limit.failed("a", 0)
    limit.failed("a", 1)
    assert limit.wait("a", 2) == 98
    limit.succeeded("a")
    assert limit.wait("a", 2) == 0
    limit.failed("b", 3)
    assert limit.wait("c", 4) == 96            # three failures overall: everyone waits for the oldest
    assert limit.wait("c", 100) == 0
