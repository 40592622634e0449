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
CANVAS = "#overlay .hsg-canvas"
STATE = f"() => Object.assign({{}}, document.querySelector('{CANVAS}').dataset)"
GALLERY_READY = (
    "() => { const g = document.querySelectorAll('#hits img');"
    " return g.length > 0 && [...g].every(i => i.complete && i.naturalWidth > 0); }"
)


def require_browser():
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("HSG_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return pytest.importorskip("playwright.sync_api")


def open_example(page, url: str, number: int = 0) -> dict:
    """Open the page at `url`, click example `number`, wait until the canvas drew it: its box."""
    page.goto(url)
    page.wait_for_selector("#examples img", timeout=30000)
    page.locator("#examples img").nth(number).click()
    page.wait_for_function(
        f"() => {{ const r = document.querySelector('{CANVAS}'); return r && r.dataset.token; }}",
        timeout=30000,
    )
    return page.locator(f"{CANVAS} canvas.hover").bounding_box()


def alpha_at(page, layer: str, x: float, y: float) -> int:
    """Alpha of canvas `layer` (hover | pick) at page point (x, y)."""
    return page.evaluate(
        """([layer, x, y]) => { const c = document.querySelector('#overlay canvas.' + layer);
          const r = c.getBoundingClientRect();
          const px = Math.floor((x - r.left) * c.width / r.width), py = Math.floor((y - r.top) * c.height / r.height);
          return c.getContext('2d').getImageData(px, py, 1, 1).data[3]; }""",
        [layer, x, y],
    )


def hit_sources(page) -> list[str]:
    return [img.get_attribute("src") or "" for img in page.locator("#hits img").all()]


def test_hover_and_level_are_drawn_in_the_page_and_a_click_searches(server, tmp_path):  # noqa: F811
    """Issue 12 item 1: hover highlight and level changes make no server call; a click does."""
    playwright = require_browser()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # fresh temporary profile
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        box = open_example(page, server)
        x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6
        before = len(posts)
        page.mouse.move(x, y)
        page.wait_for_function(f"() => document.querySelector('{CANVAS}').dataset.hovered !== '-1'")
        assert alpha_at(page, "hover", x, y) > 0, "the hovered region is not highlighted"
        assert "region" in page.locator(f"{CANVAS} .caption").text_content()
        slider = page.locator("#level input[type=range]")
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => document.querySelector('{CANVAS}').dataset.level === '1'")
        time.sleep(0.5)
        assert posts[before:] == [], f"hover or level change called the server: {posts[before:]}"
        page.mouse.click(x, y)
        try:
            page.wait_for_function(GALLERY_READY, timeout=30000)
        except Exception:
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
            shutil.copy(tmp_path / "failed.png", "/tmp/browser_failed.png")
            raise
        assert len(posts) > before, "the click did not reach the server"
        state = page.evaluate(STATE)
        assert state["selected"].startswith("1:")  # selected at the level shown
        assert alpha_at(page, "pick", x, y) == 0  # the selected region is not dimmed
        dimmed = page.evaluate(
            "() => { const c = document.querySelector('#overlay canvas.pick');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] === 140; return n; }"
        )
        assert dimmed > 0, "the rest of the image is not dimmed around the selection"
        # a hit opens in context (its image, the region outlined); the query stays open
        token, sources = state["token"], hit_sources(page)
        page.locator("#hits img").nth(0).click()
        page.wait_for_function(
            "() => { const i = document.querySelector('#context img');"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=30000,
        )
        assert page.evaluate(STATE)["token"] == token, "opening a hit replaced the query image"
        page.locator("#more_like_this").click()
        deadline = time.time() + 30
        while hit_sources(page) == sources and time.time() < deadline:
            time.sleep(0.2)
        assert hit_sources(page) != sources, "find more like this did not change the hits"
        shot = tmp_path / "explorer.png"
        page.mouse.move(0, 0)
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
        box = open_example(page, server)
        page.evaluate("window.scrollTo(0, 0)")  # where the page opens: the click needs no scroll
        box = page.locator(f"{CANVAS} canvas.hover").bounding_box()
        assert box["y"] + box["height"] * 0.6 < 900, "the image to click is below the fold"
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
        page.wait_for_function(GALLERY_READY, timeout=30000)
        assert page.evaluate("window.scrollY") == 0
        tile = page.locator("#hits .tile").first  # issue 12 item 4: the full name on hover
        tile.wait_for()
        title = tile.get_attribute("title") or ""
        assert title == tile.locator("img").get_attribute("alt") and title.count(" · ") == 2
        first = page.locator("#hits img").nth(0).bounding_box()
        assert first and 0 <= first["y"] and first["y"] + first["height"] <= 900, first
        before = gallery_count(page)
        assert before > 2  # 4 other images, one hit each at k = 8
        k_box = page.locator("#k input[type=number]")
        k_box.fill("2")
        k_box.press("Enter")
        assert wait_for_count(page, 2) == 2, "changing k did not re-run the search"
        # issue 12 item 5: a lasso over the whole map fills the gallery with what it enclosed
        page.wait_for_function(
            "() => Number(document.querySelector('#embedding-map .hsg-map').dataset.drawn) > 0",
            timeout=30000,
        )
        plot = page.locator("#embedding-map canvas.plot")
        plot.scroll_into_view_if_needed()
        area = plot.bounding_box()
        corners = [
            (area["x"] + area["width"] * fx, area["y"] + area["height"] * fy)
            for fx, fy in ((0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98))
        ]
        page.mouse.move(*corners[0])
        page.mouse.down()
        for corner in corners[1:] + corners[:1]:
            page.mouse.move(*corner, steps=6)
        page.mouse.up()
        assert wait_for_count(page, 64, timeout=40) == 64, "the lasso did not fill the gallery"
        browser.close()


DOWNLOAD_HREF = "() => document.querySelector('#download a[href]')?.getAttribute('href') || ''"


def error_toast(page, timeout: float = 30) -> str:
    """The text of the first error toast gradio shows, once one is there."""
    page.wait_for_selector(".toast-body", timeout=timeout * 1000)
    return page.locator(".toast-body").first.text_content() or ""


def test_a_bad_upload_says_why_on_the_page_and_exports_download(server, tmp_path):  # noqa: F811
    """Issue 12 items 8-9: a text file named .jpg gets its one-line reason in the page; the mask,
    cut-out and hits of a selection download as files."""
    playwright = require_browser()
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture at all")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server)
        page.wait_for_selector("#upload input[type=file]", state="attached", timeout=30000)
        page.locator("#upload input[type=file]").set_input_files(str(fake))
        message = error_toast(page)
        assert "holiday.jpg" in message and "Traceback" not in message, message
        page.reload()
        box = open_example(page, server)
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
        page.wait_for_function(GALLERY_READY, timeout=30000)
        for button, suffix in (
            ("#export_mask", ".png"),
            ("#export_cutout", ".png"),
            ("#export_hits", ".csv"),
            ("#export_crops", ".zip"),
            ("#export", ".zip"),
        ):
            before = page.evaluate(DOWNLOAD_HREF)
            page.locator(button).click()
            page.wait_for_function(  # a new file, not the previous export
                f"([before, suffix]) => {{ const h = ({DOWNLOAD_HREF})();"
                " return h && h !== before && h.endsWith(suffix); }",
                arg=[before, suffix],
                timeout=30000,
            )
            with page.expect_download() as download:
                page.locator("#download a[href]").first.click()
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            assert saved.suffix == suffix and saved.stat().st_size > 0
        browser.close()
