"""Cost commands: estimate (what a job will take and cost, before it runs) and calibrate."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from spotbot.aws.locations import open_source
from spotbot.core.calibration import (
    LOCAL_CALIBRATION,
    LOCAL_PRICE_REFERENCE,
    SAMPLE_FOLDERS,
    measure,
    priced_locally,
    write_calibration,
)
from spotbot.core.cost import (
    Calibration,
    Estimate,
    PriceBook,
    default_calibration,
    default_prices,
    estimate_job,
    instance_prices_from_config,
)
from spotbot.core.errors import UsageError
from spotbot.core.plugins import load_bot_class
from spotbot.core.steps import ESTIMATE_PAGES, sample_source
from spotbot.core.worker import available_cpus
from spotbot.entry.cli.common import (
    Home,
    emit_json,
    guarded,
    home_option,
    json_option,
    main,
    open_home,
)
from spotbot.entry.local_runner import worker_count


def local_calibration(home: Home) -> Calibration:
    """The committed table, overridden by this machine's own (`spotbot calibrate`) if any."""
    table = default_calibration()
    path = home.root / LOCAL_CALIBRATION
    return table.merged(Calibration.read(path)) if path.exists() else table


def price_book(choice: str, instance_types: list[str]) -> PriceBook:
    """`table` (the dated table), `aws` (live, falling back to the table), or a JSON file of
    {type: {"vcpus", "on_demand", "spot"}}."""
    book = default_prices()
    if choice == "table":
        return book
    if choice == "aws":
        from spotbot.aws.clients import boto_client
        from spotbot.aws.pricing import live_prices

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or book.region
        return live_prices(
            book,
            instance_types or sorted(book.instances),
            region,
            boto_client("ec2", region),
            boto_client("pricing", "us-east-1"),
        )
    path = Path(choice)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"--prices: cannot read {choice!r} ({exc}); use table, aws or a JSON file"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"--prices: {choice} must hold a JSON object of instance types")
    return book.with_instances(instance_prices_from_config(data, str(path)), f"file {path}")


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.4f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def show_estimate(est: Estimate) -> None:
    s = est.sample
    bound = "" if s.complete else " (at least: sampled)"
    click.echo(
        f"{est.bot}: {s.accepted:,} assets to tag{bound}, {s.accepted_bytes / 1e6:,.1f} MB,"
        f" of {s.listed:,} listed in {s.pages} page(s)"
    )
    from rich.console import Console
    from rich.table import Table

    table = Table("where", "instances", "assets/s each", "duration", "Spot", "on-demand")
    for row in est.compute:
        where = row.instance_type + (f" ({row.vcpus} vCPU)" if row.vcpus else "")
        table.add_row(
            where,
            str(row.instances),
            f"{row.assets_per_second:.2f}",
            _duration(row.duration_seconds),
            _money(row.spot_usd),
            _money(row.on_demand_usd),
        )
    Console().print(table)
    counts = est.request_counts
    click.echo(
        f"requests: {_money(est.requests_usd)} ({counts['put']:,} PUT, {counts['get']:,} GET,"
        f" {counts['list']:,} LIST)"
    )
    if est.managed:
        m = est.managed
        click.echo(
            f"managed service: {m['service']} {_money(m['usd'])}"
            f" (${m['per_1k_usd']:.2f} per 1,000 {m['unit']}s; {m['note']})"
        )
    click.echo(f"prices: {est.prices}; throughput: {est.calibration}")
    for note in est.notes:
        click.echo(f"note: {note}")


@main.command()
@click.argument("source")
@click.option("--bot", required=True, help="Bot name (see `spotbot bots`) or package.module:Class.")
@click.option(
    "--instance-type",
    "instance_types",
    multiple=True,
    help="EC2 instance type to price (repeatable) [default: every type calibrated for the bot].",
)
@click.option(
    "--max-vcpus",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="vCPUs the Spot compute environment may run at once (how many instances in parallel).",
)
@click.option(
    "--max-pages",
    type=click.IntRange(min=1),
    default=ESTIMATE_PAGES,
    show_default=True,
    help="Listing pages (1,000 objects each) to read; a larger source is sampled.",
)
@click.option(
    "--prices",
    default="table",
    show_default=True,
    help="table (the dated table), aws (live Spot and Pricing API), or a JSON file.",
)
@click.option(
    "--max-asset-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    help="Assets larger than this would fail unread: not counted.",
)
@click.option(
    "--per-asset-results",
    is_flag=True,
    help="Price one result object per asset (a PUT each) beside results.jsonl.",
)
@home_option
@json_option
@guarded
def estimate(
    source: str,
    bot: str,
    instance_types: tuple[str, ...],
    max_vcpus: int,
    max_pages: int,
    prices: str,
    max_asset_mb: float,
    per_asset_results: bool,
    home: str | None,
    as_json: bool,
) -> None:
    """What tagging SOURCE with a bot will take and cost, on this machine and on EC2, without
    tagging anything."""
    bot_cls = load_bot_class(bot)
    calibration = local_calibration(open_home(home))
    book = price_book(prices, list(instance_types))
    sample = sample_source(open_source(source), bot_cls, max_pages, int(max_asset_mb * 1024 * 1024))
    result = estimate_job(
        bot_cls.name,
        sample,
        calibration,
        book,
        instance_types=instance_types,
        max_vcpus=max_vcpus,
        local_cpus=available_cpus(),
        per_asset_objects=per_asset_results,
        local_workers=worker_count(available_cpus(), sample.accepted, bot_cls.batch_size),
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        show_estimate(result)


@main.command()
@click.option(
    "--bot",
    "bots",
    multiple=True,
    help="Bot to measure (repeatable) [default: every built-in bot with bundled samples].",
)
@click.option(
    "--assets",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder of sample assets [default: ./examples/<photos|texts|signs> for the built-ins].",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Measure each bot for at least this long.",
)
@home_option
@json_option
@guarded
def calibrate(
    bots: tuple[str, ...], assets: str | None, seconds: float, home: str | None, as_json: bool
) -> None:
    """Measure this machine's throughput per bot; `spotbot estimate` then uses it."""
    spot_home = open_home(home)
    names = list(bots) or sorted(SAMPLE_FOLDERS)
    book = default_prices()
    rates = []
    for name in names:
        folder = Path(assets) if assets else Path("examples") / SAMPLE_FOLDERS.get(name, "")
        if not assets and (name not in SAMPLE_FOLDERS or not folder.is_dir()):
            raise UsageError(f"no sample assets for {name}: pass --assets FOLDER")
        rate = priced_locally(
            measure(name, folder, spot_home.registry(), min_seconds=seconds), book
        )
        rates.append(rate)
        if not as_json:
            click.echo(
                f"{rate.bot}: {rate.assets_per_second:.2f} assets/s, model load"
                f" {rate.load_seconds:.1f}s ({rate.basis})",
                err=True,
            )
    path = spot_home.root / LOCAL_CALIBRATION
    write_calibration(path, rates)
    out: dict[str, Any] = {"calibration": str(path), "bots": [r.bot for r in rates]}
    if as_json:
        emit_json(out | {"rates": {r.bot: r.assets_per_second for r in rates}})
    else:
        click.echo(f"calibration written: {path}", err=True)


def local_vcpu_hour_usd(home: Home) -> float:
    """What a vCPU-hour of this machine is taken to cost: this machine's calibration's price,
    else the on-demand price per vCPU of the reference instance type."""
    path = home.root / LOCAL_CALIBRATION
    if path.exists():
        prices = [e.vcpu_hour_usd for e in Calibration.read(path).entries.values()]
        known = [p for p in prices if p is not None]
        if known:
            return known[0]
    ref = default_prices().instance(LOCAL_PRICE_REFERENCE)
    return round(ref.on_demand_hourly / ref.vcpus, 6)
