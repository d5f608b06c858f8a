"""The cost model: prices, calibration, the estimate's arithmetic, and the listing sample."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from spotbot.core.bot import Bot
from spotbot.core.cost import (
    LOCAL,
    Calibration,
    InstancePrice,
    PriceBook,
    SourceSample,
    Throughput,
    compute_estimate,
    default_calibration,
    default_prices,
    estimate_job,
    instance_prices_from_config,
    local_throughput,
    request_cost,
    request_counts,
)
from spotbot.core.errors import UsageError
from spotbot.core.sources import LocalSource
from spotbot.core.steps import sample_source


def _rate(itype: str = "c6i.xlarge", aps: float = 10.0, load: float = 0.0) -> Throughput:
    return Throughput("car-model", itype, aps, load, "test")


def test_shipped_tables_load_and_cover_the_builtin_bots() -> None:
    prices = default_prices()
    calibration = default_calibration()
    assert prices.as_of and prices.region == "us-east-1"
    assert prices.s3_put_per_1k == pytest.approx(0.005)
    for bot in ("car-model", "sentiment-zh", "ocr-zh"):
        assert calibration.get(bot, LOCAL) is not None, bot
        assert set(calibration.instance_types(bot)) == set(prices.instances)
        assert bot in prices.managed
    assert prices.managed["car-model"].per_1k == 1.0
    assert prices.managed["ocr-zh"].per_1k == 1.5
    assert "English only" in prices.managed["ocr-zh"].note


def test_compute_estimate_is_assets_over_rate_plus_one_model_load_per_instance() -> None:
    # GIVEN 3,600 assets at 10 a second, a 20 s load, one instance at $0.17 ($0.068 Spot)
    price = InstancePrice("c6i.xlarge", 4, 0.17, 0.068, "test")
    est = compute_estimate(3600, _rate(load=20.0), price, max_instances=1)
    # THEN 380 s busy, 380/3600 instance-hours, priced at each rate
    assert est.duration_seconds == pytest.approx(380.0)
    assert est.instance_hours == pytest.approx(380 / 3600, rel=1e-3)
    assert est.on_demand_usd == pytest.approx(0.17 * 380 / 3600, rel=1e-3)
    assert est.spot_usd == pytest.approx(0.068 * 380 / 3600, rel=1e-3)


def test_more_instances_shorten_the_run_but_each_pays_its_model_load() -> None:
    price = InstancePrice("c6i.xlarge", 4, 0.17, 0.068, "test")
    one = compute_estimate(10_000, _rate(load=30.0), price, max_instances=1)
    many = compute_estimate(10_000, _rate(load=30.0), price, max_instances=10)
    assert many.instances == 10
    assert many.duration_seconds == pytest.approx(10_000 / 10 / 10 + 30.0)
    assert many.duration_seconds < one.duration_seconds
    assert many.instance_hours > one.instance_hours  # nine more model loads


def test_instances_never_outnumber_the_pages_of_work() -> None:
    est = compute_estimate(300, _rate(), None, max_instances=64)
    assert est.instances == 2  # 300 tasks are two claim pages of 256


def test_request_costs_count_a_put_per_result_object_and_a_list_per_page() -> None:
    sample = SourceSample(listed=2500, accepted=2000, accepted_bytes=0, pages=3, complete=True)
    counts = request_counts(sample)
    assert counts == {"get": 2000, "put": 2003, "list": 3}
    cost = request_cost(counts, default_prices())
    assert cost == pytest.approx((2000 * 0.0004 + 2003 * 0.005 + 3 * 0.005) / 1000)
    sharded = request_counts(sample, per_asset_objects=False)
    assert sharded["put"] == 3


def test_estimate_names_the_managed_service_and_every_calibrated_type() -> None:
    calibration = Calibration(
        {("car-model", "c6i.xlarge"): _rate(), ("car-model", "m6i.xlarge"): _rate("m6i.xlarge")},
        "test",
    )
    sample = SourceSample(1000, 1000, 5_000_000, 1, True)
    est = estimate_job(
        "car-model", sample, calibration, default_prices(), max_vcpus=4, per_asset_objects=True
    )
    assert [c.instance_type for c in est.compute] == ["c6i.xlarge", "m6i.xlarge"]
    assert est.managed is not None and est.managed["usd"] == pytest.approx(1.0)
    assert est.managed["service"].startswith("Amazon Rekognition")
    assert est.compute[0].spot_usd is not None and est.compute[0].spot_usd < 1.0
    assert [n for n in est.notes if "per-asset" not in n] == []
    assert any("1,000 per-asset result objects cost $0.0050" in n for n in est.notes)
    assert json.loads(json.dumps(est.to_dict()))["sample"]["accepted"] == 1000


def test_results_jsonl_alone_is_the_default_and_per_asset_puts_are_named() -> None:
    sample = SourceSample(2000, 2000, 0, 2, True)
    est = estimate_job("car-model", sample, default_calibration(), default_prices())
    assert est.request_counts["put"] == 3
    assert any("would add 2,000 PUTs: $0.0100" in n for n in est.notes)


def test_a_sampled_listing_is_said_to_be_a_lower_bound() -> None:
    sample = SourceSample(10_000, 9_000, 0, 10, complete=False)
    est = estimate_job("car-model", sample, default_calibration(), default_prices())
    assert any("sampled" in n and "lower bound" in n for n in est.notes)


def test_estimate_for_a_type_with_no_calibration_says_so() -> None:
    sample = SourceSample(10, 10, 0, 1, True)
    est = estimate_job(
        "car-model",
        sample,
        Calibration({}, "empty"),
        default_prices(),
        ["c6i.xlarge"],
        local_cpus=2,
    )
    assert est.compute == []
    assert any("spotbot calibrate" in n for n in est.notes)
    assert any("no calibration for car-model on c6i.xlarge" in n for n in est.notes)
    with pytest.raises(UsageError, match=r"no price for instance types \[.z9.mega.\]"):
        estimate_job("car-model", sample, Calibration({}, "e"), default_prices(), ["z9.mega"])


def test_local_rate_is_scaled_by_cores_unless_measured_here() -> None:
    reference = Throughput("car-model", LOCAL, 4.0, 1.0, "reference machine: x", vcpus=2)
    cal = Calibration({("car-model", LOCAL): reference}, "t")
    scaled = local_throughput(cal, "car-model", 8)
    assert scaled is not None and scaled.assets_per_second == pytest.approx(16.0)
    here = Throughput("car-model", LOCAL, 4.0, 1.0, "measured here: x", vcpus=2)
    kept = local_throughput(Calibration({("car-model", LOCAL): here}, "t"), "car-model", 8)
    assert kept is not None and kept.assets_per_second == pytest.approx(4.0)


def test_a_small_local_job_runs_fewer_workers_and_pays_the_jobs_own_time() -> None:
    # GIVEN a rate measured with 2 workers (10/s together), a 3 s load and 1.5 s of job time
    rate = Throughput(
        "car-model", LOCAL, 10.0, 3.0, "measured here: x", vcpus=2, workers=2, job_seconds=1.5
    )
    # WHEN a job starts both workers, or only one (a small job)
    both = compute_estimate(100, rate, None, workers=2)
    one = compute_estimate(100, rate, None, workers=1)
    # THEN one worker goes at half the rate, and each pays the load and the job's own time
    assert both.duration_seconds == pytest.approx(100 / 10 + 3.0 + 1.5)
    assert one.duration_seconds == pytest.approx(100 / 5 + 3.0 + 1.5)
    assert one.assets_per_second == pytest.approx(5.0)
    # AND a reference machine's worker count scales with the cores, like its rate
    scaled = local_throughput(
        Calibration({("car-model", LOCAL): replace(rate, basis="r")}, "t"), "car-model", 8
    )
    assert scaled is not None and scaled.workers == 8 and scaled.job_seconds == 1.5


def test_local_run_is_priced_per_vcpu_hour() -> None:
    rate = Throughput("car-model", LOCAL, 1.0, 0.0, "x", vcpus=4, vcpu_hour_usd=0.05)
    est = compute_estimate(3600, rate, None)
    assert est.instance_hours == pytest.approx(1.0)
    assert est.on_demand_usd == pytest.approx(0.2)
    assert est.spot_usd is None


def test_calibration_round_trips_and_a_local_one_takes_precedence(tmp_path: Path) -> None:
    table = Calibration({("car-model", LOCAL): _rate(LOCAL, 1.0)}, "table")
    mine = Calibration({("car-model", LOCAL): _rate(LOCAL, 3.0)}, "mine")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(mine.to_dict()))
    merged = table.merged(Calibration.read(path))
    entry = merged.get("car-model", LOCAL)
    assert entry is not None and entry.assets_per_second == 3.0


def test_bad_calibration_and_price_files_are_one_line_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"bots": {"car-model": {"local": {"assets_per_second": 0}}}}')
    with pytest.raises(UsageError, match="rate must be positive"):
        Calibration.read(bad)
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="cannot read the calibration"):
        Calibration.read(bad)
    with pytest.raises(UsageError, match="invalid price"):
        instance_prices_from_config({"c6i.xlarge": {"vcpus": 4}}, "config")
    with pytest.raises(UsageError, match=r"no price for instance type 'x9\.huge'"):
        default_prices().instance("x9.huge")


def test_config_prices_replace_the_table_and_keep_its_spot_price() -> None:
    book: PriceBook = default_prices()
    found = instance_prices_from_config({"c6i.xlarge": {"vcpus": 4, "on_demand": 0.2}}, "stack")
    merged = book.with_instances(found, "stack config")
    assert merged.instance("c6i.xlarge").on_demand_hourly == 0.2
    assert merged.instance("c6i.xlarge").spot_hourly == book.instance("c6i.xlarge").spot_hourly
    assert merged.source == "stack config"


class _Photos(Bot):
    name = "photos-only"
    extensions = frozenset({"jpg"})

    def _load(self, model: object, threads: int) -> None: ...
    def decode(self, data: bytes, key: str) -> bytes:
        return data

    def predict(self, items: object) -> list[dict[str, object]]:
        return []


def test_sample_source_counts_accepted_assets_and_their_bytes(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    (tmp_path / "note.txt").write_text("no")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "huge.jpg").write_bytes(b"x" * 100)
    sample = sample_source(LocalSource(tmp_path), _Photos, max_asset_bytes=50)
    assert sample == SourceSample(listed=8, accepted=5, accepted_bytes=15, pages=1, complete=True)


def test_sample_source_stops_after_max_pages_and_says_it_is_incomplete(tmp_path: Path) -> None:
    for i in range(25):
        (tmp_path / f"{i:02d}.jpg").write_bytes(b"x")

    class SmallPages(LocalSource):
        def scan_pages(self, token: str | None = None, page_size: int = 10):  # type: ignore[override]
            return super().scan_pages(token, page_size=10)

    sample = sample_source(SmallPages(tmp_path), _Photos, max_pages=2)
    assert (sample.listed, sample.accepted, sample.pages, sample.complete) == (20, 20, 2, False)
    whole = sample_source(SmallPages(tmp_path), _Photos, max_pages=5)
    assert (whole.listed, whole.complete) == (25, True)
