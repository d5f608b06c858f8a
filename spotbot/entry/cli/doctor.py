"""`spotbot doctor`: check a spotbot home (task store, models, job locks); salvage a damaged store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from spotbot.core.artifacts import MANIFEST, ModelManifest
from spotbot.core.errors import ModelError, StoreError
from spotbot.core.records import JobStatus
from spotbot.core.sqlite_store import SqliteTaskStore, salvage
from spotbot.core.wal_check import check_wal
from spotbot.entry.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    emit_json,
    guarded,
    home_option,
    json_option,
    main,
    open_home,
)
from spotbot.entry.local_runner import Home

#: A job in one of these with no process running it was interrupted: `spotbot resume` ends it.
_UNFINISHED = (JobStatus.CREATED, JobStatus.SCANNING, JobStatus.RUNNING, JobStatus.INTERRUPTED)


@dataclass
class Findings:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)


@main.command()
@home_option
@click.option(
    "--salvage",
    "do_salvage",
    is_flag=True,
    help="Copy what can be read of a damaged task store into a new one; keep the old aside.",
)
@json_option
@guarded
def doctor(home: str | None, do_salvage: bool, as_json: bool) -> None:
    """Check the task store, the model registry and job locks; say what can be recovered."""
    where = open_home(home)
    findings = Findings()
    _check_store(where, findings, do_salvage)
    _check_models(where, findings)
    if as_json:
        emit_json({"home": str(where.root), **vars(findings)})
    else:
        for kind, lines in (("ok", findings.ok), ("fixed", findings.fixed)):
            for line in lines:
                click.echo(f"{kind}: {line}")
        for line in findings.problems:
            click.echo(f"problem: {line}")
    raise SystemExit(EXIT_JOB_FAILED if findings.problems else EXIT_OK)


def _check_store(home: Home, findings: Findings, do_salvage: bool) -> None:
    path = home.store_path
    if not path.exists():
        findings.ok.append(f"no task store yet at {path} (no job has run from this home)")
        return
    if path.stat().st_size == 0:
        findings.problems.append(
            f"the task store {path} is empty (0 bytes): the jobs it held are gone; their"
            " results are still in each job's output folder"
        )
        return
    damage = check_wal(path)
    if damage and not do_salvage:
        findings.problems.append(
            f"the task store's write-ahead log {damage.wal} is damaged at frame {damage.frame}"
            f" of {damage.frames} ({damage.lost_commits} later commits cannot be replayed):"
            " `spotbot doctor --salvage` keeps the store as of the last commit before the damage"
            " (`spotbot resume` then tags again what was lost) and puts the damaged files aside"
        )
        return
    if damage:
        _salvage(path, findings)
        return
    try:
        store = SqliteTaskStore(path, check=False)
        try:
            report = store.integrity()
            jobs = store.list_jobs(limit=100_000) if report == ["ok"] else []
        finally:
            store.close()
    except (StoreError, Exception) as exc:
        report = [" ".join(str(exc).split())[:200]]
        jobs = []
    if report != ["ok"]:
        if not do_salvage:
            findings.problems.append(
                f"the task store {path} is damaged ({'; '.join(report)[:200]}):"
                " `spotbot doctor --salvage` copies what can be read into a new store"
            )
            return
        _salvage(path, findings)
        return
    findings.ok.append(f"task store {path}: sound, {len(jobs)} jobs")
    for job in jobs:
        if job.status in _UNFINISHED:
            findings.ok.append(f"job {job.id} is {job.status}: `spotbot resume {job.id}` ends it")


def _salvage(path: Path, findings: Findings) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    recovered = path.with_name(f"{path.name}.recovered-{stamp}")
    counts = salvage(path, recovered)
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            old.replace(Path(f"{aside}{suffix}"))
    recovered.replace(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{recovered}{suffix}").unlink(missing_ok=True)
    findings.fixed.append(
        f"salvaged {counts['jobs']} jobs and {counts['tasks']} tasks into a new {path};"
        f" the damaged file is {aside}"
    )


def _check_models(home: Home, findings: Findings) -> None:
    root = home.models
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir() and p.parent.name[0] != "."):
        try:
            manifest = ModelManifest.read(folder)
        except ModelError as exc:
            findings.problems.append(f"model {folder}: {exc}")
            continue
        if (manifest.bot, manifest.version) != (folder.parent.name, folder.name):
            findings.problems.append(
                f"model {folder}: its {MANIFEST} says {manifest.bot} {manifest.version}"
            )
    findings.ok.append(f"model registry {root}: checked")
