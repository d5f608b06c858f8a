"""Measuring a bot's throughput on this machine: the figures the cost estimate stands on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from spotbot.core.artifacts import ModelRef, ModelRegistry, resolve_model
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
    """Load the bot's model once, then decode and tag the folder's assets in the bot's batches,
    round after round, until `min_seconds` and `min_assets` are both reached.

    Measured as the local runner works: one worker process per `threads` cores (one thread
    each by default), so the machine's rate is one process's rate times the processes. (One
    process with every thread is slower than that on a shared machine, and it is not what runs.)
    """
    cls = load_bot_class(bot_name)
    assets = sample_assets(bot_name, folder)
    cpus = available_cpus()
    per_worker = max(1, min(threads or 1, cpus))
    workers = max(1, cpus // per_worker)
    bot = cls()
    ref = resolve_model(cls, registry, model)
    bot.load(ref, threads=per_worker)
    load_seconds = cold_start_seconds(bot_name, ref, per_worker)
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
        elapsed = time.perf_counter() - began
        if elapsed >= min_seconds and tagged >= min_assets:
            break
    one = tagged / elapsed
    return Throughput(
        bot=cls.name,
        instance_type=LOCAL,
        assets_per_second=one * workers,
        load_seconds=round(load_seconds, 3),
        basis=f"measured here: {cpu_name()}, {cpus} cores as {workers} workers x {per_worker}"
        f" thread(s), {one:.2f} assets/s each, {tagged} assets of {folder.name}",
        measured_at=utcnow(),
        vcpus=cpus,
    )


_COLD_START = """
import sys, time
began = time.perf_counter()
from pathlib import Path
import spotbot.entry.local_runner  # what a spawned worker process imports first
from spotbot.core.artifacts import ModelRef
from spotbot.core.plugins import load_bot_class
spec, version, path, origin, threads = sys.argv[1:]
bot = load_bot_class(spec)()
bot.load(ModelRef(bot.name, version, Path(path) if path else None, origin), int(threads))
print(time.perf_counter() - began)
"""


def cold_start_seconds(spec: str, ref: ModelRef, threads: int) -> float:
    """What a new worker process spends before its first asset: the runner's imports and the
    model load, measured in a fresh interpreter as a spawned worker starts."""
    args = [spec, ref.version, str(ref.path or ""), ref.origin, str(threads)]
    done = subprocess.run(
        [sys.executable, "-c", _COLD_START, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise UsageError(f"the {ref.bot} model would not load: {done.stderr.strip()[-300:]}")
    return float(done.stdout.strip().splitlines()[-1])


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
