"""Asset sources: a local folder or an s3:// prefix, listed page by page and read with a size cap."""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from spotbot.errors import AssetError, SourceError

PAGE_SIZE = 1000  # S3 ListObjectsV2 returns at most 1,000 keys a page; local pages match it


@dataclass(slots=True, frozen=True)
class ScanEntry:
    """One object found under the source. `error` is set when it was found but cannot be an asset."""

    key: str
    size: int | None
    error: str | None = None
    skip_reason: str | None = None


@dataclass(slots=True)
class ScanPage:
    entries: list[ScanEntry]
    next_token: str | None  # None once the listing is complete


class Source(ABC):
    """Where assets come from. Keys are relative to the source's root or prefix."""

    uri: str

    @abstractmethod
    def scan_pages(
        self, token: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[ScanPage]:
        """List the source page by page, starting after `token` (None: from the beginning)."""

    @abstractmethod
    def read(self, key: str, max_bytes: int) -> bytes:
        """The asset's bytes; AssetError (one line, says what is wrong) when it cannot be read."""

    def check_readable(self) -> None:
        """Raise SourceError unless the source can be listed at all."""
        next(iter(self.scan_pages(page_size=1)), None)


def _too_large(size: int, max_bytes: int) -> AssetError:
    return AssetError(
        f"asset too large: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.1f} MB cap"
    )


class LocalSource(Source):
    """A folder, walked recursively in a stable order.

    Hidden files and folders (leading dot) are not assets. Symbolic links are followed only
    while they stay inside the root; a folder reached twice (a link loop) is walked once.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)
        if not self.root.exists():
            raise SourceError(f"source folder not found: {self.root}")
        if not self.root.is_dir():
            raise SourceError(f"source is not a folder: {self.root}")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceError(f"source folder is not readable: {self.root}")
        self._real_root = self.root.resolve()

    def _inside(self, real: Path) -> bool:
        return real == self._real_root or self._real_root in real.parents

    def _walk(self) -> Iterator[ScanEntry]:
        root_stat = os.stat(self._real_root)
        seen: set[tuple[int, int]] = {(root_stat.st_dev, root_stat.st_ino)}
        stack: list[tuple[Path, str]] = [(self.root, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except OSError as exc:
                yield ScanEntry(
                    prefix.rstrip("/") or ".",
                    None,
                    error=f"folder cannot be listed: {exc.strerror}",
                )
                continue
            subfolders = []
            for entry in reversed(entries):
                if entry.name.startswith("."):
                    continue
                key = prefix + entry.name
                found = self._classify(entry, key, seen)
                if isinstance(found, tuple):
                    subfolders.append(found)
                elif found is not None:
                    yield found
            stack.extend(reversed(subfolders))

    def _classify(
        self, entry: os.DirEntry[str], key: str, seen: set[tuple[int, int]]
    ) -> ScanEntry | tuple[Path, str] | None:
        try:
            is_link = entry.is_symlink()
            if is_link:
                try:
                    real = Path(entry.path).resolve(strict=True)
                except RuntimeError:
                    return ScanEntry(key, None, error="symlink loop: the link never reaches a file")
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        return ScanEntry(
                            key, None, error="symlink loop: the link never reaches a file"
                        )
                    return ScanEntry(key, None, error="broken symlink: its target does not exist")
                if not self._inside(real):
                    return ScanEntry(
                        key, None, skip_reason="symlink points outside the source folder"
                    )
            st = os.stat(entry.path)  # follows the link, now known to stay inside
        except OSError as exc:
            return ScanEntry(key, None, error=f"cannot stat: {exc.strerror}")
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                return None  # a folder reached again through a link: already walked
            seen.add(ident)
            return (Path(entry.path), key + "/")
        if not stat.S_ISREG(st.st_mode):
            return ScanEntry(key, None, skip_reason="not a regular file")
        return ScanEntry(key, st.st_size)

    def scan_pages(
        self, token: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[ScanPage]:
        # A local listing is cheap to redo and task writes are idempotent, so a resumed scan
        # starts over rather than trusting a token across changes to the folder.
        page: list[ScanEntry] = []
        for entry in self._walk():
            page.append(entry)
            if len(page) >= page_size:
                yield ScanPage(page, next_token=entry.key)
                page = []
        yield ScanPage(page, next_token=None)

    def path_of(self, key: str) -> Path:
        """The file for a key, refusing keys that would escape the root."""
        parts = [p for p in key.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise AssetError(f"invalid asset key: {key!r}")
        path = self.root.joinpath(*parts)
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            raise AssetError("cannot read: file not found (removed after the scan?)") from None
        except (RuntimeError, OSError) as exc:
            raise AssetError(f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        if not self._inside(real):
            raise AssetError("cannot read: the path leads outside the source folder")
        return path

    def read(self, key: str, max_bytes: int) -> bytes:
        path = self.path_of(key)
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > max_bytes:
                    raise _too_large(size, max_bytes)
                data = fh.read(max_bytes + 1)
        except IsADirectoryError:
            raise AssetError("cannot read: it is a folder, not a file") from None
        except PermissionError:
            raise AssetError("cannot read: permission denied") from None
        except FileNotFoundError:
            raise AssetError("cannot read: file not found (removed after the scan?)") from None
        except OSError as exc:
            raise AssetError(f"cannot read: {exc.strerror or exc}") from None
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of an s3:// URI, or SourceError with what is wrong with it."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SourceError(f"not an s3:// URI: {uri!r} (expected s3://bucket/prefix)")
    bucket = parsed.netloc
    if not (3 <= len(bucket) <= 63) or not all(c.isalnum() or c in "-." for c in bucket):
        raise SourceError(f"invalid S3 bucket name in {uri!r}")
    return bucket, parsed.path.lstrip("/")


class S3Source(Source):
    """Objects under s3://bucket/prefix, listed with ListObjectsV2 and read with GetObject."""

    def __init__(self, uri: str, client: Any = None, concurrency: int = 16):
        self.uri = uri
        self.bucket, prefix = parse_s3_uri(uri)
        # s3://bucket/photos means the "folder" photos/, not every key starting with "photos".
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._client = client
        self._concurrency = concurrency

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                config=Config(
                    max_pool_connections=max(10, self._concurrency),
                    retries={"max_attempts": 8, "mode": "adaptive"},
                ),
            )
        return self._client

    def scan_pages(
        self, token: str | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[ScanPage]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        config: dict[str, Any] = {"PageSize": min(page_size, PAGE_SIZE)}
        if token:
            config["StartingToken"] = token
        try:
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=self.prefix, PaginationConfig=config
            )
            for page in pages:
                entries = [
                    ScanEntry(obj["Key"][len(self.prefix) :], obj["Size"])
                    for obj in page.get("Contents", [])
                    if not obj["Key"].endswith("/")  # folder markers made by consoles
                ]
                entries = [e for e in entries if e.key and not _hidden(e.key)]
                yield ScanPage(entries, next_token=page.get("NextContinuationToken"))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Error")
            raise SourceError(f"cannot list {self.uri}: {code}") from exc
        except BotoCoreError as exc:
            raise SourceError(f"cannot list {self.uri}: {exc}") from exc

    def object_key(self, key: str) -> str:
        return self.prefix + key

    def read(self, key: str, max_bytes: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                response["Body"].close()
                raise _too_large(size, max_bytes)
            data: bytes = response["Body"].read(max_bytes + 1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Error")
            raise AssetError(
                f"cannot read s3://{self.bucket}/{self.object_key(key)}: {code}"
            ) from None
        except BotoCoreError as exc:
            raise AssetError(
                f"cannot read s3://{self.bucket}/{self.object_key(key)}: {exc}"
            ) from None
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data


def _hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


def open_source(uri: str, **kwargs: Any) -> Source:
    """The Source for a folder path or an s3:// URI."""
    if uri.startswith("s3://"):
        return S3Source(uri, **kwargs)
    if "://" in uri:
        raise SourceError(f"unsupported source {uri!r}: use a folder or s3://bucket/prefix")
    return LocalSource(uri)
