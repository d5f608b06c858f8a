"""Documents read page by page: PDFs (pypdfium2: rendered pages and text layers) and multi-page
TIFF scans (Pillow), opened and checked at once, then rendered one page at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageSequence, UnidentifiedImageError

from spotbot.core.errors import AssetError
from spotbot.core.parts import PDF, TIFF, Part, PartLimits, PartStream, fit

# A long document is read through a fresh handle every this many pages: pdfium keeps the
# objects of every page it has loaded, so one handle's memory grows with the pages read.
REOPEN_EVERY = 20


def open_pdf(
    data: bytes, key: str, side: int, images: bool, texts: bool, limits: PartLimits
) -> PartStream:
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise AssetError("PDFs need the media extra: pip install 'spotbot[media]'") from exc
    if not data.startswith(b"%PDF-"):
        raise AssetError("not a PDF: the file does not start with %PDF-")
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise AssetError(_pdf_error(str(exc), data)) from None
    pages = len(document)
    if pages == 0:
        document.close()
        raise AssetError("corrupt PDF: it has no pages")
    if pages > limits.max_pages:
        document.close()
        raise AssetError(f"PDF too long: {pages} pages is over the {limits.max_pages}-page cap")

    def parts() -> Iterator[Part]:
        current = document
        try:
            for index in range(pages):
                if index and index % REOPEN_EVERY == 0:
                    current.close()  # pdfium keeps what it parsed of every page it loaded
                    current = pdfium.PdfDocument(data)
                page = current[index]
                try:
                    image = text = None
                    if images:
                        width, height = page.get_size()
                        scale = fit(width, height, side)
                        if width * height * scale * scale > limits.max_pixels:
                            raise AssetError(f"page {index + 1} is too large to render")
                        image = page.render(scale=scale).to_pil().convert("RGB")
                    if texts:
                        textpage = page.get_textpage()
                        text = textpage.get_text_bounded().replace("\r\n", "\n").strip()
                        textpage.close()
                    yield Part(index, image=image, text=text, page=index + 1)
                except pdfium.PdfiumError as exc:
                    raise AssetError(f"corrupt PDF: page {index + 1}: {exc}") from None
                finally:
                    page.close()
        finally:
            current.close()

    return PartStream(PDF, key, parts(), info={"page_count": pages})


def _pdf_error(message: str, data: bytes) -> str:
    if "password" in message.lower():
        return "encrypted PDF: it needs a password to open"
    if b"%%EOF" not in data[-2048:]:
        return "truncated PDF: the file ends before its end-of-file marker"
    reason = message.split("(PDFium:", 1)[-1].rstrip(").").strip() or message
    return f"corrupt PDF: {reason}"


# -- multi-page TIFF ---------------------------------------------------------------------------
def open_tiff(data: bytes, key: str, side: int, limits: PartLimits) -> PartStream:
    try:
        probe = Image.open(io.BytesIO(data))
        pages = getattr(probe, "n_frames", 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise AssetError(
            f"corrupt TIFF: {str(exc).splitlines()[0] or type(exc).__name__}"
        ) from None
    if probe.format != "TIFF":
        raise AssetError(f"not a TIFF: the file is {probe.format or 'unknown'}")
    if pages > limits.max_pages:
        raise AssetError(f"TIFF too long: {pages} pages is over the {limits.max_pages}-page cap")

    def parts() -> Iterator[Part]:
        with probe:
            for index, frame in enumerate(ImageSequence.Iterator(probe)):
                try:
                    if frame.width * frame.height > limits.max_pixels:
                        raise AssetError(f"page {index + 1} is too large: {frame.size}")
                    image = frame.convert("RGB")
                except (OSError, ValueError, SyntaxError) as exc:
                    raise AssetError(f"corrupt TIFF: page {index + 1}: {exc}") from None
                if max(image.size) > side:
                    scale = fit(*image.size, side)
                    image = image.resize(
                        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS,
                    )
                yield Part(index, image=image, page=index + 1)

    return PartStream(TIFF, key, parts(), info={"page_count": pages})
