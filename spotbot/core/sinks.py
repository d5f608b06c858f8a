"""Where results go: OUT/<job_id>/, every write atomic and idempotent: the ResultSink interface
and the local folder. The S3 sink is an adapter: `spotbot.aws.s3`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from spotbot.core.errors import EnvironmentFault, OutputError
from spotbot.core.records import Result

RESULTS_DIR = "results"
RESULTS_JSONL = "results.jsonl"
SUMMARY_JSON = "summary.json"


def result_relpath(key: str) -> str:
    """The per-asset result path for an asset key, safe whatever the key holds.

    Each key segment is percent-encoded, and "." / ".." / empty segments are encoded too, so
    a key can never climb out of the results folder or collide with another key's file.
    """
    parts = []
    for segment in key.split("/"):
        encoded = quote(segment, safe=" !$&'()+,;=@[]^`{}~-_")
        if encoded in ("", ".", ".."):
            encoded = encoded.replace(".", "%2E") or "%00"
        parts.append(encoded)
    return "/".join(parts) + ".json"


def result_json(result: Result) -> bytes:
    return result.to_line()


class ResultSink(ABC):
    """The output location of jobs. Paths are relative to <output>/<job_id>/."""

    uri: str

    @abstractmethod
    def check_writable(self) -> None:
        """Raise OutputError unless jobs can write here."""

    @abstractmethod
    def put(self, job_id: str, relpath: str, data: bytes, content_type: str) -> None:
        """Write one object atomically: a reader sees the old bytes or the new, never half."""

    @abstractmethod
    def put_lines(self, job_id: str, relpath: str, lines: Iterable[bytes]) -> int:
        """Stream a large JSON-lines object; return the number of lines."""

    @abstractmethod
    def location(self, job_id: str, relpath: str = "") -> str:
        """Where a job's file lives, for messages and summaries."""

    def write_result(self, result: Result) -> None:
        self.put(
            result.job_id,
            f"{RESULTS_DIR}/{result_relpath(result.key)}",
            result_json(result),
            "application/json",
        )

    def write_summary(self, job_id: str, summary: dict[str, Any]) -> None:
        data = json.dumps(summary, indent=2, ensure_ascii=False).encode() + b"\n"
        self.put(job_id, SUMMARY_JSON, data, "application/json")


class LocalSink(ResultSink):
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)
        self._folders: set[Path] = set()  # made already: a mkdir per result was the hot spot

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise OutputError(
                f"output folder is not writable: {self.root} ({exc.strerror})"
            ) from None

    def _path(self, job_id: str, relpath: str) -> Path:
        path = (self.root / job_id / relpath).absolute()
        base = (self.root / job_id).absolute()
        if base not in path.parents and path != base:
            raise OutputError(f"refusing to write outside the output folder: {relpath!r}")
        return path

    def put(self, job_id: str, relpath: str, data: bytes, content_type: str) -> None:
        path = self._path(job_id, relpath)
        # The temporary name is unique per process and thread, so no two writers share it and
        # a crash leaves at most one stray file per writer, overwritten on the next attempt.
        tmp = path.parent / f".tmp-{path.name}.{os.getpid()}.{threading.get_ident()}"
        try:
            if path.parent not in self._folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(path.parent)
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _write_fault(path, exc) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_lines(self, job_id: str, relpath: str, lines: Iterable[bytes]) -> int:
        path = self._path(job_id, relpath)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:
            raise _write_fault(path, exc) from exc
        count = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for line in lines:
                    fh.write(line + b"\n")
                    count += 1
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
            raise _write_fault(path, exc) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return count

    def location(self, job_id: str, relpath: str = "") -> str:
        return str(self.root / job_id / relpath) if relpath else str(self.root / job_id)


def _write_fault(path: Path, exc: OSError) -> EnvironmentFault:
    """A write to the output that the disk refused: the environment's fault, not the job's."""
    return EnvironmentFault(f"cannot write {path}: {exc.strerror or exc}")
