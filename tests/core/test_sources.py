"""Sources: folders (hidden files, symlinks, loops) and s3:// prefixes (paging, folder markers)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import boto3
import pytest

from spotbot.aws.locations import open_source
from spotbot.aws.s3 import S3Source
from spotbot.core.errors import AssetError, SourceError
from spotbot.core.sources import LocalSource, parse_s3_uri


def listing(source) -> dict[str, object]:
    return {e.key: e for page in source.scan_pages() for e in page.entries}


def test_folder_is_walked_recursively_and_hidden_entries_are_not_assets(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.txt").write_text("x")
    (tmp_path / "top.txt").write_text("x")
    (tmp_path / ".hidden.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")

    found = listing(LocalSource(tmp_path))

    assert sorted(found) == ["a/b/deep.txt", "top.txt"]
    assert found["top.txt"].size == 1


def test_symlink_out_of_the_root_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "escape-file.txt").symlink_to(outside / "secret.txt")

    found = listing(LocalSource(root))

    assert "escape/secret.txt" not in found
    assert found["escape-file.txt"].skip_reason == "symlink points outside the source folder"
    with pytest.raises(AssetError, match="outside the source"):
        LocalSource(root).read("escape/secret.txt", 100)


def test_symlink_loops_are_detected_not_followed_forever(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a")
    (tmp_path / "sub" / "back").symlink_to(tmp_path)  # folder loop
    (tmp_path / "loop1.txt").symlink_to(tmp_path / "loop2.txt")  # link loop
    (tmp_path / "loop2.txt").symlink_to(tmp_path / "loop1.txt")
    (tmp_path / "inside.txt").symlink_to(tmp_path / "sub" / "a.txt")  # fine: stays inside

    found = listing(LocalSource(tmp_path))

    assert "sub/a.txt" in found
    assert not any(k.startswith("sub/back/") for k in found)
    assert found["loop1.txt"].error.startswith("symlink loop")
    assert found["inside.txt"].error is None and found["inside.txt"].size == 1


def test_reading_rejects_keys_that_climb_out(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("ok")
    source = LocalSource(tmp_path)
    for key in ("../etc/passwd", "a/../../x", ""):
        with pytest.raises(AssetError):
            source.read(key, 100)
    assert source.read("ok.txt", 100) == b"ok"


def test_read_errors_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"x" * 2000)
    (tmp_path / "dir.txt").mkdir()
    source = LocalSource(tmp_path)
    with pytest.raises(AssetError, match="too large"):
        source.read("big.txt", 1000)
    with pytest.raises(AssetError, match="not found"):
        source.read("gone.txt", 1000)
    with pytest.raises(AssetError, match="folder"):
        source.read("dir.txt", 1000)


def _read_error_as(uid: int | None, folder: Path, key: str) -> str:
    """The AssetError message of reading `key`, in a forked child running as `uid`."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root (the interpreter is already loaded), read, report
        os.close(reader)
        try:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            LocalSource(folder).read(key, 100)
            message = "read succeeded"
        except AssetError as exc:
            message = str(exc)
        except BaseException as exc:  # report anything else to the parent rather than hang
            message = f"unexpected {type(exc).__name__}: {exc}"
        os.write(writer, message.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as fh:
        message = fh.read()
    os.waitpid(pid, 0)
    return message


def test_unreadable_file_is_a_clear_error() -> None:
    # Root reads files whatever their mode, so as root the read runs as "nobody".
    folder = Path(tempfile.mkdtemp(prefix="spotbot-perm-"))
    try:
        folder.chmod(0o755)
        (folder / "locked.txt").write_text("x")
        (folder / "locked.txt").chmod(0)
        uid = 65534 if os.geteuid() == 0 else None
        assert _read_error_as(uid, folder, "locked.txt") == "cannot read: permission denied"
    finally:
        shutil.rmtree(folder)


def test_missing_or_invalid_sources_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SourceError, match="not a folder"):
        open_source(str(tmp_path / "file"))
    with pytest.raises(SourceError, match="unsupported"):
        open_source("gs://bucket/x")
    for bad in ("s3://", "s3:///key", "s3://a/x", "s3://bad_bucket!/x"):
        with pytest.raises(SourceError):
            parse_s3_uri(bad)


@pytest.fixture
def s3():
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


@pytest.mark.integration
def test_s3_prefix_is_listed_page_by_page(s3) -> None:
    s3.create_bucket(Bucket="assets")
    for i in range(23):  # three pages of 10 (S3's own pages are 1,000: the same paging)
        s3.put_object(Bucket="assets", Key=f"photos/{i:05d}.jpg", Body=b"x" * (i % 3))
    s3.put_object(Bucket="assets", Key="photos/sub/", Body=b"")  # console folder marker
    s3.put_object(Bucket="assets", Key="photos/.DS_Store", Body=b"x")
    s3.put_object(Bucket="assets", Key="photos2/not-mine.jpg", Body=b"x")

    source = S3Source("s3://assets/photos", client=s3)
    pages = list(source.scan_pages(page_size=10))
    keys = [e.key for p in pages for e in p.entries]

    assert len(pages) == 3
    assert [p.next_token is None for p in pages] == [False, False, True]
    assert len(keys) == len(set(keys)) == 23
    assert keys[0] == "00000.jpg"
    assert source.read("00002.jpg", 10) == b"xx"

    # resuming from a page's token lists the rest, and only the rest
    rest = [
        e.key for p in source.scan_pages(token=pages[0].next_token, page_size=10) for e in p.entries
    ]
    assert rest == keys[len(pages[0].entries) :]


@pytest.mark.integration
def test_s3_errors_are_clear(s3) -> None:
    s3.create_bucket(Bucket="assets")
    with pytest.raises(SourceError, match="NoSuchBucket"):
        S3Source("s3://missing-bucket/x", client=s3).check_readable()
    with pytest.raises(AssetError, match="NoSuchKey"):
        S3Source("s3://assets/x", client=s3).read("nope.jpg", 10)


def test_a_fifo_swapped_in_after_the_scan_fails_its_asset_without_blocking(tmp_path: Path) -> None:
    # GIVEN a file listed by the scan, then replaced by a FIFO with no writer
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.txt").write_text("hello")
    source = LocalSource(root)
    assert [e.key for p in source.scan_pages() for e in p.entries] == ["a.txt"]
    (root / "a.txt").unlink()
    os.mkfifo(root / "a.txt")
    # WHEN the worker reads it THEN it fails at once with what the file has become
    began = time.monotonic()
    with pytest.raises(AssetError, match=r"^cannot read: not a regular file \(a FIFO\)$"):
        source.read("a.txt", 1024)
    assert time.monotonic() - began < 2


def test_a_file_name_that_is_not_utf8_fails_its_own_task_only(tmp_path: Path) -> None:
    # GIVEN a folder with a file whose name is not valid UTF-8, beside a normal one
    root = tmp_path / "src"
    root.mkdir()
    (root / "ok.txt").write_text("fine")
    with open(os.path.join(os.fsencode(root), b"bad\xff\xfename.txt"), "wb") as fh:
        fh.write(b"x")
    # WHEN it is scanned THEN the odd name is an entry that fails with a message, shown readably
    entries = {e.key: e for p in LocalSource(root).scan_pages() for e in p.entries}
    assert set(entries) == {"ok.txt", "bad\\xff\\xfename.txt"}
    assert entries["ok.txt"].error is None
    assert entries["bad\\xff\\xfename.txt"].error == (
        "file name is not valid UTF-8: rename it to tag it"
    )
    assert all(key.encode("utf-8") for key in entries)  # storable, JSON-able keys
