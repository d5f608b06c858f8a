"""A job's report: OUT/<job_id>/report.html, one self-contained page (inline CSS and JS, images
as data URIs) that shows what a job found at a glance.

It holds the summary and counts, a histogram of labels, thumbnails with OCR boxes and labels
drawn, the failures with their errors and the throughput over time. Results are read once, as a
stream: counts are exact, and what is shown asset by asset (thumbnails, failures, the result
table) is a reproducible sample, paginated in the page and cut to a byte budget, so a job of
millions of assets still makes a page under 10 MB.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from spotbot.core.bot import first_part
from spotbot.core.errors import AssetError
from spotbot.core.parts import PDF, TIFF, VIDEO, container_extensions, container_of, key_suffix
from spotbot.core.records import Job, Result, TaskStatus
from spotbot.core.sinks import ResultSink
from spotbot.core.sources import Source
from spotbot.core.store import TaskStore

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
MAX_REPORT_BYTES = 10 * 1024 * 1024
THUMBNAILS = 120  # sampled assets drawn as thumbnails
THUMB_SIDE = 320  # longest side of a thumbnail, in pixels
ORIENTATION = 0x0112  # the EXIF tag
TAGGED_WIDTH = "spotbot.tagged_width"  # Image.info key: the width the bot's boxes refer to
THUMB_BUDGET = 6 * 1024 * 1024  # bytes of data URIs, at most
FAILURES = 1000  # failures listed (all are counted)
ROWS = 5000  # results listed in the table (all are counted)
PAGE_ROWS = 50
PAGE_THUMBS = 24
HISTOGRAM_BARS = 30
THROUGHPUT_BINS = 60
DEFAULT_REPORT_ASSET_BYTES = 50 * 1024 * 1024
IMAGE_SUFFIXES = frozenset({"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "gif"})

#: Reads an asset's bytes for its thumbnail (None: the report has no thumbnails).
AssetReader = Callable[[str], bytes]
#: Turns an asset's bytes and key into a preview image and where it is in the asset
#: ({"page": 1}, {"time": 0.0}, or {} for a plain image): the tags drawn on it are that part's.
Previewer = Callable[[bytes, str], "tuple[Image.Image, dict[str, Any]] | None"]


class _Reservoir:
    """A uniform sample of at most `size` items from a stream of unknown length."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.seen, self.items = size, rng, 0, list[Any]()

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item


@dataclass
class ReportData:
    """What one pass over a job's results keeps: exact counts, samples, timestamps."""

    statuses: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    finished: Counter[float] = field(default_factory=Counter)  # epoch seconds -> results
    thumbs: list[Result] = field(default_factory=list)
    failures: list[Result] = field(default_factory=list)
    rows: list[Result] = field(default_factory=list)
    failures_seen: int = 0
    rows_seen: int = 0


class ReportCollector:
    """Takes a job's results one at a time (as Results, or as the stored records that
    results.jsonl holds) and keeps what the report shows.

    Memory stays flat however many results pass: counters, one entry per distinct finishing
    time (a worker records a batch at once), and fixed-size samples; a sampled record becomes
    a Result only at the end.
    """

    def __init__(self, job_id: str, thumb_ok: Callable[[str], bool]):
        self.job_id = job_id
        rng = random.Random(job_id)
        self._thumbs = _Reservoir(THUMBNAILS, rng)
        self._fails = _Reservoir(FAILURES, rng)
        self._rows = _Reservoir(ROWS, rng)
        self._thumb_ok = thumb_ok
        self._stamps: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()

    def add(self, result: Result) -> None:
        self._add(result.key, str(result.status), result.tags, result.finished_at, result)

    def add_record(self, record: dict[str, Any], finished_at: str | None) -> None:
        """A stored record (a parsed line of results.jsonl) and when the store recorded it."""
        tags = record.get("tags") or []
        self._add(record["key"], record["status"], tags, finished_at, (record, finished_at))

    def _add(
        self, key: str, status: str, tags: list[Any], finished_at: str | None, item: Any
    ) -> None:
        self.statuses[status] += 1
        self._rows.offer(item)
        if finished_at:
            self._stamps[finished_at] += 1
        if status == TaskStatus.FAILED:
            self._fails.offer(item)
        elif status == TaskStatus.DONE:
            self.labels.update({str(t.get("label", "")) for t in tags if t.get("label")})
            if self._thumb_ok(key):
                self._thumbs.offer(item)

    def _result(self, item: Result | tuple[dict[str, Any], str | None]) -> Result:
        if isinstance(item, Result):
            return item
        record, finished_at = item
        result = Result.from_record(self.job_id, record)
        result.finished_at = finished_at
        return result

    def data(self) -> ReportData:
        data = ReportData(statuses=self.statuses, labels=self.labels)
        for stamp, n in self._stamps.items():
            epoch = _epoch(stamp)
            if epoch is not None:
                data.finished[epoch] += n
        key = lambda r: r.key  # noqa: E731
        data.thumbs, data.failures, data.rows = (
            sorted(map(self._result, reservoir.items), key=key)
            for reservoir in (self._thumbs, self._fails, self._rows)
        )
        data.failures_seen, data.rows_seen = self._fails.seen, self._rows.seen
        return data


def collect(results: Iterable[Result], seed: str, thumb_ok: Callable[[str], bool]) -> ReportData:
    collector = ReportCollector(seed, thumb_ok)
    for result in results:
        collector.add(result)
    return collector.data()


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


ALL_CONTAINERS = frozenset({PDF, TIFF, VIDEO})
_PREVIEWABLE = IMAGE_SUFFIXES | container_extensions(ALL_CONTAINERS)


def is_previewable(key: str) -> bool:
    """An image, or a document or video whose first page or frame can stand for it."""
    return key_suffix(key) in _PREVIEWABLE


def default_preview(data: bytes, key: str) -> tuple[Image.Image, dict[str, Any]] | None:
    """An image as itself (upright, as the bots saw it); a document's first page, a video's
    first sampled frame."""
    container = container_of(key, ALL_CONTAINERS)
    if container is not None:
        part = first_part(container, data, key, side=2 * THUMB_SIDE)
        return (part.image, part.where) if part is not None and part.image else None
    if key_suffix(key) not in IMAGE_SUFFIXES:
        return None
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        width, height = image.size
        turned = image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
        # A JPEG decodes at 1/2..1/8 scale for a fraction of the time: the thumbnail is small.
        fit = min(1.0, 2 * THUMB_SIDE / max(width, height, 1))
        image.draft("RGB", (max(1, int(width * fit)), max(1, int(height * fit))))
        upright = (ImageOps.exif_transpose(image) or image).convert("RGB")
        # The bot's boxes are in the full upright image's pixels.
        upright.info[TAGGED_WIDTH] = height if turned else width
        return upright, {}


def _thumbnail(
    result: Result, read: AssetReader, preview: Previewer
) -> tuple[str, int, int, float, dict[str, Any]] | None:
    """(data URI, width, height, scale from the tags' pixels to the thumbnail's, where) or None."""
    try:
        shown = preview(read(result.key), result.key)
    except (AssetError, OSError, UnidentifiedImageError, ValueError, EOFError) as exc:
        log.info("no thumbnail for %s: %s", result.key, exc)
        return None
    if shown is None:
        return None
    image, where = shown
    scale = min(1.0, THUMB_SIDE / max(image.width, image.height, 1))
    small = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        Image.Resampling.LANCZOS,
    )
    out = io.BytesIO()
    small.save(out, "JPEG", quality=72, optimize=True)
    uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
    # Boxes of a page or frame are in the pixels the bot saw it in (its part_side), which the
    # result records; a plain image's are in the image's own.
    tagged_width = _tagged_width(result, where) or image.info.get(TAGGED_WIDTH) or image.width
    return uri, small.width, small.height, small.width / max(tagged_width, 1), where


def _tagged_width(result: Result, where: dict[str, Any]) -> float | None:
    if "page" in where:
        for page in result.extra.get("pages") or []:
            if isinstance(page, dict) and page.get("page") == where["page"] and page.get("width"):
                return float(page["width"])
    if "time" in where:
        size = result.extra.get("frame_size")
        if isinstance(size, list) and size:
            return float(size[0])
    return None


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _top_labels(result: Result, n: int = 3) -> str:
    return ", ".join(
        f"{t.get('label', '')} ({float(t.get('score', 0)):.2f})" for t in result.tags[:n]
    )


def _boxes_svg(result: Result, width: int, height: int, scale: float, where: dict[str, Any]) -> str:
    shapes = []
    for tag in result.tags:
        box = tag.get("box")
        if not isinstance(box, list) or len(box) != 4:
            continue
        if any(k in tag and abs(float(tag[k]) - float(v)) > 1e-3 for k, v in where.items()):
            continue  # another page's or frame's line
        try:
            points = [(float(x) * scale, float(y) * scale) for x, y in box]
        except (TypeError, ValueError):
            continue
        shapes.append(
            f'<polygon points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>'
            f'<text x="{points[0][0]:.1f}" y="{max(points[0][1] - 2, 9):.1f}">'
            f"{_esc(tag.get('label', ''))}</text>"
        )
    if not shapes:
        return ""
    return (
        f'<svg class="boxes" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        + "".join(shapes)
        + "</svg>"
    )


def _histogram_svg(labels: Counter[str]) -> str:
    top = labels.most_common(HISTOGRAM_BARS)
    if not top:
        return '<p class="muted">No labels.</p>'
    peak, bar_h, label_w, bar_w = top[0][1], 18, 220, 420
    rows = []
    for i, (label, count) in enumerate(top):
        y, w = i * bar_h, max(1.0, bar_w * count / peak)
        short = label if len(label) <= 28 else label[:27] + "…"
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_esc(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{count}</text>'
        )
    total_h = bar_h * len(top)
    more = len(labels) - len(top)
    note = f'<p class="muted">and {more} more labels</p>' if more > 0 else ""
    return (
        f'<svg class="hist" viewBox="0 0 {label_w + bar_w + 60} {total_h}" '
        f'width="{label_w + bar_w + 60}" height="{total_h}">{"".join(rows)}</svg>{note}'
    )


def _throughput_svg(finished: Counter[float]) -> str:
    """Assets finished over time, cumulative (workers record a batch at a time, so a rate per
    instant is all spikes; the slope of this line is the throughput)."""
    total = sum(finished.values())
    if total < 2:
        return '<p class="muted">Not enough timed results to chart.</p>'
    start, end = min(finished), max(finished)
    span = max(end - start, 1.0)
    bins = [0] * THROUGHPUT_BINS
    for stamp, n in finished.items():
        bins[min(THROUGHPUT_BINS - 1, int((stamp - start) / span * THROUGHPUT_BINS))] += n
    w, h = 600, 160
    points, done = [f"0,{h}"], 0
    for i, n in enumerate(bins):
        done += n
        points.append(f"{(i + 1) * w / THROUGHPUT_BINS:.1f},{h - h * done / total:.1f}")
    began = datetime.fromtimestamp(start).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        f'<svg class="tput" viewBox="-40 -8 {w + 48} {h + 28}" width="{w + 48}" height="{h + 28}">'
        f'<polygon points="{" ".join(points)} {w},{h}"/>'
        f'<text x="-4" y="4" text-anchor="end">{total}</text>'
        f'<text x="-4" y="{h}" text-anchor="end">0</text>'
        f'<text x="0" y="{h + 16}">0 s</text>'
        f'<text x="{w}" y="{h + 16}" text-anchor="end">{span:.0f} s</text></svg>'
        f'<p class="muted">{total} results finished from {_esc(began)} over {span:.1f} s:'
        f" mean {total / span:.2f} assets/s</p>"
    )


def _paged(section: str, items: list[str], per_page: int) -> str:
    pages = max(1, -(-len(items) // per_page))
    body = "".join(
        item if i // per_page == 0 else item.replace(" data-page=", " hidden data-page=", 1)
        for i, item in enumerate(items)
    )
    nav = (
        f'<nav class="pager" data-section="{section}" data-pages="{pages}">'
        '<button data-step="-1">‹ prev</button> <span class="pos">1 / '
        f'{pages}</span> <button data-step="1">next ›</button></nav>'
        if pages > 1
        else ""
    )
    return nav + body


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.muted{color:#777}.counts span{display:inline-block;margin-right:18px}
.counts b{font-size:20px;display:block}.FAILED{color:#b00020}.DONE{color:#116611}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:3px 6px;
text-align:left;vertical-align:top;font-size:13px}
.hist rect{fill:#4a78c2}.hist text{font-size:12px}
.tput polygon{fill:#3b9a6b;opacity:.8}.tput text{font-size:11px}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:330px;font-size:12px}
.thumb{position:relative;display:inline-block}.thumb img{display:block}
.boxes{position:absolute;left:0;top:0}.boxes polygon{fill:rgba(255,200,0,.15);stroke:#e53;
stroke-width:1.5}.boxes text{font-size:10px;fill:#e53;paint-order:stroke;stroke:#fff;
stroke-width:2px}.pager{margin:8px 0}[hidden]{display:none!important}
"""

JS = """
document.querySelectorAll('.pager').forEach(function (nav) {
  var section = nav.dataset.section, pages = +nav.dataset.pages, page = 0;
  nav.addEventListener('click', function (ev) {
    var step = +(ev.target.dataset.step || 0);
    if (!step) return;
    page = Math.min(pages - 1, Math.max(0, page + step));
    document.querySelectorAll('[data-section="' + section + '"][data-page]').forEach(
      function (el) { el.hidden = +el.dataset.page !== page; });
    nav.querySelector('.pos').textContent = (page + 1) + ' / ' + pages;
  });
});
"""


def render_report(
    job: Job,
    summary: dict[str, Any],
    results: Iterable[Result] | ReportData,
    read: AssetReader | None = None,
    preview: Previewer = default_preview,
    previewable: Callable[[str], bool] | None = None,
    max_bytes: int = MAX_REPORT_BYTES,
) -> bytes:
    """The report's HTML (UTF-8) for a job, from its summary and a stream of its results (or
    what a ReportCollector kept of them: thumbnails are then sampled where its thumb_ok said).

    `read` gives an asset's bytes for its thumbnail; `preview` turns them into an image (and
    the page whose boxes to draw), for the keys `previewable` says it can.
    """
    if previewable is None:
        previewable = is_previewable

    if isinstance(results, ReportData):
        data = results
    else:
        ok = previewable
        data = collect(results, seed=job.id, thumb_ok=lambda key: read is not None and ok(key))
    cards: list[str] = []
    used = 0
    if read is not None:
        for result in data.thumbs:
            if used >= THUMB_BUDGET:
                break
            thumb = _thumbnail(result, read, preview)
            if thumb is None:
                continue
            uri, w, h, scale, part = thumb
            used += len(uri)
            where = "".join(f" · {k} {v:g}" for k, v in part.items())
            cards.append(
                f'<div class="card" data-section="thumbs" data-page="{len(cards) // PAGE_THUMBS}">'
                f'<div class="thumb"><img src="{uri}" width="{w}" height="{h}"'
                f' alt="{_esc(result.key)}">'
                f"{_boxes_svg(result, w, h, scale, part)}</div>"
                f"<div><b>{_esc(result.key)}</b>{where}</div>"
                f"<div>{_esc(_top_labels(result))}</div></div>"
            )
    fail_rows = [
        f'<tr data-section="fails" data-page="{i // PAGE_ROWS}"><td>{_esc(r.key)}</td>'
        f"<td>{_esc(r.error or '')}</td></tr>"
        for i, r in enumerate(data.failures)
    ]
    result_rows = [
        f'<tr data-section="rows" data-page="{i // PAGE_ROWS}"><td>{_esc(r.key)}</td>'
        f'<td class="{_esc(r.status)}">{_esc(r.status)}</td><td>{_esc(_top_labels(r))}</td></tr>'
        for i, r in enumerate(data.rows)
    ]
    counts = summary.get("counts") or {}
    head = "".join(
        f'<span class="{k.upper()}"><b>{_esc(counts.get(k, 0))}</b>{k}</span>'
        for k in ("total", "done", "failed", "skipped")
    )
    meta = {
        "bot": job.bot,
        "model version": job.model_version,
        "source": job.source,
        "output": summary.get("output", job.output),
        "status": summary.get("status", job.status),
        "started": summary.get("started_at", job.started_at),
        "finished": summary.get("finished_at", job.finished_at),
        "assets per second": summary.get("assets_per_second"),
        "error": summary.get("error"),
    }
    meta_rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in meta.items() if v is not None
    )

    def sampled(shown: int, seen: int, what: str) -> str:
        return f'<p class="muted">A sample of {shown} of {seen} {what}.</p>' if seen > shown else ""

    def build(thumb_cards: list[str]) -> str:
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>spotbot job {_esc(job.id)}</title><style>{CSS}</style></head><body>"
            f'<h1>Job {_esc(job.id)}</h1><div class="counts">{head}</div>'
            f'<table class="meta">{meta_rows}</table>'
            f"<h2>Labels</h2>{_histogram_svg(data.labels)}"
            f"<h2>Throughput</h2>{_throughput_svg(data.finished)}"
            f"<h2>Thumbnails</h2>{sampled(len(thumb_cards), len(data.thumbs), 'tagged assets')}"
            + (
                f'<div class="grid">{_paged("thumbs", thumb_cards, PAGE_THUMBS)}</div>'
                if thumb_cards
                else '<p class="muted">No thumbnails.</p>'
            )
            + f"<h2>Failures ({data.failures_seen})</h2>"
            + sampled(len(fail_rows), data.failures_seen, "failures")
            + (
                "<table><tr><th>asset</th><th>error</th></tr>"
                f"{_paged('fails', fail_rows, PAGE_ROWS)}</table>"
                if fail_rows
                else '<p class="muted">None.</p>'
            )
            + f"<h2>Results ({data.rows_seen})</h2>"
            + sampled(len(result_rows), data.rows_seen, "results")
            + f"<table><tr><th>asset</th><th>status</th><th>top tags</th></tr>"
            f"{_paged('rows', result_rows, PAGE_ROWS)}</table>"
            f"<script>{JS}</script></body></html>"
        )

    text = build(cards)
    while len(text.encode()) > max_bytes and cards:
        cards = cards[
            : len(cards) // 2
        ]  # the budget is the rule: fewer thumbnails, never a cut page
        text = build(cards)
    return text.encode()


def write_report(
    store: TaskStore,
    sink: ResultSink,
    job: Job,
    summary: dict[str, Any],
    source: Source | None = None,
    max_asset_bytes: int | None = None,
    collected: ReportCollector | None = None,
) -> str:
    """Render the job's report into the output, from what `collected` took in on a pass over
    the results made anyway (finalize's, writing results.jsonl), else from the store;
    thumbnails are read from the source."""
    read: AssetReader | None = None
    if source is not None:
        cap = max_asset_bytes or job.opts.max_asset_bytes or DEFAULT_REPORT_ASSET_BYTES
        read = lambda key: source.read(key, cap)  # noqa: E731
    results: Iterable[Result] | ReportData = (
        collected.data() if collected is not None else store.iter_results(job.id)
    )
    page = render_report(job, summary, results, read=read)
    sink.put(job.id, REPORT_HTML, page, "text/html; charset=utf-8")
    return sink.location(job.id, REPORT_HTML)


def report_collector(job: Job, source: Source | None) -> ReportCollector:
    """A collector for `write_report(..., collected=)`: thumbnails where a source can be read."""
    return ReportCollector(job.id, thumb_ok=is_previewable if source is not None else _never)


def _never(key: str) -> bool:
    return False


def stored_summary(store: TaskStore, sink: ResultSink, job: Job) -> dict[str, Any]:
    """A finished job's summary as the report shows it, from the store (for `spotbot report`)."""
    counts = {str(k).lower(): v for k, v in store.count_tasks(job.id).items()}
    attempted = counts.get("done", 0) + counts.get("failed", 0)
    return {
        "output": sink.location(job.id),
        "status": str(job.status),
        "error": job.error,
        "counts": {
            "total": sum(counts.values()),
            **{k: counts.get(k, 0) for k in ("done", "failed", "skipped")},
        },
        "failed_pct": round(100.0 * counts.get("failed", 0) / attempted, 2) if attempted else 0.0,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
