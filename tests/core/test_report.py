"""report.html: counts, histogram, thumbnails with boxes, failures and throughput, in one file
that stays under its byte budget however large the job."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image, ImageDraw

from spotbot.core.records import Job, Result, TaskStatus
from spotbot.core.report import render_report


def _jpeg(width: int, height: int, seed: int) -> bytes:
    image = Image.new("RGB", (width, height), (seed * 37 % 255, 120, 200))
    ImageDraw.Draw(image).rectangle((10, 10, width // 2, height // 3), fill=(250, 250, 250))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _ocr_result(job: Job, key: str, minute: int) -> Result:
    return Result(
        job_id=job.id,
        key=key,
        bot="ocr-zh",
        model_version="v1",
        status=TaskStatus.DONE,
        tags=[{"label": "出口", "score": 0.98, "box": [[10, 10], [320, 10], [320, 80], [10, 80]]}],
        extra={"text": "出口"},
        finished_at=f"2026-01-01T10:{minute:02d}:00+00:00",
    )


def _job() -> Job:
    return Job(id="job-1", bot="ocr-zh", source="/in", output="/out", model_version="v1")


def test_the_report_holds_counts_labels_boxes_failures_and_throughput() -> None:
    # GIVEN a job with three tagged images (OCR boxes) and one failure
    job = _job()
    results = [_ocr_result(job, f"img{i}.jpg", i) for i in range(3)]
    results.append(
        Result(
            job.id, "bad.jpg", "ocr-zh", "v1", TaskStatus.FAILED, error="corrupt JPEG: truncated"
        )
    )
    images = {r.key: _jpeg(640, 480, i) for i, r in enumerate(results[:3])}
    summary = {"counts": {"total": 4, "done": 3, "failed": 1, "skipped": 0}, "status": "SUCCEEDED"}
    # WHEN the report is rendered
    page = render_report(job, summary, results, read=images.__getitem__).decode()
    # THEN it shows the counts, the label, a box scaled to the 320-px thumbnail, the failure
    assert "<b>4</b>total" in page and "<b>1</b>failed" in page
    assert page.count("data:image/jpeg;base64,") == 3
    assert 'points="5.0,5.0 160.0,5.0 160.0,40.0 5.0,40.0"' in page  # 640 px -> 320 px: half
    assert "出口" in page
    assert "corrupt JPEG: truncated" in page
    assert "3 results finished" in page and "over 120.0 s: mean 0.03 assets/s" in page
    # and it is self-contained: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_a_huge_job_is_sampled_paginated_and_under_the_cap() -> None:
    # GIVEN 50,000 results with large thumbnails available for every one
    job = _job()
    results = (_ocr_result(job, f"k{i:06d}.jpg", i % 60) for i in range(50_000))
    big = _jpeg(1600, 1200, 3)
    summary = {"counts": {"total": 50_000, "done": 50_000, "failed": 0, "skipped": 0}}
    # WHEN the report is rendered with a small cap
    page = render_report(job, summary, results, read=lambda key: big, max_bytes=3_000_000)
    text = page.decode()
    # THEN it is under the cap, says it samples, and pages its table
    assert len(page) <= 3_000_000
    assert "A sample of 5000 of 50000 results" in text
    assert 'data-section="rows" data-pages="100"' in text
    assert text.count('<tr data-section="rows"') == 5000


def test_an_unreadable_asset_has_no_thumbnail_and_breaks_nothing(tmp_path: Path) -> None:
    # GIVEN a result whose asset is now corrupt
    job = _job()
    results = [_ocr_result(job, "gone.jpg", 1)]
    # WHEN the report is rendered THEN it says there are no thumbnails
    page = render_report(job, {}, results, read=lambda key: b"\xff\xd8\xffnot really").decode()
    assert "No thumbnails." in page and "gone.jpg" in page


def test_a_pdf_is_shown_by_its_first_page_with_that_pages_boxes() -> None:
    from spotbot.bots import synth_media as media

    # GIVEN a two-page PDF's result: one box on page 1, one on page 2, rendered 1131x1600
    job = _job()
    box = [[100, 200], [600, 200], [600, 260], [100, 260]]
    result = Result(
        job.id,
        "doc.pdf",
        "ocr-zh",
        "v1",
        TaskStatus.DONE,
        tags=[
            {"label": "第一页", "score": 0.9, "box": box, "page": 1},
            {"label": "第二页", "score": 0.9, "box": box, "page": 2},
        ],
        extra={"pages": [{"page": 1, "width": 1131, "height": 1600}, {"page": 2, "width": 1131}]},
    )
    data = media.text_pdf([["第一页"], ["第二页"]])
    # WHEN the report is rendered
    page = render_report(job, {}, [result], read=lambda key: data).decode()
    # THEN page 1 is the thumbnail (226 px wide: 320 px tall), with page 1's box only, scaled
    assert page.count('<div class="thumb"><img src="data:image/jpeg;base64,') == 1
    assert 'width="226" height="320"' in page
    boxes = re.findall(r'<svg class="boxes".*?</svg>', page)
    assert len(boxes) == 1 and "第一页</text>" in boxes[0] and "第二页" not in boxes[0]
    assert 'points="20.0,40.0' in boxes[0]  # 100 px of 1131 -> 20 px of 226
