"""Real-browser test: headless Debian Chromium driven by Playwright (never its own browser download)."""
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.test_app import server  # noqa: F401  (fixture; `explorer` comes from conftest)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.browser
# the <img> is letterboxed (object-fit: contain): find where the picture itself is drawn
CONTENT_BOX = """el => { const r = el.getBoundingClientRect();
  let s = Math.min(r.width / el.naturalWidth, r.height / el.naturalHeight);
  if (getComputedStyle(el).objectFit === "scale-down" || getComputedStyle(el).objectFit === "none") s = Math.min(s, 1);
  const w = el.naturalWidth * s, h = el.naturalHeight * s;
  return {x: r.x + (r.width - w) / 2, y: r.y + (r.height - h) / 2, w: w, h: h}; }"""


def require_browser():
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("HSG_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return pytest.importorskip("playwright.sync_api")


def overlay_src(page) -> str:
    return page.locator("#overlay img").get_attribute("src") or ""


def test_load_click_gallery_slider_screenshot(server, tmp_path):  # noqa: F811
    playwright = require_browser()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # fresh temporary profile
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server)
        page.wait_for_selector("#examples img", timeout=30000)
        page.locator("#examples img").nth(0).click()
        page.wait_for_selector("#overlay img", timeout=30000)
        page.wait_for_function("() => document.querySelector('#overlay img').naturalWidth > 0")
        box = page.locator("#overlay img").evaluate(CONTENT_BOX)  # the picture inside the <img> box
        page.mouse.click(box["x"] + box["w"] * 0.3, box["y"] + box["h"] * 0.6)
        try:
            page.wait_for_function("() => { const g = document.querySelectorAll('#hits img');"
                                   " return g.length > 0 && [...g].every(i => i.complete && i.naturalWidth > 0); }",
                                   timeout=30000)
        except Exception:
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
            shutil.copy(tmp_path / "failed.png", "/tmp/browser_failed.png")
            raise
        before = overlay_src(page)
        slider = page.locator("#level input[type=range]")
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        deadline = time.time() + 20
        while overlay_src(page) == before and time.time() < deadline:
            time.sleep(0.2)
        assert overlay_src(page) != before, "moving the level slider did not change the overlay"
        shot = tmp_path / "explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("HSG_SCREENSHOT_OUT"):
        shutil.copy(shot, os.environ["HSG_SCREENSHOT_OUT"])
