"""Screenshots of every web page at laptop and tablet width, for docs/web/.

Run against a served demo (``python3 dev.py demo``, or ``keepwise serve`` with the demo's key
file and ``KEEPWISE_DATA_DIR``), signed in with a key that may approve (the demo's director
key), given in the environment so it does not show in the process list::

    KEEPWISE_SCREENSHOT_KEY=kw_... .venv/bin/python -m experiments.web_screenshots \\
        --base-url http://127.0.0.1:8000 --out docs/web

The customer shown is the first candidate to end in the portfolio (biggest expected value),
with a what-if for the training offer at 400.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

WIDTHS = {"laptop": (1366, 768), "tablet": (768, 1024)}


def _shoot(page: Page, out: Path, name: str, label: str) -> None:
    page.screenshot(path=str(out / f"{name}-{label}.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Served keepwise.")
    parser.add_argument("--out", type=Path, default=Path("docs/web"), help="Folder for PNGs.")
    args = parser.parse_args()
    token = os.environ["KEEPWISE_SCREENSHOT_KEY"]
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.base_url.rstrip("/")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"]
        )
        for label, (width, height) in WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{base}/web/sign-in")
            _shoot(page, args.out, "sign-in", label)
            page.get_by_label("API key").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/web/")
            _shoot(page, args.out, "portfolio", label)
            customer = page.locator("table[aria-labelledby=end-heading] tbody a").first
            customer_id = customer.inner_text()
            page.goto(f"{base}/web/customers/{customer_id}?offer=training&cost=400#what-if")
            _shoot(page, args.out, "customer", label)
            page.goto(f"{base}/web/approvals")
            _shoot(page, args.out, "approvals", label)
            page.goto(f"{base}/web/model")
            _shoot(page, args.out, "model", label)
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
