"""ocr-zh against PaddleOCR's own pipeline, side by side in the same run, on the same images.

Run from the repository root: python -m benchmarks.bench_ocr [--signs 40] [--lines 40]
    [--repeats 2] [--threads N] [--sweep] [--skip-paddle]

- ocr-zh: spotbot's bot, batched through OcrZhBot.predict (batch_size images a call),
  threads = cores; once with its built-in models (PP-OCRv6 small, bundled in rapidocr 3.10) and
  once with PP-OCRv4 mobile ONNX models (the ones `rapidocr_onnxruntime` 1.4.4 bundles, fetched
  with `pip download` into the cache and loaded as an ocr-zh model directory);
- PaddleOCR: its own pipeline (paddleocr 3.7 + paddlepaddle CPU, mkldnn off) on the PP-OCRv4
  mobile models in Paddle format that `rapidocr_paddle` 1.4.5 ships, with the `inference.yml`
  each model folder needs written here at run time; runs in `.venv-paddle` (created on demand,
  pinned versions) through benchmarks/paddle_runner.py. Nothing is downloaded from a model hub.
- image sets: (a) the 8 sample signs (examples/signs, ~1280x720 photos) repeated to --signs
  images; (b) --lines small rendered Chinese lines (spotbot.bots.synth.make_line_set, seed 7).
- every engine runs in its own subprocess per image set; peak memory is that child's
  ru_maxrss (os.wait4), speed is the best of --repeats timed passes after a warm-up image,
  character error rate is over all characters of the set (whitespace ignored).
- same-models comparison: ocr-zh PP-OCRv4 ONNX vs PaddleOCR PP-OCRv4; default-models
  comparison: ocr-zh as shipped (PP-OCRv6 small) vs PaddleOCR PP-OCRv4. Both engines use the
  same detector limit (longer side 960) and drop lines scoring below 0.5.
- --sweep adds ocr-zh variants (detector side 736, one intra-op thread).

Results go to benchmarks/results/ocr.json; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".spotbot-cache" / "bench_ocr"
PADDLE_VENV = REPO / ".venv-paddle"
# Pinned: versions that install for CPython 3.11 on Linux x86-64 CPU and run offline here.
PADDLE_PINS = ["paddlepaddle==3.3.1", "paddleocr==3.7.0", "rapidocr_paddle==1.4.5"]
V4_ONNX_WHEEL = "rapidocr_onnxruntime==1.4.4"  # bundles ch_PP-OCRv4_{det,rec}_infer.onnx
SIGNS = REPO / "examples" / "signs"
log = logging.getLogger("bench_ocr")


# ---------------------------------------------------------------- environments and models


def ensure_paddle_venv() -> Path:
    """.venv-paddle/bin/python, creating the venv and installing the pinned packages if missing."""
    python = PADDLE_VENV / "bin" / "python"
    check = [str(python), "-c", "import paddle, paddleocr, rapidocr_paddle"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {PADDLE_VENV.name} ({', '.join(PADDLE_PINS)}); a few minutes...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PADDLE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PADDLE_PINS], check=True)
    subprocess.run(check, check=True)
    return python


def paddle_models(python: Path) -> dict[str, Path]:
    """rapidocr_paddle's PP-OCRv4 det/rec folders, copied to the cache with an inference.yml."""
    target = CACHE / "ppocr-v4-paddle"
    out = {"det": target / "PP-OCRv4_mobile_det", "rec": target / "PP-OCRv4_mobile_rec"}
    if all((p / "inference.yml").is_file() for p in out.values()):
        return out
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import rapidocr_paddle, os; print(os.path.dirname(rapidocr_paddle.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(where)
    shipped = {
        "det": package / "models" / "ch_PP-OCRv4_det_infer",
        "rec": package / "models" / "ch_PP-OCRv4_rec_infer",
    }
    keys = (package / "ch_ppocr_rec" / "ppocr_keys_v1.txt").read_text("utf-8").splitlines()
    for kind, folder in out.items():
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(shipped[kind], folder)
    # The configs PaddleOCR's exported PP-OCRv4 mobile models carry (PaddleX reads the model
    # name, the preprocessing and the postprocessing, and for rec the character list, from it).
    det_yml = {
        "Global": {"model_name": "PP-OCRv4_mobile_det"},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"DetLabelEncode": None},
                {"DetResizeForTest": {"resize_long": 960}},
                {
                    "NormalizeImage": {
                        "mean": [0.485, 0.456, 0.406],
                        "std": [0.229, 0.224, 0.225],
                        "scale": 1 / 255,
                        "order": "hwc",
                    }
                },
                {"ToCHWImage": None},
                {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
            ]
        },
        "PostProcess": {
            "name": "DBPostProcess",
            "thresh": 0.3,
            "box_thresh": 0.6,
            "max_candidates": 1000,
            "unclip_ratio": 1.5,
        },
    }
    rec_yml = {
        "Global": {"model_name": "PP-OCRv4_mobile_rec"},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
                {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                {
                    "KeepKeys": {
                        "keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]
                    }
                },
            ]
        },
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": keys},
    }
    # JSON is YAML: no yaml dependency needed to write it.
    (out["det"] / "inference.yml").write_text(json.dumps(det_yml, indent=1), "utf-8")
    (out["rec"] / "inference.yml").write_text(
        json.dumps(rec_yml, indent=1, ensure_ascii=False), "utf-8"
    )
    return out


def v4_onnx_model() -> Path:
    """An ocr-zh model directory with the PP-OCRv4 mobile ONNX models rapidocr_onnxruntime ships."""
    target = CACHE / "ppocr-v4-onnx"
    files = {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"}
    if (target / "bot.json").is_file():
        return target
    wheels = CACHE / "wheels"
    wheel = next(wheels.glob("rapidocr_onnxruntime-1.4.4-*.whl"), None) if wheels.is_dir() else None
    if wheel is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                V4_ONNX_WHEEL,
                "-d",
                str(wheels),
            ],
            check=True,
        )
        wheel = next(wheels.glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in files.values():
            (target / name).write_bytes(archive.read(f"rapidocr_onnxruntime/models/{name}"))
    manifest = {
        "bot": "ocr-zh",
        "version": "ppocr-v4-mobile-onnx",
        "framework": "onnx",
        "files": files,
        "origin": f"the PP-OCRv4 mobile det+rec ONNX models bundled in {V4_ONNX_WHEEL}",
    }
    (target / "bot.json").write_text(json.dumps(manifest, indent=2), "utf-8")
    return target


# ---------------------------------------------------------------- image sets


def make_sets(workdir: Path, n_signs: int, n_lines: int) -> dict[str, dict[str, Any]]:
    from spotbot.bots.synth import make_line_set

    truth = json.loads((SIGNS / "truth.json").read_text("utf-8"))
    names = sorted(truth)
    signs = [names[i % len(names)] for i in range(n_signs)]
    sets = {
        "signs": {
            "images": [str(SIGNS / n) for n in signs],
            "truth": ["\n".join(truth[n]) for n in signs],
            "describe": f"{len(names)} sample sign photos (~1280x720) repeated to {n_signs}",
        },
    }
    lines_dir = workdir / "lines"
    lines_dir.mkdir(parents=True, exist_ok=True)
    paths, texts = [], []
    for i, (text, image) in enumerate(make_line_set(n_lines, seed=7)):
        path = lines_dir / f"line-{i:03d}.png"
        image.save(path)
        paths.append(str(path))
        texts.append(text)
    sizes = [image_size(p) for p in paths]
    sets["lines"] = {
        "images": paths,
        "truth": texts,
        "describe": f"{n_lines} rendered Chinese lines (make_line_set seed 7, "
        f"{min(w for w, _ in sizes)}-{max(w for w, _ in sizes)} px wide)",
    }
    for name, data in sets.items():
        (workdir / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    return sets


def image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def set_cer(truth: list[str], texts: list[str]) -> float:
    from spotbot.bots.synth import character_error_rate

    errors = chars = 0.0
    for ref, hyp in zip(truth, texts, strict=True):
        n = len("".join(ref.split()))
        errors += character_error_rate(ref, hyp) * n
        chars += n
    return errors / max(1.0, chars)


# ---------------------------------------------------------------- running one engine


def run_child(cmd: list[str], timeout: float = 1800) -> dict[str, Any]:
    """Run cmd, return its last stdout JSON line plus its own peak RSS (ru_maxrss via wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"{' '.join(cmd[:4])}... failed (exit {proc.returncode}):\n"
            f"{stderr[-3000:]}{stdout[-1000:]}"
        )
    result = json.loads(lines[-1])
    # Linux reports kilobytes; a run of several worker processes reports the sum of their peaks.
    result["peak_rss_mb"] = result.get("peak_rss_mb_total") or usage.ru_maxrss / 1024
    return result


def ocrzh_worker(args: argparse.Namespace) -> int:
    """In a child process: ocr-zh over one image set, timed; prints one JSON line."""
    import resource

    import spotbot.bots.ocr_zh as ocr_zh
    from spotbot.bots.ocr_zh import OcrZhBot
    from spotbot.core.artifacts import ModelRef

    logging.disable(logging.WARNING)
    if args.det_side:
        ocr_zh.DETECTOR_MAX_SIDE = args.det_side
    paths = json.loads(Path(args.set).read_text("utf-8"))["images"]
    bot = OcrZhBot()
    decoded: dict[str, Any] = {}
    for path in paths:  # decoded once, through the bot's own decode; repeats share the image
        if path not in decoded:
            decoded[path] = bot.decode(Path(path).read_bytes(), path)
    images = [decoded[p] for p in paths]
    model_path = None if args.model == "builtin" else Path(args.model)
    version = OcrZhBot.builtin_version if model_path is None else model_path.name
    ref = ModelRef("ocr-zh", version or "builtin", model_path, "bench")
    batch = OcrZhBot.batch_size
    extra: dict[str, Any] = {}
    if args.procs > 1:
        load_s, passes, texts, extra["peak_rss_mb_total"] = _parallel_passes(
            ref, images, args.procs, args.threads, max(1, args.repeats)
        )
    else:
        started = time.perf_counter()
        bot.load(ref, threads=args.threads)
        bot.predict(images[:1])  # warm-up, not timed
        load_s = time.perf_counter() - started
        passes, texts = [], []
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            texts = []
            for i in range(0, len(images), batch):
                texts.extend(p["text"] for p in bot.predict(images[i : i + batch]))
            passes.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "engine": "ocr-zh",
                "model": version,
                "threads": args.threads,
                "procs": args.procs,
                "det_side": ocr_zh.DETECTOR_MAX_SIDE,
                "batch_size": batch,
                "load_s": load_s,
                "passes_s": passes,
                "texts": texts,
                "peak_rss_mb_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                **extra,
            },
            ensure_ascii=False,
        )
    )
    return 0


def _parallel_passes(
    ref: Any, images: list[Any], procs: int, threads: int, repeats: int
) -> tuple[float, list[float], list[str], float]:
    """ocr-zh as `spotbot tag` runs it: one process per worker, each on its share of the images.

    The processes load the model, then start each timed pass together (a barrier), so a pass
    takes as long as the slowest worker: the wall time a user waits.
    """
    import multiprocessing as mp
    import resource

    ctx = mp.get_context("fork")  # nothing native is loaded yet: the bot loads after the fork
    barrier = ctx.Barrier(procs + 1)
    queue = ctx.Queue()

    def work(index: int) -> None:
        from spotbot.bots.ocr_zh import OcrZhBot

        bot = OcrZhBot()
        bot.load(ref, threads=threads)
        mine = images[index::procs]
        bot.predict(mine[:1])
        texts: list[tuple[int, str]] = []
        for _ in range(repeats):
            barrier.wait()
            texts = []
            for i in range(0, len(mine), OcrZhBot.batch_size):
                out = bot.predict(mine[i : i + OcrZhBot.batch_size])
                texts.extend((index + (i + k) * procs, p["text"]) for k, p in enumerate(out))
            barrier.wait()
        queue.put((texts, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    started = time.perf_counter()
    children = [ctx.Process(target=work, args=(i,)) for i in range(procs)]
    for child in children:
        child.start()
    passes = []
    for _ in range(repeats):
        barrier.wait()
        if not passes:
            load_s = time.perf_counter() - started
        t0 = time.perf_counter()
        barrier.wait()
        passes.append(time.perf_counter() - t0)
    ordered: dict[int, str] = {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in children:
        texts, rss = queue.get()
        ordered.update(texts)
        peak += rss
    for child in children:
        child.join()
    return load_s, passes, [ordered[i] for i in sorted(ordered)], peak


def summarise(result: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    best = min(result["passes_s"])
    n = len(data["images"])
    return {
        "images_per_s": n / best,
        "s_per_image": best / n,
        "passes_s": [round(p, 3) for p in result["passes_s"]],
        "load_s": round(result["load_s"], 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "cer": set_cer(data["truth"], result["texts"]),
        "threads": result["threads"],
        "det_side": result["det_side"],
        **({"versions": result["versions"]} if "versions" in result else {}),
    }


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signs", type=int, default=40)
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sweep", action="store_true", help="also try faster ocr-zh settings")
    parser.add_argument("--skip-paddle", action="store_true")
    parser.add_argument("--sets", default="signs,lines")
    # worker mode (internal)
    parser.add_argument("--worker", choices=["ocrzh"], help=argparse.SUPPRESS)
    parser.add_argument("--set", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="builtin", help=argparse.SUPPRESS)
    parser.add_argument("--det-side", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--procs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return ocrzh_worker(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from spotbot.bots.ocr_zh import DETECTOR_MAX_SIDE

    v4_onnx = v4_onnx_model()
    engines: list[tuple[str, list[str], set[str] | None]] = []
    worker = [
        sys.executable,
        "-m",
        "benchmarks.bench_ocr",
        "--worker",
        "ocrzh",
        "--repeats",
        str(args.repeats),
    ]
    engines.append(
        (
            "ocr-zh v6-small (default)",
            [*worker, "--model", "builtin", "--threads", str(args.threads)],
            None,
        )
    )
    # How `spotbot tag` runs it: one worker process per core, one ONNX Runtime thread each.
    cores = os.cpu_count() or 1
    engines.append(
        (
            f"ocr-zh v6-small, {cores} workers x 1 thread (spotbot tag)",
            [*worker, "--model", "builtin", "--threads", "1", "--procs", str(cores)],
            None,
        )
    )
    engines.append(
        (
            f"ocr-zh v4-mobile, {cores} workers x 1 thread (spotbot tag)",
            [*worker, "--model", str(v4_onnx), "--threads", "1", "--procs", str(cores)],
            None,
        )
    )
    engines.append(
        (
            "ocr-zh v4-mobile",
            [*worker, "--model", str(v4_onnx), "--threads", str(args.threads)],
            None,
        )
    )
    if args.sweep:
        for side in (736, 640):
            for name, model in (("v6-small", "builtin"), ("v4-mobile", str(v4_onnx))):
                command = [*worker, "--model", model, "--threads", str(args.threads)]
                engines.append(
                    (f"ocr-zh {name} det{side}", [*command, "--det-side", str(side)], {"signs"})
                )
        engines.append(
            ("ocr-zh v6-small 1 thread", [*worker, "--model", "builtin", "--threads", "1"], None)
        )
    paddle_error = None
    if not args.skip_paddle:
        try:
            python = ensure_paddle_venv()
            models = paddle_models(python)
            engines.append(
                (
                    "paddleocr v4-mobile",
                    [
                        str(python),
                        str(REPO / "benchmarks" / "paddle_runner.py"),
                        "--det",
                        str(models["det"]),
                        "--rec",
                        str(models["rec"]),
                        "--threads",
                        str(args.threads),
                        "--det-side",
                        str(DETECTOR_MAX_SIDE),
                        "--repeats",
                        str(args.repeats),
                    ],
                    None,
                )
            )
        except (subprocess.CalledProcessError, OSError) as exc:
            paddle_error = f"cannot set up PaddleOCR: {exc}"
            log.error(paddle_error)

    report: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "repeats": args.repeats,
        "note": "best of the timed passes after a warm-up image; each engine and image set in "
        "its own process; peak_rss_mb is that process's ru_maxrss; CPU shared, so noisy",
        "sets": {},
        "results": {},
        "ratios": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        sets = make_sets(Path(tmp), args.signs, args.lines)
        wanted = [s for s in args.sets.split(",") if s in sets]
        for set_name in wanted:
            data = sets[set_name]
            report["sets"][set_name] = data["describe"]
            report["results"][set_name] = {}
            for label, cmd, only in engines:
                if only is not None and set_name not in only:
                    continue
                log.info("%s: %s ...", set_name, label)
                try:
                    result = run_child([*cmd, "--set", str(Path(tmp) / f"{set_name}.json")])
                except RuntimeError as exc:
                    log.error("%s", exc)
                    report["results"][set_name][label] = {"error": str(exc)[-2000:]}
                    if label.startswith("paddleocr"):
                        paddle_error = str(exc)[-2000:]
                    continue
                row = summarise(result, data)
                report["results"][set_name][label] = row
                log.info(
                    "  %.2f images/s, %.0f MB peak, CER %.2f %%",
                    row["images_per_s"],
                    row["peak_rss_mb"],
                    100 * row["cer"],
                )
    if paddle_error:
        report["paddle_error"] = paddle_error

    for set_name, rows in report["results"].items():
        base = rows.get("paddleocr v4-mobile", {})
        if "images_per_s" not in base:
            continue
        for label, row in rows.items():
            if label.startswith("paddleocr") or "images_per_s" not in row:
                continue
            report["ratios"][f"{set_name}: {label} vs paddleocr v4-mobile"] = {
                "speed": round(row["images_per_s"] / base["images_per_s"], 2),
                "peak_memory": round(row["peak_rss_mb"] / base["peak_rss_mb"], 2),
                "cer_delta_points": round(100 * (row["cer"] - base["cer"]), 2),
            }

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ocr.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_table(report)
    return 0 if not paddle_error or args.skip_paddle else 1


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\nocr-zh vs PaddleOCR ({report['cpu_count']} cores, threads={report['threads']}, "
        f"best of {report['repeats']})"
    )
    header = (
        f"{'set':6} {'engine':28} {'img/s':>7} {'s/img':>7} {'peak MB':>8} {'CER %':>6} "
        f"{'x speed':>8} {'x mem':>6}"
    )
    print(header)
    print("-" * len(header))
    for set_name, rows in report["results"].items():
        for label, row in rows.items():
            if "error" in row:
                print(f"{set_name:6} {label:28} failed (see ocr.json)")
                continue
            ratio = report["ratios"].get(f"{set_name}: {label} vs paddleocr v4-mobile", {})
            print(
                f"{set_name:6} {label:28} {row['images_per_s']:7.2f} {row['s_per_image']:7.3f} "
                f"{row['peak_rss_mb']:8.0f} {100 * row['cer']:6.2f} "
                f"{ratio.get('speed', float('nan')):8.2f} "
                f"{ratio.get('peak_memory', float('nan')):6.2f}"
            )
    if report.get("paddle_error"):
        print(f"\nPaddleOCR failed: {report['paddle_error'][-500:]}")


if __name__ == "__main__":
    sys.exit(main())
