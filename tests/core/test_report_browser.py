"""report.html in a real headless browser (Debian's Chromium, driven by Playwright): it loads
with no console error, its thumbnails decode, and its pager turns pages."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from spotbot.core.records import Job, Result, TaskStatus
from spotbot.core.report import render_report

pytestmark = pytest.mark.integration


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium: `make chromium` (apt-get install chromium) installs it")


def _png(seed: int) -> bytes:
    image = Image.new("RGB", (800, 450), (40 + seed % 200, 90, 160))
    ImageDraw.Draw(image).rectangle((100, 100, 500, 200), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_report_loads_clean_and_its_thumbnails_render(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    # GIVEN a report of 60 tagged images (three thumbnail pages) and 120 failures
    job = Job(id="job-b", bot="ocr-zh", source="/in", output="/out", model_version="v1")
    box = [[100, 100], [500, 100], [500, 200], [100, 200]]
    results = [
        Result(
            job.id,
            f"img{i:03d}.png",
            "ocr-zh",
            "v1",
            TaskStatus.DONE,
            tags=[{"label": f"招牌{i % 7}", "score": 0.9, "box": box}],
            finished_at=f"2026-01-01T10:00:{i % 60:02d}+00:00",
        )
        for i in range(60)
    ] + [
        Result(job.id, f"bad{i:03d}.png", "ocr-zh", "v1", TaskStatus.FAILED, error="corrupt PNG")
        for i in range(120)
    ]
    path = tmp_path / "report.html"
    path.write_bytes(
        render_report(job, {"counts": {"total": 180}}, results, read=lambda k: _png(len(k)))
    )
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # WHEN it is opened
            page.goto(path.as_uri(), wait_until="load")
            # THEN nothing went wrong and every visible thumbnail decoded
            widths = page.eval_on_selector_all(
                ".card:not([hidden]) img", "els => els.map(e => e.complete && e.naturalWidth)"
            )
            assert len(widths) == 24 and all(w == 320 for w in widths)
            assert page.locator(".card:not([hidden]) polygon").count() == 24
            # and the pager shows the next page of thumbnails
            page.click('nav[data-section="thumbs"] button[data-step="1"]')
            shown = page.eval_on_selector_all(
                ".card:not([hidden]) img", "els => els.map(e => e.alt)"
            )
            assert shown[0] == "img024.png" and len(shown) == 24
            assert page.locator('nav[data-section="thumbs"] .pos').inner_text() == "2 / 3"
            assert page.locator('tr[data-section="fails"]:not([hidden])').count() == 50
        finally:
            browser.close()
    assert errors == []
