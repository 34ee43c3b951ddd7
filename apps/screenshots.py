"""Screenshots of the sentiment app in headless Chromium, for the docs and for checking how the app reads.

Run: ``python -m toolkit.apps.screenshots RUN_DIR [--out docs/apps]``. It serves the run on a free loopback port, then
saves: the text tab with an answer, the warning for an empty text, the CSV tab before and after an upload.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

from toolkit.apps import build_app

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sentiment_screens(run_dir: str | Path, out: Path) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright  # a dev dependency: BROWSER_ARGS is read without it

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: chromium is not installed (Debian: apt-get install chromium).")
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    demo = build_app(run_dir)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    shots = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(f"http://127.0.0.1:{port}/")

            def shot(name: str) -> None:
                shots.append(out / f"sentiment-{name}.png")
                page.screenshot(path=str(shots[-1]), full_page=True)

            page.locator("textarea").first.fill("A gripping, beautifully acted film.")
            page.get_by_role("button", name="Classify", exact=True).click()
            expect(page.locator("#prediction")).to_contain_text("positive", timeout=30_000)
            shot("text")
            page.locator("textarea").first.fill("   ")
            page.get_by_role("button", name="Classify", exact=True).click()
            toast = page.locator(".toast-body").filter(visible=True).first
            expect(toast).to_contain_text("Type some text to classify.", timeout=10_000)
            print("toast:", toast.inner_text().replace("\n", " | "))
            page.wait_for_timeout(500)
            shot("empty-text")
            toast.get_by_role("button").last.click()  # close it before the next screen
            page.get_by_role("tab", name="CSV file").click()
            page.wait_for_timeout(500)
            shot("csv-before-upload")
            with tempfile.TemporaryDirectory() as folder:
                upload = Path(folder) / "reviews.csv"
                upload.write_text(
                    'text\n"A gripping, beautifully acted film."\n\n"Dull, predictable and far too long."\n'
                    '"=HYPERLINK(""http://example.com"")"\n',
                    encoding="utf-8",
                )
                page.locator("input[type=file]").first.set_input_files(str(upload))
                page.wait_for_timeout(1000)
                page.get_by_role("button", name="Classify file").click()
                expect(page.get_by_text("skipped: empty text").filter(visible=True).first).to_be_visible(timeout=30_000)
                page.wait_for_timeout(1000)  # the download box fades in
            shot("csv-after-upload")
            browser.close()
    finally:
        demo.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished sentiment run folder")
    parser.add_argument("--out", default="docs/apps", type=Path)
    args = parser.parse_args()
    for path in sentiment_screens(args.run, args.out):
        print(path)


if __name__ == "__main__":
    main()
