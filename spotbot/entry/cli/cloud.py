"""`spotbot cloud`: the deployed API from a terminal, every request signed with SigV4.

The API's address comes from --api-url or SPOTBOT_API_URL (`pulumi stack output api_url`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spotbot.aws.clients import boto_client
from spotbot.core.errors import UsageError
from spotbot.core.sources import parse_s3_uri
from spotbot.entry.cli.common import EXIT_JOB_FAILED, emit_json, guarded, json_option, main

if TYPE_CHECKING:
    from spotbot.aws.api_client import ApiClient

API_URL_ENV = "SPOTBOT_API_URL"
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "BUDGET_EXCEEDED")


@main.group()
@click.option("--api-url", default=None, help=f"The API's URL [env {API_URL_ENV}].")
@click.pass_context
def cloud(ctx: click.Context, api_url: str | None) -> None:
    """Jobs, bots, models and search on the deployed spotbot (SigV4-signed)."""
    url = api_url or os.environ.get(API_URL_ENV)
    ctx.obj = url


def _client(ctx: click.Context) -> ApiClient:
    # Imported on use: requests and the signer cost every local command start-up otherwise.
    from spotbot.aws.api_client import ApiClient

    url = ctx.find_object(str)
    if not url:
        raise UsageError(
            f"no API address: pass --api-url or set {API_URL_ENV} (`pulumi stack output api_url`)"
        )
    return ApiClient(url)


def _show(data: Any, as_json: bool, line: str) -> None:
    if as_json:
        emit_json(data)
    else:
        click.echo(line)


def _status_line(job: dict[str, Any]) -> str:
    counts = job.get("counts") or {}
    parts = [
        f"{k} {counts[k]}"
        for k in ("done", "failed", "skipped", "pending", "running")
        if k in counts
    ]
    rate = job.get("assets_per_second")
    eta = job.get("eta_seconds")
    extra = (f", {rate:.1f} assets/s" if rate else "") + (f", ETA {eta:.0f}s" if eta else "")
    spend = job.get("spend") or {}
    if spend.get("usd") is not None:
        hours = spend.get("endpoint_hours")
        extra += f", spend ${spend['usd']:.4f}" + (f" ({hours:.2f} endpoint h)" if hours else "")
        if spend.get("budget_usd") is not None:
            extra += f" of ${spend['budget_usd']:.2f}"
    return f"job {job['job_id']}: {job['status']} - " + (", ".join(parts) or "no tasks yet") + extra


@cloud.command()
@click.argument("bot")
@click.argument("source")
@click.argument("output")
@click.option("--shards", type=click.IntRange(min=1), default=None)
@click.option("--model", "model_version", default=None, help="Pin a model version.")
@click.option("--inference", type=click.Choice(["in-container", "endpoint"]), default=None)
@click.option("--max-failures", "max_failure_pct", type=click.FloatRange(0, 100), default=None)
@click.option("--client-token", default=None, help="The same token never starts a second job.")
@click.option(
    "--budget-usd",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop claiming before the spend (workers, endpoint hours, requests) would pass this.",
)
@click.option("--only-new", is_flag=True, default=None, help="Reuse results of unchanged assets.")
@json_option
@click.pass_context
@guarded
def submit(ctx: click.Context, as_json: bool, **request: Any) -> None:
    """Start a job of BOT over SOURCE (s3://...) writing to OUTPUT (s3://...)."""
    body = {k: v for k, v in request.items() if v is not None}
    answer = _client(ctx).call("POST", "/jobs", body)
    verb = "started" if answer.get("created") else "already started"
    _show(answer, as_json, f"job {answer['job_id']} {verb}: spotbot cloud watch {answer['job_id']}")


@cloud.command()
@click.argument("job_id")
@json_option
@click.pass_context
@guarded
def status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """A job's status, counts, rate and ETA."""
    job = _client(ctx).call("GET", f"/jobs/{job_id}")
    _show(job, as_json, _status_line(job))


@cloud.command()
@click.argument("job_id")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@json_option
@click.pass_context
@guarded
def watch(ctx: click.Context, job_id: str, interval: float, as_json: bool) -> None:
    """Follow a job until it ends: a live bar on a terminal, a line per change elsewhere.
    Exits 0 when it SUCCEEDED, 1 when it FAILED or was CANCELLED."""
    client = _client(ctx)
    bar = _Bar() if sys.stderr.isatty() and not as_json else None
    last = ""
    try:
        while True:
            job = client.call("GET", f"/jobs/{job_id}")
            if bar is not None:
                bar.update(job)
            elif (line := _status_line(job)) != last and not as_json:
                click.echo(line, err=True)
                last = line
            if job["status"] in FINAL:
                break
            time.sleep(interval)
    finally:
        if bar is not None:
            bar.stop()
    _show(job, as_json, _status_line(job))
    if job["status"] != "SUCCEEDED":
        sys.exit(EXIT_JOB_FAILED)


class _Bar:
    """A rich progress bar of a job's finished tasks, with rate and ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task("starting", total=None)
        self.progress.start()

    def update(self, job: dict[str, Any]) -> None:
        counts = job.get("counts") or {}
        finished = sum(counts.get(k, 0) for k in ("done", "failed", "skipped"))
        description = f"{job['status'].lower()} (failed {counts.get('failed', 0)})"
        self.progress.update(
            self.task,
            completed=finished,
            total=counts.get("total") or None,
            description=description,
        )

    def stop(self) -> None:
        self.progress.stop()


@cloud.command()
@click.argument("job_id")
@json_option
@click.pass_context
@guarded
def cancel(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Cancel a job: its workers stop, its endpoint is released."""
    answer = _client(ctx).call("DELETE", f"/jobs/{job_id}")
    _show(answer, as_json, f"job {job_id}: cancelling")


@cloud.command()
@click.argument("job_id")
@click.option("--max-failures", "max_failure_pct", type=click.FloatRange(0, 100), default=None)
@click.option(
    "--budget-usd",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="A new budget (a job that stopped at its budget goes on).",
)
@json_option
@click.pass_context
@guarded
def retry(
    ctx: click.Context,
    job_id: str,
    max_failure_pct: float | None,
    budget_usd: float | None,
    as_json: bool,
) -> None:
    """Run a finished job's FAILED assets again, and those it never tagged (stopped early)."""
    given = {"max_failure_pct": max_failure_pct, "budget_usd": budget_usd}
    body = {k: v for k, v in given.items() if v is not None}
    answer = _client(ctx).call("POST", f"/jobs/{job_id}/retry", body)
    line = f"job {job_id}: retrying {answer.get('failed')} failed assets"
    if answer.get("untagged"):
        line += f" and {answer['untagged']} untagged ones"
    _show(answer, as_json, line)


@cloud.command()
@click.argument("job_id")
@click.option("--out", type=click.Path(file_okay=False), default=".", show_default=True)
@click.pass_context
@guarded
def results(ctx: click.Context, job_id: str, out: str) -> None:
    """Download a finished job's summary.json and results.jsonl into OUT/JOB_ID/."""
    job = _client(ctx).call("GET", f"/jobs/{job_id}")
    if not job.get("output"):
        raise UsageError(f"job {job_id} has no output location yet")
    bucket, prefix = parse_s3_uri(job["output"])
    target = Path(out) / job_id
    target.mkdir(parents=True, exist_ok=True)
    s3 = boto_client("s3")
    for name in ("summary.json", "results.jsonl"):
        key = "/".join(part for part in (prefix.strip("/"), job_id, name) if part)
        s3.download_file(bucket, key, str(target / name))
        click.echo(str(target / name))


@cloud.command()
@click.argument("query")
@click.option("--bot", default=None)
@click.option("--job", default=None)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--all", "every", is_flag=True, help="Follow the cursor to the last page.")
@json_option
@click.pass_context
@guarded
def search(
    ctx: click.Context,
    query: str,
    bot: str | None,
    job: str | None,
    limit: int,
    every: bool,
    as_json: bool,
) -> None:
    """Full-text search over the tags and recognised text of every job."""
    client, hits, cursor = _client(ctx), [], None
    while True:
        page = client.call("GET", "/search", q=query, bot=bot, job=job, limit=limit, cursor=cursor)
        hits += page["hits"]
        cursor = page.get("next_cursor")
        if not (every and cursor):
            break
    if as_json:
        emit_json({"query": query, "hits": hits, "next_cursor": cursor})
        return
    for hit in hits:
        click.echo(
            f"{hit['job_id']}\t{hit['key']}\t{hit['score']:.2f}\t{hit['text'] or ' '.join(hit['labels'])}"
        )


@cloud.command()
@json_option
@click.pass_context
@guarded
def bots(ctx: click.Context, as_json: bool) -> None:
    """The bots this deployment can run."""
    answer = _client(ctx).call("GET", "/bots")
    if as_json:
        emit_json(answer)
        return
    for bot in answer["bots"]:
        click.echo(f"{bot['name']}\t{', '.join(bot.get('accepts', []))}")


@cloud.command()
@click.argument("name")
@click.option("--image", "image_uri", required=True, help="The bot's image, by digest.")
@click.option("--model", "model_uri", required=True, help="Its model: s3://.../<name>/<version>/")
@click.option("--model-version", default=None, help="The model's version [default: registered].")
@click.option(
    "--accepts", "extensions", required=True, help="File types it tags, comma-separated: jpg,png"
)
@click.option("--command", default=None, help="What its worker runs [default: work].")
@click.option("--vcpus", type=click.IntRange(1, 64), default=None)
@click.option("--memory-mib", type=click.IntRange(512), default=None)
@click.option("--description", default=None)
@json_option
@click.pass_context
@guarded
def register(ctx: click.Context, name: str, as_json: bool, **fields: Any) -> None:
    """Register (or replace) a custom bot NAME: its image runs on Batch like a built-in's."""
    body = {k: v for k, v in fields.items() if v is not None}
    body["extensions"] = [e.strip().lower().lstrip(".") for e in body["extensions"].split(",")]
    if "command" in body:
        body["command"] = body["command"].split()
    answer = _client(ctx).call("PUT", f"/bots/{name}", body)
    line = f"bot {answer['name']} registered: {answer.get('job_definition_arn')}"
    _show(answer, as_json, line)


@cloud.command()
@click.argument("name")
@json_option
@click.pass_context
@guarded
def unregister(ctx: click.Context, name: str, as_json: bool) -> None:
    """Remove custom bot NAME and its job definition (refused while a job uses it)."""
    answer = _client(ctx).call("DELETE", f"/bots/{name}")
    _show(answer, as_json, f"bot {name} removed")


@cloud.command()
@click.argument("bot")
@json_option
@click.pass_context
@guarded
def models(ctx: click.Context, bot: str, as_json: bool) -> None:
    """A bot's model versions in the deployment's registry, newest first."""
    answer = _client(ctx).call("GET", f"/bots/{bot}/models")
    if as_json:
        emit_json(answer)
        return
    for version in answer["versions"]:
        click.echo(f"{version['version']}\t{version.get('created', '')}")
