"""Headless Chromium through playwright, using Debian's browser (never one playwright downloads:
the machines this runs on reach only package registries)."""
from __future__ import annotations

import contextlib
import os

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


@contextlib.contextmanager
def chromium():
    """A launched browser; closed on exit."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
