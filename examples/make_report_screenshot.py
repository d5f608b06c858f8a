"""docs/report.png, the README's picture of a report: ocr-zh over the bundled signs through the
real command line (`spotbot tag`, then `spotbot report`), shot by headless Chromium.

    python examples/make_report_screenshot.py [--out docs/report.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def spotbot(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "spotbot", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode not in (0, 3):  # 3: the job ran and failed its threshold
        raise SystemExit(f"spotbot {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no Chromium: `make chromium` installs it")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "signs"
        shutil.copytree(HERE / "signs", source, ignore=shutil.ignore_patterns("*.json"))
        # One damaged scan shows what a failure looks like.
        (source / "sign-09-damaged.jpg").write_bytes(
            (HERE / "signs" / "sign-01.jpg").read_bytes()[:400]
        )
        env = {**os.environ, "SPOTBOT_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
        done = spotbot(
            "tag", str(source), "--bot", "ocr-zh", "--out", str(work / "out"), "--json", env=env
        )
        job_id = json.loads(done)["job_id"]
        spotbot("report", job_id, env=env)
        page = work / "out" / job_id / "report.html"
        out = Path(args.out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={args.width},{args.height}",
                f"--screenshot={out}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
