"""Check a SQLite write-ahead log before SQLite reads it.

SQLite replays a WAL frame by frame and stops at the first frame whose checksum fails: every
transaction committed after a damaged frame is dropped without a word, and the store opens
as it was before them (a job "rolls back"). A torn last frame after a crash is expected (that
transaction never committed); a bad frame *followed by* intact commits is damage. This module
reads the log as SQLite does (https://www.sqlite.org/fileformat2.html#walformat) and reports
the second case, so the store can refuse to open with one line instead of losing work.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_MAGIC = (0x377F0682, 0x377F0683)  # the low bit: checksums over big-endian words
_HEADER = 32
_FRAME_HEADER = 24
#: Logs larger than this are not checked (SQLite checkpoints at ~4 MB by default; a larger
#: log means a reader held checkpoints back, and checking it would slow every open).
MAX_CHECKED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class WalDamage:
    wal: Path
    frame: int  # 1-based index of the first damaged frame
    frames: int  # frames in the log
    lost_commits: int  # intact commits after the damage that SQLite would drop

    def message(self, store: Path) -> str:
        return (
            f"the task store {store} has a damaged write-ahead log {self.wal.name} (frame"
            f" {self.frame} of {self.frames} fails its checksum; {self.lost_commits} committed"
            " transactions after it would be lost): copy the store and its -wal file aside and"
            " run `spotbot doctor`"
        )


def _checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1


def check_wal(store: Path) -> WalDamage | None:
    """The damage in `store`'s -wal file, or None when it is absent, sound or only torn at
    its end. Reads the file once; never writes."""
    wal = Path(f"{store}-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return None
    if size < _HEADER or size > MAX_CHECKED_BYTES:
        return None
    data = wal.read_bytes()
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:_HEADER])
    if magic not in _MAGIC:
        return None  # not a log SQLite would replay either
    big_endian = bool(magic & 1)
    if _checksum(data[:24], big_endian, 0, 0) != (c0, c1):
        return None  # a header SQLite rejects: the log is ignored as a whole (a torn reset)
    frame_size = _FRAME_HEADER + page_size
    frames = (len(data) - _HEADER) // frame_size
    s0, s1 = c0, c1
    damaged_at = 0
    lost = 0
    for index in range(frames):
        start = _HEADER + index * frame_size
        header = data[start : start + _FRAME_HEADER]
        _page, commit_size, fs1, fs2, f0, f1 = struct.unpack(">6I", header)
        if (fs1, fs2) != (salt1, salt2):
            break  # frames of an earlier generation of the log: its end
        if damaged_at:
            lost += commit_size > 0
            continue
        t0, t1 = _checksum(header[:8], big_endian, s0, s1)
        t0, t1 = _checksum(data[start + _FRAME_HEADER : start + frame_size], big_endian, t0, t1)
        if (t0, t1) != (f0, f1):
            damaged_at = index + 1
            continue
        s0, s1 = t0, t1
    if damaged_at and lost:
        return WalDamage(wal=wal, frame=damaged_at, frames=frames, lost_commits=lost)
    return None
