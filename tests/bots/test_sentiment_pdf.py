"""sentiment-zh reads a PDF's text layer (the shipped model, page by page, weighted by text)."""

from __future__ import annotations

import pytest

from spotbot.bots import synth_media as media
from spotbot.bots.sentiment_zh import CHECKPOINT_ENV, SentimentZhBot
from spotbot.core.artifacts import ModelRef
from spotbot.core.errors import AssetError

POSITIVE = ["酒店位置很好，离地铁站很近。", "房间干净整洁，服务热情，下次还住这里。"]
NEGATIVE = ["房间很小，隔音很差，一晚上没睡好。", "前台态度冷淡，再也不来了。"]


@pytest.fixture(scope="module")
def bot() -> SentimentZhBot:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(CHECKPOINT_ENV, raising=False)
        mp.delenv("SPOTBOT_MODELS", raising=False)
        loaded = SentimentZhBot()
        loaded.load(ModelRef(loaded.name, SentimentZhBot.builtin_version or "", None, "built-in"))
        return loaded


@pytest.mark.parametrize(("lines", "label"), [(POSITIVE, "positive"), (NEGATIVE, "negative")])
def test_a_pdf_review_is_read_from_its_text_layer(
    bot: SentimentZhBot, lines: list[str], label: str
) -> None:
    # GIVEN a two-page review as a PDF with a text layer
    data = media.text_pdf([lines[:1], lines[1:]])
    assert bot.accepts("review.pdf")
    # WHEN sentiment-zh tags it
    stream = bot.open_container(data, "review.pdf")
    assert stream is not None
    result = bot.tag_container(stream)
    # THEN the document has one verdict, and each page's verdict carries its page
    assert result["tags"][0]["label"] == label
    assert {t["page"] for t in result["page_tags"]} == {1, 2}
    assert "".join(result["text"].split()) == "".join("".join(lines).split())


def test_a_scanned_pdf_has_no_text_to_read(bot: SentimentZhBot) -> None:
    # GIVEN a PDF of page images only WHEN tagged THEN it fails: there is nothing to read
    stream = bot.open_container(media.scanned_pdf([media.sign(["欢迎光临"], 1)]), "scan.pdf")
    assert stream is not None
    with pytest.raises(AssetError, match="no text layer"):
        bot.tag_container(stream)
