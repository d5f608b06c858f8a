"""The pipeline at the speed of its engine: spotbot against what it wraps, side by side, same run.

Run from the repository root: python -m benchmarks.bench_sharing [--signs 208] [--files 100000]
    [--rounds 3] [--workers N] [--only ocr,tiny,cloud]

- ocr: `spotbot tag --bot ocr-zh --workers N` as a whole process against the raw RapidOCR
  engine with ocr-zh's settings in N processes x (cores / N) threads, each taking a static
  share of the images (the same split the engine's users write), also a whole process; on
  --signs rendered sign photos of the sample sizes (spotbot.bots.synth, seeded). Alternating
  rounds, medians.
- tiny: `spotbot tag` with a trivial bot (benchmarks.nullbot:NullBot) on --files one-byte
  files against a bare loop (read each file, tag it, append one JSON line; one process, no
  store, no crash safety), both whole processes; then the peak RSS of spotbot's largest
  process at --files and at twice as many.
- cloud: Batch array children (`run_worker`, one thread each: the bot sleeps, so threads
  stand in for machines) against a moto S3 server and osmem-server (the OpenSearch stand-in),
  on a job whose shard 0 is ten times slower than the others, against the same assets spread
  evenly over the shards; with work sharing (the default) and without (each child its shard).

Results go to benchmarks/results/sharing.json; ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

RAW_OCR = r'''
import json, multiprocessing as mp, os, sys
from pathlib import Path

def work(args):
    files, params, out = args
    import numpy as np
    from PIL import Image
    from rapidocr import RapidOCR
    engine = RapidOCR(params=params)
    with open(out, "w", encoding="utf-8") as fh:
        for name in files:
            image = np.asarray(Image.open(name).convert("RGB"))[:, :, ::-1]
            result = engine(np.ascontiguousarray(image))
            fh.write(json.dumps({"key": name, "text": list(result.txts or [])},
                                ensure_ascii=False) + "\n")

if __name__ == "__main__":
    src, out, procs, params = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    files = sorted(str(p) for p in Path(src).iterdir())
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(work, [(files[i::procs], params, f"{out}/part-{i}.jsonl") for i in range(procs)])
'''

BARE_LOOP = r"""
import json, os, sys
from benchmarks.nullbot import NullBot
bot = NullBot()
src = sys.argv[1]
with open(sys.argv[2], "w") as out:
    for folder, _, names in sorted(os.walk(src)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                data = fh.read()
            pred = bot.predict([bot.decode(data, name)])[0]
            out.write(json.dumps({"key": os.path.relpath(path, src), **pred}) + "\n")
"""


def cores() -> int:
    return len(os.sched_getaffinity(0))


#: CPU seconds (user + system) of the last command `timed` ran, its whole process tree.
LAST_CPU: list[float] = [0.0]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB, the largest process of the tree) of a whole command;
    its CPU seconds go to LAST_CPU (on a shared machine, the figure that load does not skew)."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return wall, usage.ru_maxrss // 1024


def spotbot_env(home: Path) -> dict[str, str]:
    return {**os.environ, "SPOTBOT_HOME": str(home), "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------- ocr: spotbot vs raw engine


def make_signs(folder: Path, n: int) -> None:
    from spotbot.bots.synth import PHRASES, cjk_fonts, render_sign

    sizes = [(1280, 720), (960, 640), (800, 600), (640, 360), (1024, 768), (720, 480)]
    folder.mkdir(parents=True)
    fonts = cjk_fonts()
    rng = random.Random(2026)
    for i in range(n):
        lines = rng.sample(PHRASES, k=rng.randint(1, 3))
        image, _ = render_sign(lines, fonts, seed=1000 + i, size=sizes[i % len(sizes)])
        image.save(folder / f"sign-{i:04d}.jpg", quality=88)


def ocr_params(threads: int) -> dict[str, Any]:
    from spotbot.bots.ocr_zh import DETECTOR_MAX_SIDE, TEXT_SCORE

    return {  # the settings OcrZhBot._load gives RapidOCR
        "Global.use_cls": False,
        "Global.text_score": TEXT_SCORE,
        "Global.log_level": "warning",
        "Det.limit_type": "max",
        "Det.limit_side_len": DETECTOR_MAX_SIDE,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }


def bench_ocr(tmp: Path, signs: int, rounds: int, workers: int) -> dict[str, Any]:
    src = tmp / "signs"
    make_signs(src, signs)
    raw_script = tmp / "raw_ocr.py"
    raw_script.write_text(RAW_OCR)
    params = json.dumps(ocr_params(max(1, cores() // workers)))
    spotbot_s, raw_s = [], []
    for r in range(rounds):
        out = tmp / f"raw-{r}"
        out.mkdir()
        raw_s.append(timed([sys.executable, str(raw_script), str(src), str(out), str(workers),
                            params])[0])
        home = tmp / f"home-ocr-{r}"
        spotbot_s.append(timed(
            [sys.executable, "-m", "spotbot", "tag", str(src), "--bot", "ocr-zh", "--out",
             str(tmp / f"out-ocr-{r}"), "--workers", str(workers), "--json"],
            spotbot_env(home),
        )[0])
        print(f"  ocr round {r}: spotbot {spotbot_s[-1]:.1f} s, raw {raw_s[-1]:.1f} s", flush=True)
    spot, raw = statistics.median(spotbot_s), statistics.median(raw_s)
    return {
        "images": signs,
        "processes": workers,
        "spotbot_images_per_s": round(signs / spot, 2),
        "raw_engine_images_per_s": round(signs / raw, 2),
        "ratio_to_raw_engine": round(raw / spot, 3),
        "spotbot_seconds": [round(x, 2) for x in spotbot_s],
        "raw_seconds": [round(x, 2) for x in raw_s],
    }


# ---------------------------------------------------------------- tiny: per-asset overhead


def make_tiny(folder: Path, n: int) -> None:
    for i in range(n):
        sub = folder / f"d{i % 100:02d}"
        if i < 100:
            sub.mkdir(parents=True)
        (sub / f"a{i:07d}.txt").write_bytes(b"x")


def bench_tiny(tmp: Path, files: int, rounds: int, workers: int) -> dict[str, Any]:
    src = tmp / "tiny"
    make_tiny(src, files)
    spotbot_s, bare_s, rss = [], [], 0
    spotbot_cpu, bare_cpu = [], []
    for r in range(rounds):
        bare_s.append(timed([sys.executable, "-c", BARE_LOOP, str(src), str(tmp / "bare.jsonl")])[0])
        bare_cpu.append(LAST_CPU[0])
        wall, rss_r = timed(
            [sys.executable, "-m", "spotbot", "tag", str(src), "--bot",
             "benchmarks.nullbot:NullBot", "--out", str(tmp / f"out-tiny-{r}"), "--workers",
             str(workers), "--json"],
            spotbot_env(tmp / f"home-tiny-{r}"),
        )
        spotbot_s.append(wall)
        spotbot_cpu.append(LAST_CPU[0])
        rss = max(rss, rss_r)
        print(f"  tiny round {r}: spotbot {wall:.1f} s, bare {bare_s[-1]:.1f} s", flush=True)
    # memory: the same at twice the files
    make_tiny(tmp / "tiny2", 2 * files)
    wall2, rss2 = timed(
        [sys.executable, "-m", "spotbot", "tag", str(tmp / "tiny2"), "--bot",
         "benchmarks.nullbot:NullBot", "--out", str(tmp / "out-tiny2"), "--workers",
         str(workers), "--json"],
        spotbot_env(tmp / "home-tiny2"),
    )
    spot, bare = statistics.median(spotbot_s), statistics.median(bare_s)
    return {
        "files": files,
        "workers": workers,
        "spotbot_assets_per_s": round(files / spot),
        "bare_loop_assets_per_s": round(files / bare),
        "ratio_to_bare_loop": round(bare / spot, 3),
        # CPU seconds (user + system, whole process trees), medians: what the work costs
        # whatever else the machine runs.
        "spotbot_cpu_seconds": round(statistics.median(spotbot_cpu), 2),
        "bare_loop_cpu_seconds": round(statistics.median(bare_cpu), 2),
        "spotbot_seconds": [round(x, 2) for x in spotbot_s],
        "bare_loop_seconds": [round(x, 2) for x in bare_s],
        "peak_rss_mb": rss,
        "files_2x": 2 * files,
        "spotbot_assets_per_s_2x": round(2 * files / wall2),
        "peak_rss_mb_2x": rss2,
    }


# ---------------------------------------------------------------- cloud: unbalanced shards


def bench_cloud(tmp: Path, shards: int, per_shard: int, unit: float) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer
    from osmem_server import OsmemServer

    from spotbot.aws.locations import open_sink, open_source
    from spotbot.aws.opensearch_store import OpenSearchTaskStore
    from spotbot.core.artifacts import ModelRegistry
    from spotbot.core.records import shard_of
    from spotbot.core.steps import init_job, scan_job
    from spotbot.core.worker import WorkerConfig
    from spotbot.entry.batch_worker import WorkerParams, run_worker

    os.environ["SPOTBOT_BENCH_UNIT"] = str(unit)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench-in")
    s3.create_bucket(Bucket="bench-out")
    spec = "benchmarks.nullbot:SleepyBot"
    slow = per_shard  # assets ten units long: all of shard 0's, or spread evenly
    out: dict[str, Any] = {"shards": shards, "assets": shards * per_shard, "slow_assets": slow,
                           "unit_seconds": unit}
    try:
        with OsmemServer.start() as search:
            for layout in ("balanced", "unbalanced"):
                # keys by shard, then the slow ones placed by the layout
                by_shard: dict[int, list[str]] = {s: [] for s in range(shards)}
                i = 0
                while min(len(v) for v in by_shard.values()) < per_shard:
                    key = f"{layout}/a{i:05d}.txt"
                    if len(by_shard[shard_of(key.split("/", 1)[1], shards)]) < per_shard:
                        by_shard[shard_of(key.split("/", 1)[1], shards)].append(key)
                    i += 1
                for s, keys in by_shard.items():
                    n_slow = per_shard if layout == "unbalanced" and s == 0 else (
                        0 if layout == "unbalanced" else slow // shards)
                    for j, key in enumerate(keys):
                        s3.put_object(Bucket="bench-in", Key=key, Body=b"10" if j < n_slow else b"1")
                for steal in (True, False):
                    job_id = f"{layout}-{'shared' if steal else 'static'}"
                    with OpenSearchTaskStore(search.url) as store:
                        job = init_job(
                            store, ModelRegistry(tmp / "models"), bot=spec,
                            source=open_source(f"s3://bench-in/{layout}"),
                            sink=open_sink("s3://bench-out/runs"), shards=shards, job_id=job_id,
                        )
                        scan_job(store, job, open_source(job.source))
                    stores = [OpenSearchTaskStore(search.url) for _ in range(shards)]
                    threads = [
                        threading.Thread(target=run_worker, args=(
                            WorkerParams(job_id=job_id, shard=s, bot=spec, threads=1,
                                         config=WorkerConfig(steal=steal)),
                        ), kwargs={"store": stores[s]})
                        for s in range(shards)
                    ]
                    began = time.perf_counter()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    wall = time.perf_counter() - began
                    with OpenSearchTaskStore(search.url) as store:
                        counts = store.count_tasks(job_id)
                    for st in stores:
                        st.close()
                    done = sum(v for k, v in counts.items() if str(k) == "DONE")
                    assert done == shards * per_shard, counts
                    out[f"{layout}_{'shared' if steal else 'static'}_seconds"] = round(wall, 2)
                    print(f"  cloud {job_id}: {wall:.2f} s", flush=True)
    finally:
        server.stop()
    out["unbalanced_vs_balanced_shared"] = round(
        out["unbalanced_shared_seconds"] / out["balanced_shared_seconds"], 3)
    out["unbalanced_vs_balanced_static"] = round(
        out["unbalanced_static_seconds"] / out["balanced_static_seconds"], 3)
    return out


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signs", type=int, default=208)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=cores())
    parser.add_argument("--only", default="ocr,tiny,cloud")
    parser.add_argument("--cloud-shards", type=int, default=4)
    parser.add_argument("--cloud-per-shard", type=int, default=32)
    parser.add_argument("--cloud-unit", type=float, default=0.02)
    args, _ = parser.parse_known_args()
    parts = set(args.only.split(","))
    results: dict[str, Any] = {"cores": cores()}
    with tempfile.TemporaryDirectory(prefix="spotbot-bench-sharing-") as tmpdir:
        tmp = Path(tmpdir)
        if "ocr" in parts:
            (tmp / "o").mkdir()
            results["ocr"] = bench_ocr(tmp / "o", args.signs, args.rounds, args.workers)
            print(json.dumps({"ocr": results["ocr"]}), flush=True)
        if "tiny" in parts:
            (tmp / "t").mkdir()
            results["tiny"] = bench_tiny(tmp / "t", args.files, args.rounds, args.workers)
            print(json.dumps({"tiny": results["tiny"]}), flush=True)
        if "cloud" in parts:
            (tmp / "c").mkdir()
            results["cloud"] = bench_cloud(
                tmp / "c", args.cloud_shards, args.cloud_per_shard, args.cloud_unit
            )
            print(json.dumps({"cloud": results["cloud"]}), flush=True)
    return results


if __name__ == "__main__":
    out = main()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sharing.json").write_text(json.dumps(out, indent=2) + "\n")
    for name, key in (("ocr", "ratio_to_raw_engine"), ("tiny", "ratio_to_bare_loop"),
                      ("cloud", "unbalanced_vs_balanced_shared")):
        if name in out:
            print(f"{name}: {key} = {out[name][key]}")
