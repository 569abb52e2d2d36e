"""Render an experiment report in headless Chromium and check that it and its figures are not blank
and that nothing overflows the page.

Usage: python tests/report_render.py DIR/report/report.html [--screenshot shot.png] [--height 4000]
       [--open-screenshot shot-open.png]

Checks (exit 0 when all pass, 1 otherwise; prints what it measured):
- at least ``--min-images`` PNGs (default 1) are embedded in the HTML; each decodes, and its
  grey-level sd exceeds that of a white image of the same size holding only a 1-pixel black
  frame (:func:`frame_only_std`);
- Chromium (Debian's ``chromium`` package) renders the page, and the screenshot passes the same test;
- with every collapsible section opened, no element reaches past the right edge of a 1280-pixel
  window and no table cell, heading, paragraph or code block holds content wider than itself
  (:func:`overflow_report`: a copy of the page with a measuring script, read back with
  ``--dump-dom``; the report itself has no script).
Needs numpy and Pillow (both come with matplotlib).
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def frame_only_std(width: int, height: int) -> float:
    """Grey-level sd of a white ``width`` x ``height`` image holding only a 1-pixel black frame.

    The frame covers f = (2W + 2H - 4) / (W H) of the pixels; a two-level image with levels 0 and
    255 in proportions f and 1 - f has sd 255 * sqrt(f (1 - f)). A real plot draws at least an axes
    frame *plus* ticks, labels and data, so its sd must exceed this; a blank image has sd 0.
    """
    f = (2 * width + 2 * height - 4) / (width * height)
    return 255.0 * math.sqrt(f * (1 - f))


def grey_std(img: Image.Image) -> float:
    """Standard deviation of the grey levels (0..255) of ``img``."""
    return float(np.asarray(img.convert("L"), dtype=np.float64).std())


def is_blank(img: Image.Image) -> bool:
    """True when ``img`` carries no more structure than a lone frame (see :func:`frame_only_std`)."""
    return grey_std(img) <= frame_only_std(*img.size)


def embedded_pngs(html: str) -> list[bytes]:
    """The PNGs embedded in ``html`` as base64 data URIs, in page order."""
    return [base64.b64decode(blob) for blob in DATA_URI.findall(html)]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_screenshot(
    html_path: Path,
    out_png: Path,
    *,
    chromium: str,
    width: int = 1280,
    height: int = 4000,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Screenshot ``html_path`` (a local file) with headless Chromium into ``out_png``.

    A throw-away profile, no network services, no sandbox (runs as root in CI containers).
    """
    with tempfile.TemporaryDirectory(prefix="neftune-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out_png}",
            Path(html_path).resolve().as_uri(),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


#: Appended to a copy of the page: opens every <details>, then lists what sticks out to the right of
#: the window or out of its own box, as JSON in <pre id="overflow-result">.
_MEASURE = """<script>
for (const d of document.querySelectorAll('details')) d.open = true;
const W = document.documentElement.clientWidth;
const bad = [];
const name = el => el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ')[0] : '');
for (const el of document.querySelectorAll('body *')) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && r.right > W + 0.5) bad.push({el: name(el), right: Math.round(r.right), text: (el.textContent || '').slice(0, 60)});
}
for (const el of document.querySelectorAll('td, th, p, li, h1, h2, h3, pre, figure, figcaption, summary, table')) {
  const style = getComputedStyle(el);
  if (style.overflowX === 'auto' || style.overflowX === 'scroll') continue;
  if (el.scrollWidth > el.clientWidth + 1) bad.push({el: name(el), scroll: el.scrollWidth, client: el.clientWidth, text: (el.textContent || '').slice(0, 60)});
}
const out = document.createElement('pre');
out.id = 'overflow-result';
out.textContent = JSON.stringify({width: W, page: document.documentElement.scrollWidth, bad: bad});
document.body.appendChild(out);
</script>"""


def _with_script(html_path: Path, script: str, dest: Path) -> Path:
    text = Path(html_path).read_text(encoding="utf-8")
    dest.write_text(text.replace("</body>", script + "</body>"), encoding="utf-8")
    return dest


def overflow_report(html_path: Path, *, chromium: str, width: int = 1280, timeout: float = 120) -> dict:
    """``{"width", "page", "bad"}``: the window width, the page's scroll width and every element
    that sticks out (see :data:`_MEASURE`), measured in headless Chromium with all sections open."""
    import json

    with tempfile.TemporaryDirectory(prefix="neftune-overflow-") as tmp:
        copy = _with_script(html_path, _MEASURE, Path(tmp) / "measured.html")
        with tempfile.TemporaryDirectory(prefix="neftune-chromium-") as profile:
            cmd = [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--window-size={width},2000", "--dump-dom", copy.resolve().as_uri(),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    found = re.search(r'<pre id="overflow-result">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        raise RuntimeError(f"chromium printed no measurement (exit {proc.returncode}): {proc.stderr[-1500:]}")
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1)))


def open_screenshot(html_path: Path, out_png: Path, *, chromium: str, width: int = 1280, height: int = 4000):
    """A screenshot of the page with every collapsible section open."""
    with tempfile.TemporaryDirectory(prefix="neftune-open-") as tmp:
        script = "<script>for (const d of document.querySelectorAll('details')) d.open = true;</script>"
        copy = _with_script(html_path, script, Path(tmp) / "open.html")
        return chromium_screenshot(copy, out_png, chromium=chromium, width=width, height=height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the report.html to check")
    parser.add_argument("--screenshot", type=Path, default=None, help="where to keep the screenshot (PNG)")
    parser.add_argument("--height", type=int, default=4000, help="browser window height in pixels")
    parser.add_argument("--min-images", type=int, default=1, help="fail with fewer embedded PNGs than this")
    parser.add_argument(
        "--open-screenshot", type=Path, default=None, help="also a screenshot with all sections open"
    )
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"error: {args.html} not found", file=sys.stderr)
        return 1
    ok = True
    pngs = embedded_pngs(args.html.read_text(encoding="utf-8"))
    print(
        f"{len(pngs)} embedded PNG(s)"
        + (f"  FEWER THAN {args.min_images}" if len(pngs) < args.min_images else "")
    )
    ok &= len(pngs) >= args.min_images
    for k, data in enumerate(pngs):
        img = Image.open(io.BytesIO(data))
        img.load()
        blank = is_blank(img)
        ok &= not blank
        print(
            f"  #{k}: {img.size[0]}x{img.size[1]}, grey sd {grey_std(img):.1f} "
            f"(blank below {frame_only_std(*img.size):.1f}){'  BLANK' if blank else ''}"
        )
    chromium = find_chromium()
    if chromium is None:
        print("error: chromium not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        shot = args.screenshot or Path(tmp) / "screenshot.png"
        proc = chromium_screenshot(args.html, shot, chromium=chromium, height=args.height)
        if not shot.is_file():
            print(
                f"error: no screenshot (chromium exit {proc.returncode}): {proc.stderr[-2000:]}",
                file=sys.stderr,
            )
            return 1
        img = Image.open(shot)
        blank = is_blank(img)
        ok &= not blank
        print(
            f"screenshot {img.size[0]}x{img.size[1]}: grey sd {grey_std(img):.1f} "
            f"(blank below {frame_only_std(*img.size):.1f}){'  BLANK' if blank else ''}"
        )
        if args.screenshot:
            print(f"screenshot kept at {shot}")
        if args.open_screenshot:
            open_screenshot(args.html, args.open_screenshot, chromium=chromium, height=args.height)
            print(f"screenshot with every section open at {args.open_screenshot}")
    measured = overflow_report(args.html, chromium=chromium)
    print(
        f"window {measured['width']} px, page {measured['page']} px, {len(measured['bad'])} overflowing element(s)"
    )
    for item in measured["bad"][:20]:
        print(f"  OVERFLOW {item}")
    ok &= not measured["bad"] and measured["page"] <= measured["width"]
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())


def browser_check(html_path: Path, tmp_path: Path) -> Path | None:
    """For the tests: screenshot a report in headless Chromium (1280 px wide, every collapsible
    section open), check the screenshot is not blank and that nothing overflows the page.

    Without Chromium: nothing is checked, unless ``NEFTUNE_REQUIRE_BROWSER=1`` (CI), which makes it
    a failure. ``NEFTUNE_SCREENSHOT_DIR``: also keep each screenshot there, to look at.
    Returns the screenshot's path (None without Chromium).
    """
    import os
    import shutil as _shutil

    import pytest

    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("NEFTUNE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium not found but NEFTUNE_REQUIRE_BROWSER=1 (apt-get install chromium)")
        return None
    shot = Path(tmp_path) / f"{Path(html_path).parent.parent.name or 'report'}-open.png"
    proc = open_screenshot(Path(html_path), shot, chromium=chromium, height=2400)
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    assert not is_blank(Image.open(shot)), "the rendered report is blank"
    measured = overflow_report(Path(html_path), chromium=chromium)
    assert measured["page"] <= measured["width"], measured
    assert measured["bad"] == [], measured["bad"][:10]
    keep = os.environ.get("NEFTUNE_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        _shutil.copy(shot, Path(keep) / f"{Path(tmp_path).name}-{shot.name}")
    return shot
