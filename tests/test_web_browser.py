"""The console end to end in the real system Chromium (Debian's chromium + chromium-driver, driven
by Selenium): sign in, mark a call reached and see the follow-up stop in `status --json`, edit a
template into an error and see the inline message, fix it and see the preview, resolve an
uncertain step, sign out.  One browser for the module; a screenshot of each page under tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from daemon.web.serve import Listen, Server
from tests.conftest import make_practice
from tests.web_support import PASSWORD, console, make_uncertain

pytestmark = [pytest.mark.shows_client_data]

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGES = ["/", "/followups", "/attention", "/templates", "/templates/email_followup", "/clients",
         "/client/0", "/calendars", "/patterns"]


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(DRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def site(tmp_path, browser):
    practice = make_practice(tmp_path / "p")
    app, engine, clock = console(practice)
    server = Server(app, Listen("127.0.0.1", 0), SimpleNamespace(tls_cert=None, tls_key=None, trusted_proxy=None),
                    practice.root)
    server.start()
    browser.delete_all_cookies()
    yield SimpleNamespace(practice=practice, engine=engine, base=f"http://127.0.0.1:{server.port}",
                          shots=tmp_path / "screenshots")
    browser.get("about:blank")          # nothing of this test's page left in flight when the server stops
    # Chromium keeps a spare (preconnected) socket open on which it never sends a request; a
    # cheroot worker waits on it for a request line, and stop() grants such workers the console's
    # 2 s grace before closing their sockets.  These tests do not test stopping: a short grace.
    server.server.shutdown_timeout = 0.2
    server.stop()
    engine.close()


def by(kind: str, value: str):
    from selenium.webdriver.common.by import By

    return getattr(By, kind), value


def sign_in(browser, site) -> None:
    browser.get(site.base + "/followups")
    assert browser.current_url.endswith("/login")
    browser.find_element(*by("ID", "password")).send_keys(PASSWORD)
    browser.find_element(*by("CSS_SELECTOR", "form button[type=submit]")).click()
    wait_for(browser, lambda d: d.current_url.rstrip("/") == site.base)
    assert browser.find_element(*by("TAG_NAME", "h1")).text == "Today"


def shot(browser, site, name: str) -> Path:
    site.shots.mkdir(exist_ok=True)
    path = site.shots / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def wait_for(browser, condition, timeout: float = 5.0):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,
                                                               NoSuchElementException)).until(condition)


def test_sign_in_mark_reached_and_the_follow_up_stops(browser, site, capsys):
    sign_in(browser, site)
    card = browser.find_element(*by("CSS_SELECTOR", "article.card"))
    assert "Jane Doe" in card.text
    assert card.find_element(*by("CSS_SELECTOR", "a[href^='tel:']")).get_attribute("href") == "tel:+15550100201"
    shot(browser, site, "today")
    card.find_element(*by("CSS_SELECTOR", "button[value=reached]")).click()
    wait_for(browser, lambda d: "Marked reached; 2 planned step(s) stopped." in d.find_element(*by("CSS_SELECTOR", ".note")).text)
    assert {(s["state"], s["reason"]) for s in site.practice.status(capsys)} == {("skipped", "reached")}
    for path in PAGES:
        browser.get(site.base + path)
        assert browser.find_element(*by("TAG_NAME", "h1")).text
        shot(browser, site, path.strip("/").replace("/", "-") or "today-after")
    browser.find_element(*by("CSS_SELECTOR", ".signout button")).click()
    wait_for(browser, lambda d: d.current_url.endswith("/login"))
    browser.get(site.base + "/")
    assert browser.current_url.endswith("/login")
    assert len(list(site.shots.glob("*.png"))) == len(PAGES) + 1


def test_template_error_inline_then_fixed_with_live_preview(browser, site):
    sign_in(browser, site)
    browser.get(site.base + "/templates/email_followup")
    area = browser.find_element(*by("ID", "text"))
    area.clear()
    area.send_keys("Subject: Thinking of you\n\nHello {{ client_first_name }\n")
    browser.find_element(*by("CSS_SELECTOR", "button[value=save]")).click()
    wait_for(browser, lambda d: d.find_element(*by("CSS_SELECTOR", "#problems .problem")).text.startswith("Line 3"))
    shot(browser, site, "template-error")
    area = browser.find_element(*by("ID", "text"))
    area.clear()
    area.send_keys("Subject: Thinking of you\n\nHello {{ client_first_name }}, the door is open.\n")
    wait_for(browser, lambda d: "Hello Sam, the door is open." in d.find_element(*by("ID", "body")).text)
    assert browser.find_elements(*by("CSS_SELECTOR", "#problems .problem")) == []   # the live preview
    assert browser.find_element(*by("ID", "length")).text == str(len("Hello Sam, the door is open."))
    browser.find_element(*by("CSS_SELECTOR", "button[value=save]")).click()
    wait_for(browser, lambda d: "Saved." in d.page_source)
    shot(browser, site, "template-fixed")
    assert "the door is open" in (site.practice.root / "templates" / "email_followup.txt").read_text()


def test_resolve_an_uncertain_step_from_needs_attention(browser, site, capsys):
    step = make_uncertain(site.engine)
    sign_in(browser, site)
    browser.get(site.base + "/attention")
    shot(browser, site, "attention-uncertain")
    browser.find_element(*by("CSS_SELECTOR", f"form[action='/step/{step}/resolve'] button[value=sent]")).click()
    wait_for(browser, lambda d: f"Step {step}: sent." in d.find_element(*by("CSS_SELECTOR", ".note")).text)
    assert [s["state"] for s in site.practice.status(capsys) if s["id"] == step] == ["sent"]


def test_keyboard_only_sign_in(browser, site):
    from selenium.webdriver.common.keys import Keys

    browser.get(site.base + "/login")
    browser.switch_to.active_element.send_keys(PASSWORD + Keys.ENTER)   # the field has autofocus
    wait_for(browser, lambda d: d.current_url.rstrip("/") == site.base)
    assert browser.find_element(*by("TAG_NAME", "h1")).text == "Today"


ALL_PAGES = PAGES + ["/templates/phone_call", "/followups?state=planned", "/patterns?month=2026-10"]
# Chromium's own emulation: a phone (390 x 844 CSS pixels, as an iPhone 12-15), and a 1280 x 900
# window at 200 % zoom, which leaves the page 640 x 450 CSS pixels at twice the density.
SCREENS = {"phone": {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True},
           "zoom200": {"width": 640, "height": 450, "deviceScaleFactor": 2, "mobile": False}}
UNLABELLED = """
return Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length && el.labels[0].textContent.trim())
                && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120));
"""
SIDEWAYS = "var e = document.scrollingElement; return [e.scrollWidth, e.clientWidth];"


def emulate(browser, screen: str | None) -> None:
    if screen is None:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    else:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", SCREENS[screen])


def with_ambiguous_appointment(site) -> None:
    """Chris Park's no-show on the calendar too: two directory clients fit it, so Needs
    attention shows the choice form (radio buttons)."""
    from tests.conftest import local
    from tests.ics import Ev
    from tests.stories import team

    jane = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe no-show")
    chris = Ev("c1", local(2026, 11, 3, 14), local(2026, 11, 3, 14, 50), "Chris Park")
    site.practice.calendar([team(), jane, chris])
    site.practice.once(local(2026, 11, 3, 12))
    chris.summary = "Chris Park no-show"
    site.practice.calendar([team(), jane, chris])
    site.practice.once(local(2026, 11, 3, 15))


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_every_page_fits_a_phone_and_200_percent_zoom_without_sideways_scrolling(browser, site, screen):
    with_ambiguous_appointment(site)
    step = make_uncertain(site.engine)
    sign_in(browser, site)
    emulate(browser, screen)
    try:
        for path in ALL_PAGES:
            browser.get(site.base + path)
            assert browser.find_element(*by("TAG_NAME", "h1")).text
            width, view = browser.execute_script(SIDEWAYS)
            shot(browser, site, f"{screen}-" + (path.strip("/").replace("/", "-").replace("?", "-") or "today"))
            assert width <= view + 1, (screen, path, width, view)
            if path == "/attention":        # with the choice form and an uncertain step's buttons
                assert browser.find_elements(*by("CSS_SELECTOR", f"form[action='/step/{step}/resolve']"))
                assert browser.find_elements(*by("CSS_SELECTOR", "input[type=radio]"))
        browser.find_element(*by("CSS_SELECTOR", ".signout button")).click()
        wait_for(browser, lambda d: d.current_url.endswith("/login"))
        width, view = browser.execute_script(SIDEWAYS)
        shot(browser, site, f"{screen}-login")
        assert width <= view + 1, (screen, "/login", width, view)
    finally:
        emulate(browser, None)


def test_every_control_on_every_page_has_a_label(browser, site):
    with_ambiguous_appointment(site)
    browser.get(site.base + "/login")
    assert browser.execute_script(UNLABELLED) == []
    sign_in(browser, site)
    seen = 0
    for path in ALL_PAGES:
        browser.get(site.base + path)
        assert browser.execute_script(UNLABELLED) == [], path
        seen += browser.execute_script("return document.querySelectorAll('input:not([type=hidden]), select, textarea').length")
    browser.get(site.base + "/attention")
    radios = browser.find_elements(*by("CSS_SELECTOR", "input[type=radio][name=client]"))
    assert len(radios) == 2 and browser.execute_script(UNLABELLED) == []
    assert seen >= 4      # the checks looked at real controls: filter, search, template text, preview client


def test_keyboard_only_tab_reaches_reached_and_enter_marks_it(browser, site, capsys):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, site)
    browser.get(site.base + "/")
    path = []
    for _ in range(60):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        active = browser.switch_to.active_element
        path.append(active.tag_name + ":" + (active.get_attribute("value") or active.text)[:20])
        if active.tag_name == "button" and active.get_attribute("value") == "reached":
            break
    else:
        pytest.fail(f"Tab never reached the Reached button: {path}")
    assert any(p.startswith("a:") for p in path)          # through the skip link and the menu first
    shot(browser, site, "keyboard-reached-focused")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: "Marked reached; 2 planned step(s) stopped." in d.find_element(*by("CSS_SELECTOR", ".note")).text)
    assert {(s["state"], s["reason"]) for s in site.practice.status(capsys)} == {("skipped", "reached")}


def test_the_choice_for_an_ambiguous_appointment_by_keyboard(browser, site, capsys):
    from selenium.webdriver.common.keys import Keys

    with_ambiguous_appointment(site)
    sign_in(browser, site)
    browser.get(site.base + "/attention")
    second = browser.find_elements(*by("CSS_SELECTOR", "input[type=radio][name=client]"))[1]
    label = browser.find_element(*by("CSS_SELECTOR", f"label[for='{second.get_attribute('id')}']")).text
    assert "c.park@example.org" in label
    second.send_keys(Keys.SPACE)
    assert second.is_selected()
    shot(browser, site, "attention-choice")
    browser.find_element(*by("XPATH", "//button[text()='This is the client']")).send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "Remembered: this appointment is with Chris Park" in d.find_element(*by("CSS_SELECTOR", ".note")).text)
    assert "Chris Park" in {s["client"] for s in site.practice.status(capsys)}


def test_the_live_preview_follows_the_client_chosen_in_the_select(browser, site):
    from selenium.webdriver.support.ui import Select

    sign_in(browser, site)
    browser.get(site.base + "/templates/email_followup")
    area = browser.find_element(*by("ID", "text"))
    area.clear()
    area.send_keys("Subject: Hello\n\nDear {{ client_first_name }}.\n")
    wait_for(browser, lambda d: d.find_element(*by("ID", "body")).text == "Dear Sam.")
    Select(browser.find_element(*by("ID", "client"))).select_by_visible_text("Jane Doe (jane.doe@example.com)")
    wait_for(browser, lambda d: d.find_element(*by("ID", "body")).text == "Dear Jane.")
    shot(browser, site, "template-preview-jane")
    assert browser.find_element(*by("ID", "length")).text == str(len("Dear Jane."))
