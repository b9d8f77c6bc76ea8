"""Regenerate docs/report.png: the report of the README's worked example, as Chromium shows it.

    .venv/bin/python docs/screenshot.py      # needs /usr/bin/chromium (apt-get install chromium)
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.cli import main  # noqa: E402
from tests.browser import chromium  # noqa: E402


def screenshot(out: Path = ROOT / "docs" / "report.png") -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "quickstart")
        os.chdir(ROOT)   # so the page names the scenario file as the README does
        with contextlib.redirect_stdout(io.StringIO()):   # the summary table is not wanted here
            if main(["run", "scenarios/quickstart.yaml", "--out", results]) != 0 or main(["report", results]) != 0:
                raise SystemExit("dcsim run or dcsim report failed")
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(Path(results, "report.html").as_uri(), wait_until="load")
            page.screenshot(path=str(out), full_page=True)
    return out


if __name__ == "__main__":
    print(screenshot())
