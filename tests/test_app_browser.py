"""Real-browser test: headless Debian Chromium driven by Playwright (never its own browser download)."""

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.test_app import server  # noqa: F401  (fixture; `explorer` comes from conftest)

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

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
            page.wait_for_function(
                "() => { const g = document.querySelectorAll('#hits img');"
                " return g.length > 0 && [...g].every(i => i.complete && i.naturalWidth > 0); }",
                timeout=30000,
            )
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


def gallery_count(page) -> int:
    return page.locator("#hits img").count()


def wait_for_count(page, want: int, timeout: float = 30) -> int:
    """The number of gallery images once it is `want` (or when `timeout` seconds have passed)."""
    deadline = time.time() + timeout
    while gallery_count(page) != want and time.time() < deadline:
        time.sleep(0.2)
    return gallery_count(page)


def test_results_are_in_view_at_1400x900_and_a_new_k_reruns_the_search(server):  # noqa: F811
    """Issue 12 item 2: image | results side by side, no scroll to see the hits; k re-runs the search."""
    playwright = require_browser()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server)
        page.wait_for_selector("#examples img", timeout=30000)
        page.locator("#examples img").nth(0).click()
        page.wait_for_function(
            "() => { const i = document.querySelector('#overlay img');"
            " return i && i.naturalWidth > 0; }",
            timeout=30000,
        )
        page.evaluate(
            "window.scrollTo(0, 0)"
        )  # where the page opens: the click must need no scroll after it
        box = page.locator("#overlay img").evaluate(CONTENT_BOX)
        assert box["y"] + box["h"] * 0.6 < 900, "the image to click is below the fold"
        page.mouse.click(box["x"] + box["w"] * 0.3, box["y"] + box["h"] * 0.6)
        page.wait_for_function(
            "() => { const g = document.querySelectorAll('#hits img');"
            " return g.length > 0 && g[0].complete && g[0].naturalWidth > 0; }",
            timeout=30000,
        )
        assert page.evaluate("window.scrollY") == 0
        first = page.locator("#hits img").nth(0).bounding_box()
        assert first and 0 <= first["y"] and first["y"] + first["height"] <= 900, first
        before = gallery_count(page)
        assert before > 2  # 4 other images, one hit each at k = 8
        k_box = page.locator("#k input[type=number]")
        k_box.fill("2")
        k_box.press("Enter")
        assert wait_for_count(page, 2) == 2, "changing k did not re-run the search"
        browser.close()
