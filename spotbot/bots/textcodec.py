"""Text assets' encodings: detect UTF-8, GB18030 (GBK/GB2312) and UTF-16/32, refuse binary data.

Detection order, most certain first: a byte-order mark; then strict UTF-8 (valid non-ASCII
UTF-8 is almost never anything else); then charset-normalizer. A GBK or GB2312 verdict is
decoded as GB18030, their superset, so rarer characters outside GBK still decode.
"""

from __future__ import annotations

import codecs
import unicodedata

from spotbot.core.errors import AssetError

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHINESE_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}
# The encodings a text asset may be in; a single-byte Western code page fitting bytes that
# are not UTF-8 is, in this bot's world, nearly always binary data read as text.
_ACCEPTED = _CHINESE_FAMILY | {
    "ascii",
    "utf_8",
    "utf_16",
    "utf_16_le",
    "utf_16_be",
    "utf_32",
    "utf_32_le",
    "utf_32_be",
    "big5",
    "big5hkscs",
}
_CHAOS_SLACK = 0.1  # charset-normalizer chaos scores this close count as a tie
_MAX_CONTROL_RATIO = 0.02  # share of control characters (not tab/newline) tolerated in text
_MAX_PRIVATE_USE_RATIO = 0.5  # private-use characters: only a text made mostly of them is not text


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a text asset; AssetError with a one-line reason when it is not text."""
    if not data or not data.strip():
        raise AssetError("empty text")
    text, encoding = _decode(data)
    _check_is_text(text)
    if not text.strip():
        raise AssetError("empty text")
    return text, encoding


def _decode(data: bytes) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                raise AssetError(f"invalid {encoding} text after its byte-order mark") from None
    if b"\x00" not in data:  # UTF-8 text never holds NUL; UTF-16 without a BOM does
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    # Short Chinese texts fit several CJK code pages equally well (charset-normalizer scores
    # "还行吧" in GB18030 and Big5 alike): among the near-least chaotic fits, this bot for
    # simplified Chinese prefers GB18030, then Big5, then BOM-less UTF-16/32.
    fits = [m for m in from_bytes(data) if m.encoding.lower() in _ACCEPTED]
    if not fits:
        raise AssetError("not text: no Chinese or Unicode encoding fits these bytes (binary data?)")
    least = min(m.chaos for m in fits)
    best = min(
        (m for m in fits if m.chaos <= least + _CHAOS_SLACK),
        key=lambda m: (_preference(m.encoding.lower()), -m.coherence),
    )
    encoding = best.encoding.lower()
    if encoding in _CHINESE_FAMILY:
        encoding = "gb18030"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        return str(best), best.encoding


def _preference(encoding: str) -> int:
    if encoding in _CHINESE_FAMILY:
        return 0
    if encoding.startswith("big5"):
        return 1
    if encoding.startswith("utf_16") or encoding.startswith("utf_32"):
        return 2
    return 3


def _check_is_text(text: str) -> None:
    # Private-use characters are text a reader sees (vendor glyphs, GB18030's user-defined
    # area, mis-encoded reviews); they count against the text only when they are most of it.
    categories = [unicodedata.category(ch) for ch in text if ch not in "\t\n\r\f\v"]
    control = sum(1 for c in categories if c in ("Cc", "Cs"))
    private = categories.count("Co")
    if private > _MAX_PRIVATE_USE_RATIO * len(text):
        raise AssetError(f"not text: {private} private-use characters in {len(text)}")
    if control > _MAX_CONTROL_RATIO * len(text):
        raise AssetError(f"not text: {control} control characters in {len(text)} (binary data?)")
    if text.count("\ufffd") > _MAX_CONTROL_RATIO * len(text):
        raise AssetError("not text: too many undecodable bytes")
