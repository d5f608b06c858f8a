"""`spotbot models`: the local (or S3) model registry."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spotbot.aws.training_jobs import upload_model
from spotbot.core.artifacts import ModelManifest
from spotbot.core.errors import UsageError
from spotbot.core.plugins import available_bots, load_bot_class
from spotbot.entry.cli.common import (
    emit_json,
    guarded,
    home_option,
    json_option,
    main,
    open_home,
)


# -- models -------------------------------------------------------------------------------------
@main.group()
def models() -> None:
    """The local model registry: versions of each bot's model."""


@models.command("list")
@click.option("--bot", default=None)
@home_option
@json_option
@guarded
def models_list(bot: str | None, home: str | None, as_json: bool) -> None:
    registry = open_home(home).registry()
    names = [bot] if bot else sorted(available_bots())
    rows = [m.to_dict() for name in names for m in registry.versions(name)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"no models in {registry.root}", err=True)
    for row in rows:
        click.echo(
            f"{row['bot']}  {row['version']}  {row['framework']}  {row['created']}"
            f"  {json.dumps(row.get('metrics', {}), ensure_ascii=False)}"
        )


@models.command("show")
@click.argument("bot")
@click.argument("version")
@home_option
@guarded
def models_show(bot: str, version: str, home: str | None) -> None:
    manifest = open_home(home).registry().get(bot, version)
    emit_json(manifest.to_dict())


@models.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.option("--replace", is_flag=True, help="Replace a version already in the registry.")
@click.option(
    "--cloud",
    is_flag=True,
    help="Upload to the S3 registry of the deployment"
    " [env SPOTBOT_ARTIFACTS_BUCKET] instead; the next cloud job uses it.",
)
@home_option
@guarded
def models_import(path: str, replace: bool, cloud: bool, home: str | None) -> None:
    """Import a model folder (or model.tar.gz) with a bot.json; the next job uses it."""
    if cloud:
        uploaded = upload_model(Path(path), replace=replace)
        click.echo(f"imported {uploaded.bot} {uploaded.version} into the S3 registry", err=True)
        return
    registry = open_home(home).registry()
    manifest = registry.import_model(path, replace=replace)
    try:
        load_bot_class(manifest.bot)
    except UsageError:
        registry.remove(manifest.bot, manifest.version)
        raise UsageError(f"the model is for bot {manifest.bot!r}, which is not installed") from None
    assert isinstance(manifest, ModelManifest)
    click.echo(f"imported {manifest.bot} {manifest.version} into {registry.root}", err=True)


@models.command("remove")
@click.argument("bot")
@click.argument("version")
@home_option
@guarded
def models_remove(bot: str, version: str, home: str | None) -> None:
    open_home(home).registry().remove(bot, version)
    click.echo(f"removed {bot} {version}", err=True)
