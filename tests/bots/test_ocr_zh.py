"""ocr-zh on real PP-OCR models: accuracy on rendered Chinese lines and the shape of its tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from spotbot.bots.ocr_zh import OcrZhBot, reading_order
from spotbot.bots.synth import LineStyle, character_error_rate, cjk_fonts, render_line
from spotbot.core.artifacts import ModelRef

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ocr() -> OcrZhBot:
    bot = OcrZhBot()
    bot.load(ModelRef(bot.name, bot.builtin_version or "", None, bot.builtin_origin), threads=2)
    return bot


def test_character_error_rate_on_rendered_lines_is_under_two_percent(
    ocr: OcrZhBot, cjk_lines
) -> None:
    # GIVEN 48 lines of varied fonts, sizes, backgrounds, noise and slight rotation
    assert len(cjk_lines) >= 40
    errors = chars = 0
    for text, image in cjk_lines:
        # WHEN each is read
        got = ocr.predict([ocr.decode(_png(image), "line.png")])[0]["text"]
        errors += character_error_rate(text, got) * len(text)
        chars += len(text)
    # THEN the character error rate is at most 2 %
    assert errors / chars <= 0.02, f"CER {errors / chars:.2%}"


def test_tags_are_lines_with_scores_and_boxes_and_text_in_reading_order(ocr: OcrZhBot) -> None:
    truth = json.loads((REPO / "examples" / "signs" / "truth.json").read_text("utf-8"))
    data = (REPO / "examples" / "signs" / "sign-02.jpg").read_bytes()
    result = ocr.predict([ocr.decode(data, "sign-02.jpg")])[0]
    assert result["text"].split("\n") == truth["sign-02.jpg"]
    scores = [t["score"] for t in result["tags"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(len(t["box"]) == 4 and all(len(p) == 2 for p in t["box"]) for t in result["tags"])
    assert {t["label"] for t in result["tags"]} == set(truth["sign-02.jpg"])


def test_an_image_without_text_gives_no_tags(ocr: OcrZhBot) -> None:
    blank = Image.new("RGB", (640, 480), (200, 210, 220))
    assert ocr.predict([blank]) == [{"tags": [], "text": ""}]


def test_a_short_mixed_line_is_not_flipped_by_the_orientation_classifier(ocr: OcrZhBot) -> None:
    style = LineStyle(cjk_fonts()[0], 40, (30, 120, 60), (250, 250, 250), 0.0, 4.0, 0.0)
    image = render_line("出口EXIT", style, seed=3)
    assert "".join(ocr.predict([image])[0]["text"].split()) == "出口EXIT"


def test_reading_order_is_rows_then_left_to_right() -> None:
    def line(label: str, x: float, y: float) -> dict:
        return {
            "label": label,
            "score": 1.0,
            "box": [[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]],
        }

    lines = [line("c", 10, 100), line("b", 200, 12), line("a", 10, 10)]
    assert [x["label"] for x in reading_order(lines)] == ["a", "b", "c"]


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
