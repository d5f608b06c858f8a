"""`spotbot tag` ends by writing OUT/<job_id>/report.html; `spotbot report JOB_ID` writes it again,
with the real ocr-zh's boxes drawn on thumbnails of the assets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, base_env, run_cli

pytestmark = pytest.mark.integration


def test_tag_writes_a_report_and_report_regenerates_it(tmp_path: Path) -> None:
    # GIVEN two signs and a truncated JPEG, tagged by ocr-zh
    folder = tmp_path / "signs"
    folder.mkdir()
    for name in ("sign-01.jpg", "sign-02.jpg"):
        shutil.copy(EXAMPLES / "signs" / name, folder / name)
    (folder / "broken.jpg").write_bytes((EXAMPLES / "signs" / "sign-03.jpg").read_bytes()[:300])
    env = base_env(tmp_path / "home")
    out = tmp_path / "out"
    done = run_cli("tag", str(folder), "--bot", "ocr-zh", "--out", str(out), "--json", env=env)
    assert done.returncode in (0, 3), done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    report = out / job_id / "report.html"
    # THEN the job's end wrote its report beside summary.json
    first = report.read_text(encoding="utf-8")
    assert "<b>3</b>total" in first and "broken.jpg" in first
    # WHEN the report is deleted and regenerated
    report.unlink()
    again = run_cli("report", job_id, env=env)
    assert again.returncode == 0, again.stderr
    page = report.read_text(encoding="utf-8")
    # THEN it holds both signs as thumbnails with their OCR boxes, and the failure's error
    assert page.count('<div class="thumb"><img src="data:image/jpeg;base64,') == 2
    assert page.count("<polygon") >= 2
    truth = json.loads((EXAMPLES / "signs" / "truth.json").read_text(encoding="utf-8"))
    assert truth["sign-01.jpg"][0] in page
    assert "corrupt JPEG" in page
    # and with the source gone, the report is still written, without thumbnails
    shutil.rmtree(folder)
    gone = run_cli("report", job_id, env=env)
    assert gone.returncode == 0 and "no thumbnails: source folder not found" in gone.stderr
    assert "No thumbnails." in report.read_text(encoding="utf-8")
    # and an unknown job is a usage error
    assert run_cli("report", "job-nope", env=env).returncode == 2
