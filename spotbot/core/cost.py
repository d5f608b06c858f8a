"""The cost model: prices, measured throughput, and what a job will cost before it runs.

Pure arithmetic over two data files shipped in ``spotbot/core/data``: ``prices.json`` (a dated
table of EC2 and request prices, the fallback when no live prices are at hand) and
``calibration.json`` (assets per second per bot and instance type, written by
``python -m benchmarks.bench_calibration``). ``spotbot calibrate`` writes a local calibration
of this machine, which the local estimate prefers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from spotbot.core.errors import UsageError

#: The instance type name of "this machine" in a calibration.
LOCAL = "local"
PRICES_FILE = "prices.json"
CALIBRATION_FILE = "calibration.json"


# -- prices ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InstancePrice:
    instance_type: str
    vcpus: int
    on_demand_hourly: float
    spot_hourly: float | None
    source: str  # where the figures come from: "table 2024-06-01", "DescribeSpotPriceHistory"...


@dataclass(frozen=True, slots=True)
class ManagedPrice:
    """A managed AWS service that does a bot's job, at its list price."""

    service: str
    per_1k: float  # USD per 1,000 units
    unit: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class PriceBook:
    as_of: str
    region: str
    instances: Mapping[str, InstancePrice]
    s3_put_per_1k: float
    s3_list_per_1k: float
    s3_get_per_1k: float
    managed: Mapping[str, ManagedPrice] = field(default_factory=dict)
    source: str = "table"

    def instance(self, instance_type: str) -> InstancePrice:
        try:
            return self.instances[instance_type]
        except KeyError:
            known = ", ".join(sorted(self.instances))
            raise UsageError(
                f"no price for instance type {instance_type!r} (known: {known})"
            ) from None

    def with_instances(self, found: Iterable[InstancePrice], source: str) -> PriceBook:
        """This book with some instance prices replaced (live prices, stack config)."""
        merged = dict(self.instances)
        for price in found:
            old = merged.get(price.instance_type)
            if old is not None and price.spot_hourly is None:
                price = replace(price, spot_hourly=old.spot_hourly)
            merged[price.instance_type] = price
        return replace(self, instances=merged, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceBook:
        try:
            requests = data["s3_requests_per_1k"]
            return cls(
                as_of=str(data["as_of"]),
                region=str(data["region"]),
                source=f"table {data['as_of']}",
                instances={
                    name: InstancePrice(
                        instance_type=name,
                        vcpus=int(row["vcpus"]),
                        on_demand_hourly=float(row["on_demand"]),
                        spot_hourly=float(row["spot"]) if row.get("spot") is not None else None,
                        source=f"table {data['as_of']}",
                    )
                    for name, row in data["instances"].items()
                },
                s3_put_per_1k=float(requests["put"]),
                s3_list_per_1k=float(requests["list"]),
                s3_get_per_1k=float(requests["get"]),
                managed={
                    bot: ManagedPrice(
                        service=str(row["service"]),
                        per_1k=float(row["per_1k"]),
                        unit=str(row["unit"]),
                        note=str(row.get("note", "")),
                    )
                    for bot, row in data.get("managed", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"invalid price table: {type(exc).__name__}: {exc}") from None


def default_prices() -> PriceBook:
    """The dated price table shipped with spotbot."""
    text = resources.files("spotbot.core").joinpath("data", PRICES_FILE).read_text("utf-8")
    return PriceBook.from_dict(json.loads(text))


def instance_prices_from_config(data: Mapping[str, Any], source: str) -> list[InstancePrice]:
    """Instance prices given as {type: {"vcpus", "on_demand", "spot"}} (stack config, a file)."""
    out = []
    for name, row in data.items():
        try:
            out.append(
                InstancePrice(
                    instance_type=str(name),
                    vcpus=int(row["vcpus"]),
                    on_demand_hourly=float(row["on_demand"]),
                    spot_hourly=float(row["spot"]) if row.get("spot") is not None else None,
                    source=source,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"invalid price for {name!r} in {source}: {exc}") from None
    return out


# -- throughput -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Throughput:
    """How fast one worker on one instance tags a bot's assets."""

    bot: str
    instance_type: str
    assets_per_second: float
    load_seconds: float  # loading the model, once per worker
    basis: str  # how the figure was obtained: measured here, or scaled from a measurement
    measured_at: str = ""
    vcpus: int | None = None
    vcpu_hour_usd: float | None = None  # what a vCPU-hour of this machine is taken to cost
    workers: int | None = None  # the worker processes `assets_per_second` was measured with
    job_seconds: float = 0.0  # a local job's own time: start-up, scan, finalize (not the load)


@dataclass(frozen=True, slots=True)
class Calibration:
    entries: Mapping[tuple[str, str], Throughput]
    origin: str

    def get(self, bot: str, instance_type: str) -> Throughput | None:
        return self.entries.get((bot, instance_type))

    def instance_types(self, bot: str) -> list[str]:
        return sorted(t for b, t in self.entries if b == bot and t != LOCAL)

    def merged(self, other: Calibration) -> Calibration:
        """This calibration with `other`'s entries taking precedence."""
        return Calibration({**self.entries, **other.entries}, f"{other.origin} + {self.origin}")

    def to_dict(self) -> dict[str, Any]:
        bots: dict[str, dict[str, Any]] = {}
        for (bot, itype), entry in sorted(self.entries.items()):
            row = asdict(entry)
            del row["bot"], row["instance_type"]
            bots.setdefault(bot, {})[itype] = {k: v for k, v in row.items() if v is not None}
        return {"bots": bots}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str) -> Calibration:
        entries = {}
        try:
            for bot, types in data["bots"].items():
                for itype, row in types.items():
                    entries[(bot, itype)] = Throughput(
                        bot=bot,
                        instance_type=itype,
                        assets_per_second=float(row["assets_per_second"]),
                        load_seconds=float(row.get("load_seconds", 0.0)),
                        basis=str(row.get("basis", "")),
                        measured_at=str(row.get("measured_at", "")),
                        vcpus=int(row["vcpus"]) if row.get("vcpus") is not None else None,
                        workers=int(row["workers"]) if row.get("workers") is not None else None,
                        job_seconds=float(row.get("job_seconds", 0.0)),
                        vcpu_hour_usd=(
                            float(row["vcpu_hour_usd"])
                            if row.get("vcpu_hour_usd") is not None
                            else None
                        ),
                    )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"invalid calibration {origin}: {type(exc).__name__}: {exc}") from None
        for entry in entries.values():
            if entry.assets_per_second <= 0:
                raise UsageError(f"invalid calibration {origin}: a rate must be positive")
        return cls(entries, origin)

    @classmethod
    def read(cls, path: Path) -> Calibration:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read the calibration {path}: {exc}") from None
        return cls.from_dict(data, str(path))


def default_calibration() -> Calibration:
    """The calibration committed with spotbot (see benchmarks/bench_calibration.py)."""
    text = resources.files("spotbot.core").joinpath("data", CALIBRATION_FILE).read_text("utf-8")
    return Calibration.from_dict(json.loads(text), "spotbot's calibration table")


# -- what is to be tagged -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SourceSample:
    """What a listing (whole, or its first pages) found for a bot."""

    listed: int  # objects listed
    accepted: int  # objects the bot would tag
    accepted_bytes: int
    pages: int  # listing pages read
    complete: bool  # False: the listing was cut short after `pages`; figures are a lower bound


# -- the estimate ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ComputeEstimate:
    instance_type: str
    vcpus: int | None
    instances: int  # run at once
    assets_per_second: float  # per instance
    duration_seconds: float
    instance_hours: float
    spot_usd: float | None
    on_demand_usd: float | None
    basis: str
    price_source: str


@dataclass(frozen=True, slots=True)
class Estimate:
    bot: str
    sample: SourceSample
    compute: list[ComputeEstimate]
    requests_usd: float
    request_counts: dict[str, int]
    managed: dict[str, Any] | None
    prices: str  # where the prices come from
    calibration: str
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample"] = asdict(self.sample)
        return data


def request_counts(sample: SourceSample, per_asset_objects: bool = True) -> dict[str, int]:
    """S3 requests a job makes: a GET per asset, a PUT per per-asset result object (plus the
    summary, manifest and report), and one LIST per listing page."""
    pages = max(1, sample.pages if sample.complete else math.ceil(sample.listed / 1000))
    return {
        "get": sample.accepted,
        "put": (sample.accepted if per_asset_objects else 0) + 3,
        "list": pages,
    }


def request_cost(counts: Mapping[str, int], prices: PriceBook) -> float:
    return (
        counts.get("get", 0) * prices.s3_get_per_1k
        + counts.get("put", 0) * prices.s3_put_per_1k
        + counts.get("list", 0) * prices.s3_list_per_1k
    ) / 1000.0


def compute_estimate(
    accepted: int,
    rate: Throughput,
    price: InstancePrice | None,
    max_instances: int = 1,
    workers: int | None = None,
) -> ComputeEstimate:
    """Duration and cost of tagging `accepted` assets on up to `max_instances` instances.

    Each instance loads the model once; more instances than there are pages of 256 tasks
    would idle, so the count stops there. `workers`: the worker processes the job will run
    (a small local job starts fewer than the rate was measured with, and goes slower).
    """
    instances = max(1, min(max_instances, math.ceil(accepted / 256) if accepted else 1))
    speed = rate.assets_per_second
    if workers and rate.workers and workers < rate.workers:
        speed = speed * workers / rate.workers
    busy = accepted / speed if accepted else 0.0
    fixed = rate.load_seconds + rate.job_seconds
    per_instance = busy / instances + (fixed if accepted else 0.0)
    hours = per_instance * instances / 3600.0
    vcpus: int | None
    if price is not None:
        spot = hours * price.spot_hourly if price.spot_hourly is not None else None
        on_demand: float | None = hours * price.on_demand_hourly
        source, vcpus = price.source, price.vcpus
    elif rate.vcpu_hour_usd is not None and rate.vcpus:
        spot, on_demand = None, hours * rate.vcpus * rate.vcpu_hour_usd
        source, vcpus = f"{rate.vcpu_hour_usd} USD per vCPU-hour (calibration)", rate.vcpus
    else:
        spot = on_demand = None
        source, vcpus = "no price", rate.vcpus
    return ComputeEstimate(
        instance_type=rate.instance_type,
        vcpus=vcpus,
        instances=instances,
        assets_per_second=round(speed, 4),
        duration_seconds=round(per_instance, 2),
        instance_hours=round(hours, 5),
        spot_usd=_usd(spot),
        on_demand_usd=_usd(on_demand),
        basis=rate.basis,
        price_source=source,
    )


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def managed_cost(bot: str, accepted: int, prices: PriceBook) -> dict[str, Any] | None:
    managed = prices.managed.get(bot)
    if managed is None:
        return None
    return {
        "service": managed.service,
        "usd": _usd(accepted * managed.per_1k / 1000.0),
        "per_1k_usd": managed.per_1k,
        "unit": managed.unit,
        "note": managed.note,
    }


def estimate_job(
    bot: str,
    sample: SourceSample,
    calibration: Calibration,
    prices: PriceBook,
    instance_types: Iterable[str] = (),
    max_vcpus: int | None = None,
    local_cpus: int | None = None,
    per_asset_objects: bool = False,
    local_workers: int | None = None,
) -> Estimate:
    """What tagging the sample will take and cost, on this machine and on each instance type.

    `max_vcpus` bounds how many instances of a type run at once (the Spot compute
    environment's limit); without it one instance is assumed. `local_cpus`: include this
    machine's estimate (from a local calibration, else the table's reference scaled to them),
    run by `local_workers` worker processes (default: as many as the rate was measured with).
    """
    notes: list[str] = []
    if not sample.complete:
        notes.append(
            f"sampled: only the first {sample.pages} listing pages ({sample.listed:,} objects)"
            " were read; the source holds more, so every figure is a lower bound"
        )
    compute: list[ComputeEstimate] = []
    if local_cpus is not None:
        local = local_throughput(calibration, bot, local_cpus)
        if local is None:
            notes.append(f"no calibration for {bot} on this machine: run `spotbot calibrate`")
        else:
            compute.append(compute_estimate(sample.accepted, local, None, workers=local_workers))
    types = list(instance_types) or calibration.instance_types(bot)
    unknown = [t for t in types if t not in prices.instances]
    if unknown:
        known = ", ".join(sorted(prices.instances))
        raise UsageError(f"no price for instance types {unknown} (known: {known})")
    for itype in types:
        rate = calibration.get(bot, itype)
        if rate is None:
            notes.append(f"no calibration for {bot} on {itype}")
            continue
        price = prices.instance(itype)
        most = max(1, max_vcpus // price.vcpus) if max_vcpus else 1
        compute.append(compute_estimate(sample.accepted, rate, price, most))
    counts = request_counts(sample, per_asset_objects)
    if sample.accepted:
        puts = sample.accepted * prices.s3_put_per_1k / 1000.0
        notes.append(
            f"{sample.accepted:,} per-asset result objects cost ${puts:,.4f} in PUTs;"
            " results.jsonl alone (sharded JSON lines) costs a few PUTs per job"
            if per_asset_objects
            else f"per-asset result objects (--per-asset-results) would add {sample.accepted:,}"
            f" PUTs: ${puts:,.4f}"
        )
    return Estimate(
        bot=bot,
        sample=sample,
        compute=compute,
        requests_usd=_usd(request_cost(counts, prices)) or 0.0,
        request_counts=counts,
        managed=managed_cost(bot, sample.accepted, prices),
        prices=prices.source,
        calibration=calibration.origin,
        notes=notes,
    )


def local_throughput(calibration: Calibration, bot: str, cpus: int) -> Throughput | None:
    """This machine's rate: a local calibration's own, else the committed reference's,
    scaled from the cores it was measured on to `cpus`."""
    entry = calibration.get(bot, LOCAL)
    if entry is None:
        return None
    if entry.vcpus and entry.vcpus != cpus and "measured here" not in entry.basis:
        scaled = entry.assets_per_second * cpus / entry.vcpus
        basis = f"{entry.basis}; scaled from {entry.vcpus} to {cpus} cores"
        workers = max(1, round(entry.workers * cpus / entry.vcpus)) if entry.workers else None
        return replace(entry, assets_per_second=scaled, vcpus=cpus, basis=basis, workers=workers)
    return entry


def cpu_hours(seconds: float, cpus: int) -> float:
    return seconds * cpus / 3600.0
