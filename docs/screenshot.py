"""Screenshot of a running explorer for the README (headless Debian Chromium via Playwright).

    python app.py &                       # the embedded default on 127.0.0.1:7860
    python docs/screenshot.py --url http://127.0.0.1:7860 --example 2 --level 2 --out docs/screenshot.png

Picks an example, clicks a point of the overlay (fractions of its width/height), waits for the
gallery of similar regions, moves the level slider, and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

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
# where the picture is drawn inside the letterboxed <img>
CONTENT_BOX = """el => { const r = el.getBoundingClientRect();
  const s = Math.min(r.width / el.naturalWidth, r.height / el.naturalHeight);
  const w = el.naturalWidth * s, h = el.naturalHeight * s;
  return {x: r.x + (r.width - w) / 2, y: r.y + (r.height - h) / 2, w: w, h: h}; }"""
GALLERY_READY = (
    "() => { const g = document.querySelectorAll('#hits img');"
    " return g.length > 0 && [...g].every(i => i.complete && i.naturalWidth > 0); }"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--example", type=int, default=0, help="index of the example to open")
    p.add_argument(
        "--click", type=float, nargs=2, default=(0.5, 0.5), help="x y as fractions of the image"
    )
    p.add_argument("--level", type=int, default=1, help="level to show (slider steps from 0)")
    p.add_argument("--out", default="docs/screenshot.png")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.goto(args.url)
        page.wait_for_selector("#examples img", timeout=60000)
        page.locator("#examples img").nth(args.example).click()
        page.wait_for_function(
            "() => { const i = document.querySelector('#overlay img');"
            " return i && i.naturalWidth > 0; }",
            timeout=60000,
        )
        slider = page.locator("#level input[type=range]")
        slider.focus()
        for _ in range(args.level):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(1500)
        box = page.locator("#overlay img").evaluate(CONTENT_BOX)
        page.mouse.click(box["x"] + box["w"] * args.click[0], box["y"] + box["h"] * args.click[1])
        page.wait_for_function(GALLERY_READY, timeout=60000)
        page.wait_for_timeout(1500)  # plots
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(args.out)


if __name__ == "__main__":
    main()
