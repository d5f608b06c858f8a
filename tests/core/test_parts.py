"""Documents and videos, part by part: PDFs (with and without a text layer, encrypted,
truncated, over the cap), multi-page TIFFs and videos, opened by the pipeline and tagged by the
real ocr-zh and sentiment-zh; every bad file is a one-line AssetError for its own asset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from spotbot.bots import synth_media as media
from spotbot.bots.ocr_zh import OcrZhBot
from spotbot.core.artifacts import ModelRef
from spotbot.core.bot import Bot, Prediction, open_parts
from spotbot.core.errors import AssetError
from spotbot.core.parts import PartLimits

PAGE_1 = ["出口在左边", "禁止吸烟"]
PAGE_2 = ["欢迎光临"]


@pytest.fixture(scope="module")
def ocr() -> OcrZhBot:
    bot = OcrZhBot()
    bot.load(ModelRef(bot.name, bot.builtin_version or "", None, bot.builtin_origin), threads=2)
    return bot


def _squash(text: str) -> str:
    return "".join(text.split())


def test_ocr_reads_a_pdf_page_by_page_in_reading_order(ocr: OcrZhBot) -> None:
    # GIVEN a two-page PDF
    data = media.text_pdf([PAGE_1, PAGE_2])
    # WHEN ocr-zh tags it through the pipeline's container path
    stream = ocr.open_container(data, "doc.pdf")
    assert stream is not None
    result = ocr.tag_container(stream)
    # THEN each page's lines are read in order, and every tag carries its page
    pages = {p["page"]: p for p in result["pages"]}
    assert [_squash(line) for line in pages[1]["text"].splitlines()] == PAGE_1
    assert _squash(pages[2]["text"]) == PAGE_2[0]
    assert _squash(result["text"]) == _squash("".join(PAGE_1 + PAGE_2))
    assert {t["page"] for t in result["tags"]} == {1, 2}
    assert all(len(t["box"]) == 4 for t in result["tags"])
    assert result["page_count"] == 2 and pages[1]["height"] == 1600  # rendered to part_side


def test_ocr_reads_a_scanned_pdf_and_a_multipage_tiff(ocr: OcrZhBot) -> None:
    # GIVEN the same two signs as a scan (no text layer) and as a two-page TIFF
    images = [media.sign(["安全出口"], 1), media.sign(["图书馆"], 2)]
    for key, data in (
        ("scan.pdf", media.scanned_pdf(images)),
        ("scan.tiff", media.multipage_tiff(images)),
    ):
        stream = ocr.open_container(data, key)
        assert stream is not None
        # WHEN tagged THEN both pages are read, each tag on its page
        result = ocr.tag_container(stream)
        by_page = {t["page"]: _squash(t["label"]) for t in result["tags"]}
        assert by_page == {1: "安全出口", 2: "图书馆"}, key


def test_ocr_tags_video_frames_with_their_time_and_aggregates_what_it_saw(ocr: OcrZhBot) -> None:
    # GIVEN a 7-second clip: one sign for 4 s, then another (a scene change at 4 s)
    clip = media.video(
        [
            (media.sign(["禁止吸烟"], 5, (640, 360)), 4.0),
            (media.sign(["火车站"], 6, (640, 360)), 3.0),
        ]
    )
    stream = ocr.open_container(clip, "street.mp4")
    assert stream is not None
    # WHEN ocr-zh tags it
    result = ocr.tag_container(stream)
    # THEN each tag has its time, and "seen" has each sign with first/last time and best score
    assert all("time" in t for t in result["tags"])
    seen = {_squash(s["label"]): s for s in result["seen"]}
    assert set(seen) == {"禁止吸烟", "火车站"}
    assert seen["禁止吸烟"]["first"] == 0.0 and 2.0 <= seen["禁止吸烟"]["last"] < 4.0
    assert seen["火车站"]["first"] == pytest.approx(4.0) and seen["火车站"]["last"] >= 6.0
    assert all(0 < s["score"] <= 1 for s in seen.values())
    assert result["duration"] == pytest.approx(7.0, abs=0.2)


class TextLengthBot(Bot):
    """A real bot on the text-part path: tags each page with the length of its text layer."""

    name = "text-length"
    extensions: ClassVar[frozenset[str]] = frozenset({"txt"})
    containers: ClassVar[frozenset[str]] = frozenset({"pdf"})
    part_input = "text"
    builtin_version = "1"

    def _load(self, model: ModelRef, threads: int) -> None:
        pass

    def decode(self, data: bytes, key: str) -> str:
        return data.decode()

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        return [{"tags": [{"label": f"chars:{len(t)}", "score": 1.0}], "text": t} for t in items]


def test_a_third_party_bot_declares_pdf_and_gets_text_layers_for_free() -> None:
    # GIVEN a bot that only declares containers = {"pdf"} and part_input = "text"
    bot = TextLengthBot()
    assert bot.accepts("a/b.PDF") and not bot.accepts("a/b.mp4")
    # WHEN it tags a PDF with a text layer on page 1 and a scanned page 2
    data = media.text_pdf([["这家酒店很好"], []])
    stream = bot.open_container(data, "x.pdf")
    assert stream is not None
    result = bot.tag_container(stream)
    # THEN it read page 1's text; the empty page was skipped
    assert result["tags"] == [{"label": "chars:6", "score": 1.0, "page": 1}]


@pytest.mark.parametrize(
    ("make", "key", "message"),
    [
        (lambda: media.text_pdf([PAGE_1], password="secret"), "e.pdf", "encrypted PDF"),
        (lambda: media.text_pdf([PAGE_1])[:-300], "t.pdf", "truncated PDF"),
        (lambda: media.text_pdf([PAGE_1])[:400], "t2.pdf", "truncated PDF"),
        (lambda: b"%PDF-1.7\n" + b"\x00garbage" * 50 + b"\n%%EOF\n", "c.pdf", "corrupt PDF"),
        (lambda: b"hello, not a pdf", "n.pdf", "not a PDF"),
        (lambda: media.text_pdf([["一"]] * 4), "long.pdf", "over the 3-page cap"),
        (lambda: b"II*\x00" + b"\x01" * 64, "bad.tiff", "corrupt TIFF"),
        (lambda: b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100, "bad.mp4", "video"),
    ],
)
def test_a_bad_document_is_a_one_line_error(make: Any, key: str, message: str) -> None:
    # GIVEN a damaged, locked or too long file WHEN it is opened (and read)
    container = {"pdf": "pdf", "tiff": "tiff", "mp4": "video"}[key.rsplit(".", 1)[1]]
    with pytest.raises(AssetError) as caught:
        stream = open_parts(container, make(), key, limits=PartLimits(max_pages=3))
        list(stream)
    # THEN the error says what is wrong, on one line
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_truncated_video_fails_and_one_over_the_cap_too() -> None:
    signs = [
        media.sign([text], 7 + i, (320, 180)) for i, text in enumerate(["注意", "安全", "出口"])
    ]
    frame = signs[0]
    clip = media.video([(image, 2.0) for image in signs], container="matroska")
    # GIVEN a streamable clip cut at two thirds WHEN read THEN it is truncated, not shorter
    with pytest.raises(AssetError, match="truncated video: frames end at"):
        list(open_parts("video", clip[: len(clip) * 2 // 3], "cut.mkv"))
    # GIVEN an mp4 cut before its index WHEN read THEN it fails on one line
    mp4 = media.video([(frame, 3.0)])
    with pytest.raises(AssetError):
        list(open_parts("video", mp4[: len(mp4) - 200], "cut.mp4"))
    # GIVEN a 6 s clip and a 5 s cap WHEN opened THEN it is refused before decoding
    with pytest.raises(AssetError, match="video too long: 6 s is over the 5 s cap"):
        open_parts("video", clip, "long.mkv", limits=PartLimits(max_video_seconds=5))


def test_frames_are_sampled_every_n_seconds_and_at_scene_changes() -> None:
    # GIVEN 5 s of one image then 1 s of another, sampled every 2 s
    a, b = media.sign(["出口"], 8, (320, 180)), media.sign(["入口"], 9, (320, 180))
    clip = media.video([(a, 5.0), (b, 1.0)], fps=10, container="webm", codec="libvpx-vp9")
    # WHEN opened with frames every 2 s
    times = [
        p.time for p in open_parts("video", clip, "x.webm", limits=PartLimits(frame_every=2.0))
    ]
    # THEN frames at 0, 2, 4 and at the cut (5.0)
    assert times == pytest.approx([0.0, 2.0, 4.0, 5.0], abs=0.05)
