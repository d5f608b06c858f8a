"""The `spotbot` command as a user runs it: outputs, --json, exit codes, messages, search."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from tests.conftest import EXAMPLES, base_env, run_cli

pytestmark = pytest.mark.e2e


def _texts(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"doc {i}.txt").write_text(f"hello world number{i} 出口")
    (folder / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf8")
    (folder / "image.png").write_bytes(b"\x89PNG")
    return folder


def test_tag_a_folder_writes_results_and_summary_and_prints_json(tmp_path: Path) -> None:
    env = base_env(tmp_path / "home")
    proc = run_cli(
        "tag",
        str(EXAMPLES / "signs"),
        "--bot",
        "ocr-zh",
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "2",
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout holds the summary and nothing else
    assert summary["status"] == "SUCCEEDED"
    assert summary["counts"] == {"total": 9, "done": 8, "failed": 0, "skipped": 1}
    assert summary["model_version"].startswith("ppocr-v6-small")
    job_dir = tmp_path / "out" / summary["job_id"]
    on_disk = json.loads((job_dir / "summary.json").read_text())
    assert on_disk["counts"] == summary["counts"] and on_disk["assets_per_second"] > 0
    lines = [json.loads(x) for x in (job_dir / "results.jsonl").read_text("utf-8").splitlines()]
    assert [r["key"] for r in lines] == sorted(r["key"] for r in lines)
    truth = json.loads((EXAMPLES / "signs" / "truth.json").read_text("utf-8"))
    for record in lines:
        assert set(record) >= {"key", "status", "bot", "model_version", "tags", "error"}
        if record["key"] in truth:
            assert record["text"].split("\n") == truth[record["key"]], record

    # full-text search over the OCR text, in Chinese, filtered by bot and job
    found = run_cli("search", "健康", "--bot", "ocr-zh", "--json", env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [h["key"] for h in hits] == ["sign-02.jpg"]
    none = run_cli("search", "健康", "--job", "job-other", "--json", env=env)
    assert json.loads(none.stdout) == []

    status = run_cli("status", summary["job_id"], "--json", env=env)
    assert json.loads(status.stdout)["counts"]["done"] == 8
    jobs = run_cli("jobs", "--json", env=env)
    assert [j["id"] for j in json.loads(jobs.stdout)] == [summary["job_id"]]


def test_bots_lists_what_each_accepts_and_its_model(tmp_path: Path) -> None:
    proc = run_cli("bots", "--json", env=base_env(tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr
    ocr = next(b for b in json.loads(proc.stdout) if b["name"] == "ocr-zh")
    assert "jpg" in ocr["accepts"] and ocr["model_version"].startswith("ppocr")
    assert "rapidocr" in ocr["model_origin"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["tag", "{tmp}/nope", "--bot", "ocr-zh"], "source folder not found"),
        (["tag", "{tmp}", "--bot", "no-such-bot"], "unknown bot 'no-such-bot'"),
        (["tag", "{tmp}", "--bot", "ocr-zh", "--workers", "0"], "Invalid value for '--workers'"),
        (
            ["tag", "{tmp}", "--bot", "ocr-zh", "--model", "v-missing"],
            "no model version 'v-missing'",
        ),
        (["tag", "{tmp}", "--bot", "ocr-zh", "--out", "ftp://x/y"], "unsupported output"),
        (["tag", "s3://", "--bot", "ocr-zh"], "not an s3:// URI"),
        (["status", "job-missing"], "no job 'job-missing'"),
        (["resume", "job-missing"], "no job 'job-missing'"),
        (["search", "  "], "the search query is empty"),
        (["models", "show", "ocr-zh", "nope"], "no model version 'nope'"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_no_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args], env=base_env(tmp_path / "home"))
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tag", "{tmp}", "--bot", "ocr-zh", "--workers", "0"],
            "'--workers': 0 is not in the range",
        ),
        (["tag", "{tmp}", "--bot", "ocr-zh", "--max-failures", "150"], "'--max-failures': 150"),
        (["tag"], "Missing argument 'SOURCE'"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_a_bad_option_is_one_line_not_a_usage_block(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args], env=base_env(tmp_path / "home"))
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and message in line and line.endswith("--help)"), line
    assert proc.stdout == ""


def test_failed_assets_within_the_threshold_exit_0_and_over_it_exit_1(tmp_path: Path) -> None:
    folder = _texts(tmp_path / "texts")
    env = base_env(tmp_path / "home")
    bot = "tests.fakebots:WordsBot"
    ok = run_cli("tag", str(folder), "--bot", bot, "--out", str(tmp_path / "o1"), "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["counts"] == {"total": 8, "done": 6, "failed": 1, "skipped": 1}
    failed = run_cli(
        "tag",
        str(folder),
        "--bot",
        bot,
        "--out",
        str(tmp_path / "o2"),
        "--max-failures",
        "10",
        "--json",
        env=env,
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "FAILED"
    assert "over the 10% allowed" in failed.stderr


@pytest.mark.integration
def test_tag_an_s3_prefix_end_to_end(tmp_path: Path, aws_env: dict[str, str]) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="photos")
    for path in sorted((EXAMPLES / "signs").glob("*.jpg"))[:4]:
        s3.put_object(Bucket="photos", Key=f"in/{path.name}", Body=path.read_bytes())
    s3.put_object(
        Bucket="photos",
        Key="in/中文 目录/sign one.jpg",
        Body=(EXAMPLES / "signs" / "sign-01.jpg").read_bytes(),
    )
    s3.put_object(Bucket="photos", Key="in/readme.md", Body=b"hi")
    s3.create_bucket(Bucket="results")
    env = base_env(tmp_path / "home", **aws_env)

    proc = run_cli(
        "tag",
        "s3://photos/in/",
        "--bot",
        "ocr-zh",
        "--out",
        "s3://results/tags",
        "--workers",
        "2",
        "--per-asset-results",
        "--json",
        env=env,
    )

    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"total": 6, "done": 5, "failed": 0, "skipped": 1}
    prefix = f"tags/{summary['job_id']}/"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="results", Prefix=prefix)["Contents"]}
    assert f"{prefix}summary.json" in keys and f"{prefix}results.jsonl" in keys
    per_asset = sorted(k for k in keys if k.startswith(f"{prefix}results/"))
    assert len(per_asset) == 5 and all(".." not in k.split("/") for k in per_asset)
    body = s3.get_object(Bucket="results", Key=f"{prefix}results.jsonl")["Body"].read()
    records = {json.loads(x)["key"]: json.loads(x) for x in body.decode().splitlines()}
    assert records["中文 目录/sign one.jpg"]["text"] == "免费无线网络"


def test_retry_tags_the_failed_assets_again(tmp_path: Path) -> None:
    # GIVEN a finished job with a failed asset (a file that was not text)
    folder = _texts(tmp_path / "texts")
    env = base_env(tmp_path / "home")
    bot = "tests.fakebots:WordsBot"
    first = run_cli(
        "tag", str(folder), "--bot", bot, "--out", str(tmp_path / "o"), "--json", env=env
    )
    job_id = json.loads(first.stdout)["job_id"]
    assert json.loads(first.stdout)["counts"]["failed"] == 1
    # WHEN the cause is fixed and the job retried THEN only those assets run again, and pass
    (folder / "bad.txt").write_text("now it is text")
    again = run_cli("retry", job_id, "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert "1 assets to tag again" in again.stderr
    summary = json.loads(again.stdout)
    assert summary["counts"] == {"total": 8, "done": 7, "failed": 0, "skipped": 1}
    lines = (Path(summary["output"]) / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8  # one line per asset, the retried one replaced


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_one_row_per_asset_and_tag(tmp_path: Path, fmt: str) -> None:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    folder = _texts(tmp_path / "texts")
    env = base_env(tmp_path / "home")
    done = run_cli(
        "tag",
        str(folder),
        "--bot",
        "tests.fakebots:WordsBot",
        "--out",
        str(tmp_path / "o"),
        "--json",
        env=env,
    )
    job_id = json.loads(done.stdout)["job_id"]
    target = tmp_path / f"results.{fmt}"
    exported = run_cli("export", job_id, "--format", fmt, "--out", str(target), env=env)
    assert exported.returncode == 0, exported.stderr
    table = (pq.read_table(target) if fmt == "parquet" else pa_csv.read_csv(target)).to_pylist()
    # THEN every asset is there: one row per tag, one row for an asset without tags
    assert {r["key"] for r in table} == {p.name for p in folder.iterdir()}
    tagged = [r for r in table if r["status"] == "DONE"]
    assert all(r["label"] and 0 < r["score"] <= 1 for r in tagged)
    assert {r["tag_rank"] for r in tagged} >= {0}
    failed = [r for r in table if r["status"] == "FAILED"]
    assert len(failed) == 1 and failed[0]["error"] and failed[0]["label"] in (None, "")
    assert run_cli("export", "job-nope", "--out", str(target), env=env).returncode == 2


SPOTBOT_LINES = ("job ", "scanned ", "tagged ", "results: ")


@pytest.mark.parametrize(
    ("bot", "folder"), [("ocr-zh", "signs"), ("car-model", "photos"), ("sentiment-zh", "texts")]
)
def test_a_built_in_bot_prints_only_spotbot_lines(tmp_path: Path, bot: str, folder: str) -> None:
    # WHEN a built-in bot tags its examples (its engine loads: onnxruntime, AutoGluon/timm, torch)
    proc = run_cli(
        "tag",
        str(EXAMPLES / folder),
        "--bot",
        bot,
        "--out",
        str(tmp_path / "out"),
        env=base_env(tmp_path / "home"),
    )
    assert proc.returncode == 0, proc.stderr
    # THEN no third-party progress bar, warning or banner reaches the user: only spotbot's lines
    foreign = [line for line in proc.stderr.splitlines() if not line.startswith(SPOTBOT_LINES)]
    assert not foreign, foreign
    assert "SUCCEEDED" in proc.stderr
