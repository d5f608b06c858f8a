"""The SageMaker inference contract of `spotbot serve`: in-process (Starlette's test client) and as
a real process behind a real HTTP client, with WordsBot and with ocr-zh's real model."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spotbot.core.artifacts import ModelManifest
from spotbot.core.errors import ModelError
from spotbot.entry.serving import ServeOptions, create_app, find_model, load_served_bot, media_types
from tests.conftest import REPO, base_env, free_port

WORDS = "tests.fakebots:WordsBot"


# -- a real `spotbot serve` process (also used by the worker's endpoint-mode tests) ----------
@contextlib.contextmanager
def serve_process(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    startup: float = 90,
    module: str = "spotbot",
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`python -m <module> serve` on a free loopback port, up once /ping answers 200; stopped
    afterwards. `module` is the CLI or the container's entry point."""
    port = free_port()
    log_path = tmp / f"serve-{port}.log"
    opt_ml = tmp / f"opt-ml-{port}"
    (opt_ml / "model").mkdir(parents=True)
    run_env = base_env(SPOTBOT_OPT_ML=str(opt_ml), **(env or {}))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            env=run_env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not come up:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield proc, url, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- unit: model resolution and the app in-process ----------------------------------------
def test_model_folder_or_its_single_subfolder_is_found(tmp_path: Path) -> None:
    assert find_model(tmp_path / "missing") is None
    assert find_model(tmp_path) is None  # empty: the built-in model
    ModelManifest(bot="words", version="w7", framework="none").write(tmp_path / "v7")
    assert find_model(tmp_path) == tmp_path / "v7"  # model.tar.gz of a folder
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(ModelError, match="not a model directory"):
        find_model(tmp_path)


def test_served_bot_loads_the_folder_model_or_the_builtin(tmp_path: Path) -> None:
    ModelManifest(bot="words", version="w7", framework="none").write(tmp_path / "m")
    bot = load_served_bot(tmp_path / "m", WORDS)
    assert bot.model is not None and bot.model.version == "w7"
    builtin = load_served_bot(tmp_path / "empty", WORDS)
    assert builtin.model is not None and builtin.model.version == "words-1"
    with pytest.raises(ModelError, match="not 'ocr-zh'"):
        load_served_bot(tmp_path / "m", "ocr-zh")


def test_options_come_from_the_sagemaker_environment(tmp_path: Path) -> None:
    env = {"SPOTBOT_OPT_ML": str(tmp_path), "SAGEMAKER_BIND_TO_PORT": "9090", "SPOTBOT_BOT": WORDS}
    options = ServeOptions.from_env(env, port=None, model_dir=None)
    assert (options.model_dir, options.port, options.bot) == (tmp_path / "model", 9090, WORDS)
    assert ServeOptions.from_env(env, port=8181).port == 8181


@pytest.fixture
def words_client(tmp_path: Path) -> Any:
    with warnings.catch_warnings():  # starlette nudges towards httpx2; httpx works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    bot = load_served_bot(tmp_path, WORDS)
    assert "text/plain" in media_types(bot)
    with TestClient(create_app(bot, max_body_bytes=1024)) as client:
        yield client


def test_batch_keeps_order_and_fails_items_on_their_own(words_client: Any) -> None:
    instances = [
        {"key": "a.txt", "b64": base64.b64encode(b"one two two").decode()},
        {"key": "b.txt", "b64": "%%% not base64"},
        {"key": "c.txt"},
        {"key": "d.txt", "b64": base64.b64encode(b"CRASH here").decode()},
    ]
    r = words_client.post("/invocations", json={"instances": instances})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert preds[0]["tags"][0] == {"label": "two", "score": 0.6667}
    assert preds[1] == {"error": "invalid base64 in b64"}
    assert "b64" in preds[2]["error"]
    assert preds[3] == {"error": "bot error: RuntimeError: the model fell over"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b'{"instances": 3}', 400, "malformed batch"),
        (b"[]", 400, "malformed batch"),
    ],
)
def test_malformed_batches_are_400(words_client: Any, body: bytes, status: int, error: str) -> None:
    r = words_client.post(
        "/invocations", content=body, headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]) == (status, error)


def test_accept_without_json_is_406(words_client: Any) -> None:
    r = words_client.post(
        "/invocations", content=b"x", headers={"content-type": "text/plain", "accept": "text/csv"}
    )
    assert r.status_code == 406


def test_execution_parameters_for_batch_transform(words_client: Any) -> None:
    assert words_client.get("/execution-parameters").json()["BatchStrategy"] == "MULTI_RECORD"


# -- the contract on a real server process ------------------------------------------------
@pytest.fixture(scope="module")
def words_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("serve-words")
    with serve_process(tmp, "--max-body-mb", "0.01", env={"SPOTBOT_BOT": WORDS}) as (_, url, _):
        yield url


@pytest.mark.integration
def test_ping_is_200_once_loaded(words_server: str) -> None:
    r = httpx.get(f"{words_server}/ping")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "bot": "words", "model_version": "words-1"}


@pytest.mark.integration
def test_text_asset_gets_its_tags(words_server: str) -> None:
    r = httpx.post(
        f"{words_server}/invocations",
        content="好 好 天气".encode(),
        headers={"content-type": "text/plain; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["tags"][0] == {"label": "好", "score": 0.6667}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("content_type", "body", "status", "error"),
    [
        ("application/xml", b"<a/>", 415, "unsupported content type 'application/xml'"),
        ("", b"abc", 415, "unsupported content type '(none)'"),
        ("text/plain", b"\xff\xfe\x00bad", 400, "cannot decode the payload"),
        ("text/plain", b"", 400, "empty body"),
        ("application/json", b'{"instances": [', 400, "malformed JSON"),
        ("text/plain", b"x" * 20_000, 413, "request body too large"),
    ],
)
def test_bad_requests_get_the_right_status(
    words_server: str, content_type: str, body: bytes, status: int, error: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = httpx.post(f"{words_server}/invocations", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    if status == 400 and error.startswith("cannot decode"):
        assert "not UTF-8" in r.json()["detail"]


@pytest.mark.integration
def test_oversized_chunked_body_is_413(words_server: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for _ in range(20):
            yield b"y" * 1000

    r = httpx.post(
        f"{words_server}/invocations", content=chunks(), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 413


@pytest.fixture(scope="module")
def ocr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("rapidocr")
    tmp = tmp_path_factory.mktemp("serve-ocr")
    with serve_process(tmp, "--threads", "1", env={"SPOTBOT_BOT": "ocr-zh"}) as (_, url, _):
        yield url


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.integration
def test_ocr_image_gets_its_text(ocr_server: str, cjk_lines: list[tuple[str, Any]]) -> None:
    from spotbot.bots.synth import character_error_rate

    text, image = cjk_lines[0]
    r = httpx.post(
        f"{ocr_server}/invocations",
        content=_png(image),
        headers={"content-type": "image/png"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert character_error_rate(text, body["text"]) <= 0.2, (text, body["text"])
    assert body["tags"] and len(body["tags"][0]["box"]) == 4


@pytest.mark.integration
def test_ocr_batch_with_one_corrupt_image(
    ocr_server: str, cjk_lines: list[tuple[str, Any]]
) -> None:
    _, image = cjk_lines[1]
    good = base64.b64encode(_png(image)).decode()
    corrupt = base64.b64encode(b"GIF89a but nothing after the header").decode()
    r = httpx.post(
        f"{ocr_server}/invocations",
        json={"instances": [{"key": "a.png", "b64": good}, {"key": "b.jpg", "b64": corrupt}]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first["text"] and "tags" in first
    assert second["error"].startswith("corrupt GIF"), second


@pytest.mark.integration
def test_ocr_reads_a_pdf_page_by_page_and_a_locked_one_is_400(ocr_server: str) -> None:
    from spotbot.bots import synth_media

    # GIVEN a two-page PDF WHEN posted as one asset THEN each page is read, tags on their page
    pdf = synth_media.text_pdf([["出口在左边"], ["欢迎光临"]])
    r = httpx.post(
        f"{ocr_server}/invocations",
        content=pdf,
        headers={"content-type": "application/pdf"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert {t["page"] for t in body["tags"]} == {1, 2}
    assert "".join(body["text"].split()) == "出口在左边欢迎光临"
    # and an encrypted one is the payload's fault, said in one line
    locked = synth_media.text_pdf([["秘密"]], password="pw")
    r = httpx.post(
        f"{ocr_server}/invocations",
        content=locked,
        headers={"content-type": "application/pdf"},
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("encrypted PDF")


@pytest.mark.integration
def test_ocr_rejects_other_media(ocr_server: str) -> None:
    r = httpx.post(
        f"{ocr_server}/invocations", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415
    assert "image/png" in r.json()["detail"]
    r = httpx.post(
        f"{ocr_server}/invocations", content=b"not an image", headers={"content-type": "image/png"}
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("not an image")


@pytest.mark.integration
def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    # GIVEN a server whose model takes a second per asset, with a request in flight
    env = {"SPOTBOT_BOT": WORDS, "SPOTBOT_TEST_DELAY": "1.5"}
    with serve_process(tmp_path, env=env) as (proc, url, log_path):
        answer: dict[str, Any] = {}

        def call() -> None:
            r = httpx.post(
                f"{url}/invocations", content=b"slow words", headers={"content-type": "text/plain"}
            )
            answer["status"], answer["body"] = r.status_code, r.json()

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)
        # WHEN SageMaker stops the container
        proc.send_signal(signal.SIGTERM)
        caller.join(timeout=30)
        code = proc.wait(timeout=30)
        # THEN the request got its answer, and the server exited cleanly
        assert answer.get("status") == 200, (answer, log_path.read_text())
        assert answer["body"]["tags"][0]["label"] == "slow"
        assert code == 0, log_path.read_text()
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert any(line["message"] == "stopped" for line in lines)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/ping", timeout=2)


@pytest.mark.integration
def test_a_model_that_cannot_load_fails_the_container_at_start(tmp_path: Path) -> None:
    # GIVEN a model folder made for another bot
    ModelManifest(bot="ocr-zh", version="v1", framework="onnx").write(tmp_path / "model")
    # WHEN the words bot is served from it
    proc = subprocess.run(
        [sys.executable, "-m", "spotbot", "serve", "--model-dir", str(tmp_path / "model")],
        env=base_env(SPOTBOT_BOT=WORDS),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # THEN it exits non-zero before opening the port, saying why in a JSON log line
    assert proc.returncode == 1
    line = json.loads(proc.stderr.strip().splitlines()[-1])
    assert line["level"] == "ERROR" and "not 'words'" in line["message"]
