"""Asset sources: the Source interface and the local folder, listed page by page and read with a size cap.

The S3 source is an adapter: `spotbot.aws.s3`."""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from spotbot.core.errors import AssetError, SourceError

PAGE_SIZE = 1000  # S3 ListObjectsV2 returns at most 1,000 keys a page; local pages match it


@dataclass(slots=True, frozen=True)
class ScanEntry:
    """One object found under the source. `error` is set when it was found but cannot be an asset."""

    key: str
    size: int | None
    error: str | None = None
    skip_reason: str | None = None
    # What changes when the content does: the ETag in S3, mtime and size in a folder.
    fingerprint: str | None = None


@dataclass(slots=True)
class ScanPage:
    entries: list[ScanEntry]
    next_token: str | None  # None once the listing is complete


class Source(ABC):
    """Where assets come from. Keys are relative to the source's root or prefix."""

    uri: str
    # Whether a read waits on a network: the worker then keeps several in flight; a local
    # file is read in line (a thread hand-off per tiny file costs more than the read).
    remote: bool = True

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


def too_large(size: int, max_bytes: int) -> AssetError:
    return AssetError(
        f"asset too large: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.1f} MB cap"
    )


class LocalSource(Source):
    """A folder, walked recursively in a stable order.

    Hidden files and folders (leading dot) are not assets. Symbolic links are followed only
    while they stay inside the root; a folder reached twice (a link loop) is walked once.
    """

    remote = False

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
        self._folders: dict[tuple[str, ...], str] = {}

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
                if printable_key(key) is None:
                    # Shown with its undecodable bytes as \xNN: the task fails with a message
                    # (renaming the file is the cure) and the job goes on.
                    shown = os.fsencode(key).decode("utf-8", "backslashreplace")
                    yield ScanEntry(
                        shown, None, error="file name is not valid UTF-8: rename it to tag it"
                    )
                    continue
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
        return ScanEntry(key, st.st_size, fingerprint=f"{st.st_mtime_ns}-{st.st_size}")

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
        return Path(self._locate(key)[0])

    def _plain(self, key: str) -> str:
        """The file for a key in its resolved folder (inside the root), not yet checked."""
        parts = [p for p in key.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise AssetError(f"invalid asset key: {key!r}")
        return os.path.join(self._real_folder(tuple(parts[:-1])), parts[-1])

    def _locate(self, key: str) -> tuple[str, bool]:
        """The file for a key and whether it may be opened without following a link.

        The folder is resolved once (cached); a file that is not itself a symlink is then
        inside the root with no resolve of its own, and is opened with O_NOFOLLOW, so a link
        swapped in after this check cannot lead out. A symlinked file is resolved in full.
        """
        plain = self._plain(key)
        try:
            st = os.lstat(plain)
        except FileNotFoundError:
            raise AssetError("cannot read: file not found (removed after the scan?)") from None
        except OSError as exc:
            raise AssetError(f"cannot read: {exc.strerror or exc}") from None
        if not stat.S_ISLNK(st.st_mode):
            return plain, True
        path = self.root.joinpath(*[p for p in key.split("/") if p not in ("", ".")])
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            raise AssetError("cannot read: file not found (removed after the scan?)") from None
        except (RuntimeError, OSError) as exc:
            raise AssetError(f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        if not self._inside(real):
            raise AssetError("cannot read: the path leads outside the source folder")
        return str(path), False

    def _real_folder(self, parts: tuple[str, ...]) -> str:
        """A key's folder, resolved and checked to be inside the root (cached per folder)."""
        cached = self._folders.get(parts)
        if cached is not None:
            return cached
        try:
            real = self.root.joinpath(*parts).resolve(strict=True)
        except FileNotFoundError:
            raise AssetError("cannot read: file not found (removed after the scan?)") from None
        except (RuntimeError, OSError) as exc:
            raise AssetError(f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        if not self._inside(real):
            raise AssetError("cannot read: the path leads outside the source folder")
        if len(self._folders) >= 10_000:
            self._folders.clear()
        self._folders[parts] = str(real)
        return str(real)

    def read(self, key: str, max_bytes: int) -> bytes:
        # Non-blocking, so a FIFO or a device swapped in after the scan cannot hang the
        # worker at open(); only a regular file is read, and a regular file's reads ignore
        # O_NONBLOCK. The file itself is opened without following a link: a symlink (ELOOP)
        # takes the checked way, resolved in full.
        flags = os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC
        try:
            try:
                fd = os.open(self._plain(key), flags | _O_NOFOLLOW)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EMLINK):
                    raise
                path, plain = self._locate(key)
                fd = os.open(path, flags | (_O_NOFOLLOW if plain else 0))
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise AssetError("cannot read: it is a folder, not a file")
                if not stat.S_ISREG(st.st_mode):
                    raise AssetError(f"cannot read: not a regular file ({_file_kind(st.st_mode)})")
                if st.st_size > max_bytes:
                    raise too_large(st.st_size, max_bytes)
                # Ask for the file's size (+1 to see it grew), not for the cap; a file that
                # grew since fstat is read on to the cap (+1, to tell it is over).
                data = _read_upto(fd, st.st_size + 1)
                if len(data) == st.st_size + 1 <= max_bytes:
                    data += _read_upto(fd, max_bytes + 1 - len(data))
            finally:
                os.close(fd)
        except IsADirectoryError:
            raise AssetError("cannot read: it is a folder, not a file") from None
        except PermissionError:
            raise AssetError("cannot read: permission denied") from None
        except FileNotFoundError:
            raise AssetError("cannot read: file not found (removed after the scan?)") from None
        except OSError as exc:
            raise AssetError(f"cannot read: {exc.strerror or exc}") from None
        if len(data) > max_bytes:
            raise too_large(len(data), max_bytes)
        return data


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _read_upto(fd: int, size: int) -> bytes:
    """Up to `size` bytes of a file, fewer only at its end (one read may return less)."""
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def printable_key(key: str) -> str | None:
    """The key itself when it is valid UTF-8, else None.

    A local file name is bytes, and not all bytes are UTF-8: Python hands such a name over
    with surrogate escapes, which no index, JSON document or S3 key can hold.
    """
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return key


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of an s3:// URI, or SourceError with what is wrong with it."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SourceError(f"not an s3:// URI: {uri!r} (expected s3://bucket/prefix)")
    bucket = parsed.netloc
    if not (3 <= len(bucket) <= 63) or not all(
        (c.isascii() and c.isalnum()) or c in "-." for c in bucket
    ):
        raise SourceError(f"invalid S3 bucket name in {uri!r}")
    return bucket, parsed.path.lstrip("/")


def is_hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))
