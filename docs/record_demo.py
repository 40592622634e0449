"""Record the README's screenshot and animated demo (hover -> click -> hit in context) in headless
Chromium against the embedded default.

    python docs/record_demo.py            # writes docs/screenshot.png and docs/demo.gif
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import app  # noqa: E402
from benchmarks.bench_app import CHROMIUM, free_port  # noqa: E402

DOCS = Path(__file__).resolve().parent
VIEW = {"width": 1400, "height": 900}
GIF_WIDTH = 800  # frames are scaled to this width


def frame(page) -> Image.Image:
    """The viewport as a GIF-ready frame."""
    shot = DOCS / ".frame.png"
    page.screenshot(path=str(shot))
    image = Image.open(shot).convert("RGB")
    shot.unlink()
    return image.resize((GIF_WIDTH, round(image.height * GIF_WIDTH / image.width)), Image.LANCZOS)


def record(url: str) -> tuple[list[Image.Image], list[int]]:
    """Frames and their durations (ms): open an example, hover across levels, click, open a hit."""
    from playwright.sync_api import sync_playwright

    frames, durations = [], []

    def keep(page, ms: int) -> None:
        frames.append(frame(page))
        durations.append(ms)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=VIEW)
        page.goto(url)
        page.wait_for_selector("#examples img", timeout=60000)
        page.locator("#examples img").nth(3).click()
        page.wait_for_function(
            "() => document.querySelector('#overlay .hsg-canvas')?.dataset.token", timeout=120000
        )
        box = page.locator("#overlay canvas.hover").bounding_box()
        point = (box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)
        keep(page, 1200)
        slider = page.locator("#level input[type=range]")
        for level in range(4):  # hover the same point while the levels merge
            if level:
                slider.focus()
                page.keyboard.press("ArrowRight")
                time.sleep(0.3)
            page.mouse.move(*point)
            time.sleep(0.2)
            keep(page, 900)
        page.mouse.click(*point)
        page.wait_for_function(
            "() => { const g = document.querySelectorAll('#hits img');"
            " return g.length > 0 && [...g].every(i => i.complete && i.naturalWidth > 0); }",
            timeout=60000,
        )
        time.sleep(1.5)  # the strip and the map follow the gallery
        page.mouse.move(0, 0)
        keep(page, 2200)
        page.screenshot(path=str(DOCS / "screenshot.png"))
        page.locator("#hits img").nth(0).click()
        page.wait_for_function(
            "() => { const i = document.querySelector('#context img');"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=60000,
        )
        page.locator("#context").scroll_into_view_if_needed()
        time.sleep(0.5)
        keep(page, 2500)
        browser.close()
    return frames, durations


def main() -> None:
    explorer = app.load_app(app.parse_args([]))
    demo = app.build_demo(explorer)
    port = free_port()
    demo.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        frames, durations = record(f"http://127.0.0.1:{port}/")
    finally:
        demo.close()
    palette = [f.convert("P", palette=Image.ADAPTIVE, colors=128) for f in frames]
    palette[0].save(
        DOCS / "demo.gif", save_all=True, append_images=palette[1:], duration=durations, loop=0
    )
    print(f"wrote {DOCS / 'screenshot.png'} and {DOCS / 'demo.gif'}")


if __name__ == "__main__":
    main()
