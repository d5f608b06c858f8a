"""Measuring a bot's throughput on this machine: the figures the cost estimate stands on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import IO

from spotbot.core.artifacts import ModelRef, ModelRegistry, resolve_model
from spotbot.core.bot import Bot
from spotbot.core.cost import LOCAL, Calibration, PriceBook, Throughput
from spotbot.core.errors import AssetError, UsageError
from spotbot.core.plugins import load_bot_class
from spotbot.core.records import utcnow
from spotbot.core.sources import LocalSource
from spotbot.core.worker import available_cpus, decode_asset, predict_isolated

#: The bundled sample folder (under examples/) each built-in bot is calibrated on.
SAMPLE_FOLDERS = {"car-model": "photos", "sentiment-zh": "texts", "ocr-zh": "signs"}
#: The instance whose on-demand price per vCPU prices this machine's CPU-hours.
LOCAL_PRICE_REFERENCE = "c6i.large"
LOCAL_CALIBRATION = "calibration.json"


def cpu_name() -> str:
    """The processor's model name, for the record of where a figure was measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sample_assets(bot_name: str, folder: Path, limit: int = 64) -> list[tuple[str, bytes]]:
    """The assets under `folder` that the bot accepts, read (at most `limit`)."""
    cls = load_bot_class(bot_name)
    source = LocalSource(folder)
    found: list[tuple[str, bytes]] = []
    for page in source.scan_pages():
        for entry in page.entries:
            if entry.error or entry.skip_reason or not cls.accepts(entry.key):
                continue
            try:
                found.append((entry.key, source.read(entry.key, 50 * 1024 * 1024)))
            except AssetError:
                continue
            if len(found) >= limit:
                return found
    if not found:
        raise UsageError(f"no asset under {folder} that {cls.name} accepts")
    return found


def measure(
    bot_name: str,
    folder: Path,
    registry: ModelRegistry,
    threads: int | None = None,
    min_seconds: float = 3.0,
    min_assets: int = 16,
    model: str | None = None,
) -> Throughput:
    """This machine's rate for a bot, measured as the local runner works: one worker process
    per `threads` cores (one thread each by default), all started at once, each loading the
    model and then tagging the folder's assets in the bot's batches, side by side, until
    `min_seconds` and `min_assets` are both reached; the rate is the sum of theirs (so two
    processes sharing a memory bus count as they run). Then a one-asset `spotbot tag` job
    gives the job's own time (start-up, scan, finalize) beside the model load.
    """
    cls = load_bot_class(bot_name)
    assets = sample_assets(bot_name, folder)
    cpus = available_cpus()
    per_worker = max(1, min(threads or 1, cpus))
    workers = max(1, cpus // per_worker)
    ref = resolve_model(cls, registry, model)
    args = [bot_name, ref.version, str(ref.path or ""), ref.origin, str(per_worker), str(folder)]
    runs = _side_by_side(cls.name, [*args, str(min_seconds), str(min_assets)], workers)
    load_seconds = max(run["load"] for run in runs)
    each = [run["tagged"] / run["seconds"] for run in runs]
    tagged = int(sum(run["tagged"] for run in runs))
    rate = sum(each)
    job = min(one_asset_job_seconds(bot_name, assets[0], ref) for _ in range(2))  # warm, best
    job_seconds = max(0.0, job - load_seconds - 1.0 / min(each))
    return Throughput(
        bot=cls.name,
        instance_type=LOCAL,
        assets_per_second=rate,
        load_seconds=round(load_seconds, 3),
        basis=f"measured here: {cpu_name()}, {cpus} cores as {workers} workers x {per_worker}"
        f" thread(s) side by side, {rate / workers:.2f} assets/s each, {tagged} assets of"
        f" {folder.name}",
        measured_at=utcnow(),
        vcpus=cpus,
        workers=workers,
        job_seconds=round(job_seconds, 3),
    )


def tag_rounds(bot: Bot, assets: list[tuple[str, bytes]], min_seconds: float, least: int) -> int:
    """Decode and tag `assets` in the bot's batches, round after round, until `min_seconds`
    have passed and at least `least` assets were tagged; the number tagged."""
    tagged = 0
    began = time.perf_counter()
    while True:
        for start in range(0, len(assets), bot.batch_size):
            batch = assets[start : start + bot.batch_size]
            decoded = []
            for key, data in batch:
                try:
                    decoded.append(decode_asset(bot, data, key))
                except AssetError:
                    continue
            if decoded:  # a document or a video is tagged page by page, as the worker does
                predict_isolated(bot.predict, decoded)
            tagged += len(batch)
        if time.perf_counter() - began >= min_seconds and tagged >= least:
            return tagged


# One measuring worker: it starts as a spawned local worker does (the runner's imports, then
# the model), says so, waits for the word that every worker has loaded, then tags.
_WORKER = """
import json, sys, time
began = time.perf_counter()
from pathlib import Path
import spotbot.entry.local_runner  # what a spawned worker process imports first
from spotbot.core.artifacts import ModelRef
from spotbot.core.calibration import sample_assets, tag_rounds
from spotbot.core.plugins import load_bot_class
spec, version, path, origin, threads, folder, seconds, least = sys.argv[1:]
bot = load_bot_class(spec)()
bot.load(ModelRef(bot.name, version, Path(path) if path else None, origin), int(threads))
load = time.perf_counter() - began
assets = sample_assets(spec, Path(folder))
print(json.dumps({"load": load}), flush=True)
sys.stdin.readline()
began = time.perf_counter()
tagged = tag_rounds(bot, assets, float(seconds), int(least))
print(json.dumps({"load": load, "tagged": tagged, "seconds": time.perf_counter() - began}))
"""


def _side_by_side(bot: str, args: list[str], workers: int) -> list[dict[str, float]]:
    """Run `workers` measuring workers at once; what each reports."""
    with tempfile.TemporaryFile("w+") as errors:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            for _ in range(workers)
        ]
        try:
            for proc in procs:
                _report(proc, bot, errors)  # loaded
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            return [_report(proc, bot, errors) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


def _report(proc: subprocess.Popen[str], bot: str, errors: IO[str]) -> dict[str, float]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        errors.seek(0)
        raise UsageError(f"the {bot} model would not load: {errors.read().strip()[-300:]}")
    return {k: float(v) for k, v in json.loads(line).items()}


def one_asset_job_seconds(bot: str, asset: tuple[str, bytes], ref: ModelRef) -> float:
    """The wall time of `spotbot tag` over a folder of one asset, as a user runs it."""
    with tempfile.TemporaryDirectory(prefix="spotbot-calibrate-") as tmp:
        folder = Path(tmp) / "one"
        folder.mkdir()
        (folder / PurePosixPath(asset[0]).name).write_bytes(asset[1])
        cmd = [sys.executable, "-m", "spotbot", "tag", str(folder), "--bot", bot]
        cmd += ["--home", str(Path(tmp) / "home"), "--out", str(Path(tmp) / "out"), "--json"]
        if ref.path is not None:
            cmd += ["--model", str(ref.path)]
        began = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise UsageError(f"a one-asset {bot} job failed: {done.stderr.strip()[-300:]}")
    return seconds


def priced_locally(rate: Throughput, prices: PriceBook) -> Throughput:
    """The rate with a price per vCPU-hour: the reference instance's on-demand price per vCPU."""
    ref = prices.instance(LOCAL_PRICE_REFERENCE)
    per_vcpu = round(ref.on_demand_hourly / ref.vcpus, 6)
    return Throughput(
        **{
            **{k: getattr(rate, k) for k in rate.__dataclass_fields__},
            "vcpu_hour_usd": per_vcpu,
        }
    )


def scaled_to(rate: Throughput, instance_type: str, vcpus: int) -> Throughput:
    """A measured rate carried over to an instance type by its vCPUs (same per-core speed)."""
    measured = rate.vcpus or 1
    return Throughput(
        bot=rate.bot,
        instance_type=instance_type,
        assets_per_second=round(rate.assets_per_second * vcpus / measured, 4),
        load_seconds=rate.load_seconds,
        basis=f"scaled by vCPUs ({vcpus}/{measured}) from: {rate.basis.removeprefix('measured here: ')}",
        measured_at=rate.measured_at,
        vcpus=vcpus,
    )


def write_calibration(path: Path, rates: list[Throughput]) -> Calibration:
    """Merge `rates` into the calibration file at `path` (created if missing)."""
    existing = Calibration.read(path) if path.exists() else Calibration({}, str(path))
    merged = existing.merged(Calibration({(r.bot, r.instance_type): r for r in rates}, str(path)))
    calibration = Calibration(merged.entries, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(calibration.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)
    return calibration
