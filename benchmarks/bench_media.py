"""Documents and videos: pages per second, video seconds per wall second, and memory that does
not grow with the length of a document or a video.

Run from the repository root: python -m benchmarks.bench_media [--quick]

- speed: each bot tags a generated asset through the pipeline's container path
  (Bot.open_container + Bot.tag_container, as the worker does), in its own process, after the
  model is loaded; ocr-zh on a PDF of rendered pages (no text layer: every page is read by the
  detector), sentiment-zh on a PDF's text layer, ocr-zh and car-model on a video of Chinese
  signs (frames every 2 s and at scene changes). Load time is reported apart.
- memory: the peak RSS (VmHWM of a child process) of opening and reading every
  part of a long asset vs a short one, decoding only (a model's memory does not depend on the
  asset): a 200-page PDF vs a 10-page one, a 10-minute video vs a 30-second one.
- The assets are generated here (spotbot.bots.synth_media) and cached under .spotbot-cache/.

Results go to benchmarks/results/media.json; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".spotbot-cache" / "bench_media"
PHRASES = ["出口在左边", "禁止吸烟", "欢迎光临", "小心地滑", "地铁站入口", "安全出口", "图书馆"]
REVIEW = "酒店位置很好，离地铁站只有五分钟。房间干净整洁，前台服务热情，早餐种类也多。"


# ------------------------------------------------------------------------- assets
def scanned_pdf(pages: int) -> Path:
    """A PDF of `pages` sign images (no text layer), cached."""
    path = CACHE / f"scan-{pages}.pdf"
    if not path.exists():
        from spotbot.bots import synth_media

        signs = [synth_media.sign([p], i, (900, 1200)) for i, p in enumerate(PHRASES)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synth_media.scanned_pdf([signs[i % len(signs)] for i in range(pages)]))
    return path


def text_pdf(pages: int) -> Path:
    path = CACHE / f"text-{pages}.pdf"
    if not path.exists():
        from spotbot.bots import synth_media

        half = len(REVIEW) // 2
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synth_media.text_pdf([[REVIEW[:half], REVIEW[half:]]] * pages))
    return path


def clip(seconds: int) -> Path:
    """A 640x360 video at 10 fps: a new sign every 10 s (a scene change), cached."""
    path = CACHE / f"clip-{seconds}s.mp4"
    if not path.exists():
        from spotbot.bots import synth_media

        signs = [synth_media.sign([p], i, (640, 360)) for i, p in enumerate(PHRASES)]
        scenes = [(signs[i % len(signs)], 10.0) for i in range(max(1, seconds // 10))]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synth_media.video(scenes, fps=10))
    return path


# ------------------------------------------------------------------------- children
def child_tag(bot_name: str, asset: str) -> dict[str, Any]:
    """Load a bot, tag one container asset through the container path, time both."""
    from spotbot.core.artifacts import ModelRef
    from spotbot.core.plugins import load_bot_class
    from spotbot.core.worker import available_cpus

    began = time.perf_counter()
    bot = load_bot_class(bot_name)()
    bot.load(
        ModelRef(bot.name, bot.builtin_version or "", None, bot.builtin_origin), available_cpus()
    )
    loaded = time.perf_counter() - began
    data = Path(asset).read_bytes()
    began = time.perf_counter()
    stream = bot.open_container(data, Path(asset).name)
    assert stream is not None, f"{bot_name} does not take {asset}"
    result = bot.tag_container(stream)
    seconds = time.perf_counter() - began
    return {
        "load_s": round(loaded, 2),
        "tag_s": round(seconds, 3),
        "parts": len(result.get("pages") or []) or result.get("frames") or 0,
        "duration": result.get("duration"),
        "tags": len(result["tags"]),
    }


def child_decode(asset: str) -> dict[str, Any]:
    """Open and read every part of an asset (rendering pages or decoding frames), no model."""
    from spotbot.core.bot import open_parts
    from spotbot.core.parts import CONTAINER_EXTENSIONS

    suffix = Path(asset).suffix.lstrip(".").lower()
    container = next(c for c, exts in CONTAINER_EXTENSIONS.items() if suffix in exts)
    data = Path(asset).read_bytes()
    began = time.perf_counter()
    parts = sum(1 for _ in open_parts(container, data, Path(asset).name, side=1600))
    return {"parts": parts, "seconds": round(time.perf_counter() - began, 3), "mb": len(data) / 1e6}


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM). Not ru_maxrss: Linux carries that across
    exec, so a child would report the parent's size at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_child(*args: str) -> dict[str, Any]:
    """Run this module as a child; its JSON answer, with its own peak RSS."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_media", "--child", *args],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"child {args} failed ({proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small assets (a smoke run)")
    parser.add_argument("--pages", type=int, default=20, help="pages of the speed PDFs")
    parser.add_argument("--clip-seconds", type=int, default=60, help="length of the speed video")
    parser.add_argument("--long-pages", type=int, default=200)
    parser.add_argument("--short-pages", type=int, default=10)
    parser.add_argument("--long-video", type=int, default=600, help="seconds")
    parser.add_argument("--short-video", type=int, default=30, help="seconds")
    parser.add_argument("--skip-car", action="store_true", help="leave car-model out (slow load)")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        answer = child_tag(*rest) if kind == "tag" else child_decode(*rest)
        answer["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(answer))
        return 0
    if args.quick:
        args.pages, args.clip_seconds = 3, 20
        args.long_pages, args.short_pages, args.long_video, args.short_video = 40, 5, 120, 20

    speed: dict[str, Any] = {}
    runs = [
        ("ocr-zh pdf (rendered pages)", "ocr-zh", scanned_pdf(args.pages), "pages"),
        ("sentiment-zh pdf (text layer)", "sentiment-zh", text_pdf(args.pages), "pages"),
        ("ocr-zh video", "ocr-zh", clip(args.clip_seconds), "video"),
    ]
    if not args.skip_car:
        runs.append(("car-model video", "car-model", clip(args.clip_seconds), "video"))
    for label, bot, asset, unit in runs:
        got = run_child("tag", bot, str(asset))
        if unit == "pages":
            got["pages_per_s"] = round(got["parts"] / got["tag_s"], 3)
        else:
            got["video_s_per_wall_s"] = round((got["duration"] or 0) / got["tag_s"], 3)
        speed[label] = got
        print(f"{label:32s} {json.dumps(got)}", flush=True)

    memory: dict[str, Any] = {}
    for label, short, long in (
        ("pdf", scanned_pdf(args.short_pages), scanned_pdf(args.long_pages)),
        ("video", clip(args.short_video), clip(args.long_video)),
    ):
        a, b = run_child("decode", str(short)), run_child("decode", str(long))
        memory[label] = {
            "short": a,
            "long": b,
            "length_ratio": round(b["parts"] / max(a["parts"], 1), 1),
            "rss_ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 3),
        }
        print(f"memory {label:6s} {json.dumps(memory[label])}", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "speed": speed,
        "memory": memory,
        "notes": [
            "speed: one asset through Bot.open_container + tag_container after the model load;"
            " CPU shared with other work, so noisy",
            "memory: peak RSS of a child that decodes every part, no model; rss_ratio near 1"
            " while length_ratio is large means memory does not grow with length",
        ],
    }
    (RESULTS / "media.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
