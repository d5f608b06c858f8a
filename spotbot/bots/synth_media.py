"""Synthetic documents and videos for tests and benchmarks (nothing is downloaded): PDFs with
and without a text layer (reportlab, a dev dependency), encrypted ones, multi-page TIFFs, and
videos encoded with PyAV from generated frames of Chinese text."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from spotbot.bots.synth import cjk_fonts, render_sign

A4 = (595, 842)  # points


def sign(lines: Sequence[str], seed: int, size: tuple[int, int] = (960, 540)) -> Image.Image:
    image, placed = render_sign(list(lines), cjk_fonts(), seed, size)
    if placed != list(lines):
        raise ValueError(f"only {placed} of the lines fit a {size} sign")
    return image


def text_pdf(pages: Sequence[Sequence[str]], password: str | None = None) -> bytes:
    """A PDF whose pages hold these lines as real text (a text layer), in a CJK font."""
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    path, index = cjk_fonts()[0]
    if "cjk" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("cjk", str(path), subfontIndex=index))
    out = io.BytesIO()
    encrypt = StandardEncryption(password, password + "-owner") if password else None
    pdf = canvas.Canvas(out, pagesize=A4, encrypt=encrypt)
    for lines in pages:
        pdf.setFont("cjk", 24)
        for row, line in enumerate(lines):
            pdf.drawString(60, A4[1] - 100 - 60 * row, line)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def scanned_pdf(images: Sequence[Image.Image]) -> bytes:
    """A PDF of page images only (a scan): no text layer."""
    out = io.BytesIO()
    first, *rest = [image.convert("RGB") for image in images]
    first.save(out, "PDF", save_all=True, append_images=rest, resolution=100.0)
    return out.getvalue()


def multipage_tiff(images: Sequence[Image.Image]) -> bytes:
    out = io.BytesIO()
    first, *rest = images
    first.save(out, "TIFF", save_all=True, append_images=rest, compression="tiff_deflate")
    return out.getvalue()


def video(
    scenes: Sequence[tuple[Image.Image, float]],
    fps: int = 10,
    container: str = "mp4",
    codec: str = "libx264",
) -> bytes:
    """A clip showing each (image, seconds) in turn, encoded with PyAV."""
    import av

    out = io.BytesIO()
    width, height = scenes[0][0].size
    with av.open(out, mode="w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=fps)
        if not isinstance(stream, av.video.stream.VideoStream):
            raise ValueError(f"{codec} is not a video codec")
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        for image, seconds in scenes:
            frame = av.VideoFrame.from_image(
                image.convert("RGB").resize((stream.width, stream.height))
            )
            for _ in range(round(seconds * fps)):
                for packet in stream.encode(frame):
                    muxer.mux(packet)
        for packet in stream.encode():
            muxer.mux(packet)
    return out.getvalue()
