"""`spotbot tag` over documents and videos: the worker opens each container, ocr-zh reads its
pages and frames, a locked or damaged file fails only its own task, and the report shows
them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotbot.bots import synth_media as media
from tests.conftest import base_env, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _squash(text: str) -> str:
    return "".join(text.split())


def test_a_folder_of_documents_and_videos_is_tagged_page_by_page(tmp_path: Path) -> None:
    # GIVEN a PDF, a two-page TIFF, a video, and an encrypted and a truncated PDF
    folder = tmp_path / "docs"
    folder.mkdir()
    good = media.text_pdf([["出口在左边"], ["欢迎光临"]])
    (folder / "notice.pdf").write_bytes(good)
    (folder / "scan.tiff").write_bytes(
        media.multipage_tiff([media.sign(["安全出口"], 1), media.sign(["图书馆"], 2)])
    )
    (folder / "street.mp4").write_bytes(
        media.video([(media.sign(["禁止吸烟"], 3, (640, 360)), 3.0)], fps=5)
    )
    (folder / "locked.pdf").write_bytes(media.text_pdf([["秘密"]], password="pw"))
    (folder / "cut.pdf").write_bytes(good[: len(good) // 2])
    env = base_env(tmp_path / "home")
    out = tmp_path / "out"
    # WHEN ocr-zh tags the folder
    done = run_cli("tag", str(folder), "--bot", "ocr-zh", "--out", str(out), "--json", env=env)
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    lines = (out / job_id / "results.jsonl").read_text(encoding="utf-8").splitlines()
    results = {r["key"]: r for r in map(json.loads, lines)}
    # THEN each document is one result whose tags carry their page, text in page order
    pdf = results["notice.pdf"]
    assert pdf["status"] == "DONE"
    assert [t["page"] for t in sorted(pdf["tags"], key=lambda t: t["page"])] == [1, 2]
    assert _squash(pdf["text"]) == "出口在左边欢迎光临"
    tiff = results["scan.tiff"]
    assert {t["page"]: _squash(t["label"]) for t in tiff["tags"]} == {1: "安全出口", 2: "图书馆"}
    # and the video's tags carry their time, summed up in "seen"
    video = results["street.mp4"]
    assert video["status"] == "DONE" and all("time" in t for t in video["tags"])
    assert [_squash(s["label"]) for s in video["seen"]] == ["禁止吸烟"]
    # and the locked and the damaged PDF failed alone, each with one line
    assert results["locked.pdf"]["status"] == "FAILED"
    assert results["locked.pdf"]["error"].startswith("encrypted PDF")
    assert results["cut.pdf"]["status"] == "FAILED"
    assert results["cut.pdf"]["error"].startswith("truncated PDF")
    # and the report shows the documents by their first page, with its boxes
    report = (out / job_id / "report.html").read_text(encoding="utf-8")
    assert report.count('<div class="thumb"><img src="data:image/jpeg;base64,') == 3
    assert "notice.pdf</b> · page 1" in report and "street.mp4</b> · time 0" in report
    assert "encrypted PDF" in report and "truncated PDF" in report
    assert "Not enough timed results" not in report  # throughput from the tasks' times
