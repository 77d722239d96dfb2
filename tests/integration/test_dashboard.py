"""The live dashboard in a real headless browser (Debian's Chromium, driven by Playwright),
against the embedded system: one event produced shows on screen within 2 s."""

import json
import shutil
import time

import httpx
import pytest

from recommender.settings import Settings
from streamrec.runtime import Runtime
from streams.kafka import bootstrap_servers
from streams.producer import EventProducer
from streams.records import EventV1

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: `make test` installs Debian's chromium with apt"
)
def test_one_event_shows_on_the_dashboard_within_two_seconds(settings: Settings, redis):
    from playwright.sync_api import expect, sync_playwright

    with Runtime(settings, api_port=0) as rt:
        key = rt.create_api_key({"read"}, "dashboard")
        # No key, no data: the stream refuses, the page itself holds nothing.
        assert httpx.get(f"{rt.api_url}/v1/metrics/stream").status_code == 401
        page_resp = httpx.get(f"{rt.api_url}/v1/dashboard")
        assert "script-src 'self'" in page_resp.headers["content-security-policy"]

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{rt.api_url}/v1/dashboard#key={key}")
            # Playwright's own waits: its `wait_for_function` evaluates a string, which the
            # page's Content-Security-Policy (rightly) refuses.
            expect(page.locator("#status")).to_have_text("live", timeout=15_000)
            assert "key=" not in page.url  # the key left the address bar
            # The worker's gauges arrive every second: the page is fed.
            expect(page.locator("#t-lag")).to_have_text("0", timeout=15_000)
            total = page.locator("#events-applied-total")
            expect(total).to_have_text("0")

            with EventProducer(
                bootstrap_servers(settings.kafka_url or ""),
                settings.topic_events,
                settings.topic_content,
            ) as producer:
                producer.send_event(
                    EventV1(event_id="dash-1", user_id="u1", item_id="i1", type="click",
                            ts=int(time.time() * 1000))
                )  # fmt: skip
                producer.flush()
                sent = time.monotonic()
            expect(total).to_have_text("1", timeout=10_000)
            shown_after = time.monotonic() - sent
            page.screenshot(path=str(rt.log_dir / "dashboard.png"), full_page=True)
            browser.close()
        assert errors == []
        assert shown_after <= 2.0, f"the event showed after {shown_after:.2f} s"
        assert json.loads(httpx.get(f"{rt.api_url}/v1/health/ready").text)["status"] == "ok"
