"""Frames sampled from a video (PyAV): one every N seconds, and one at each scene change.

Decoding is sequential and streamed: one decoded frame and a 32x32 greyscale copy of the last
frame taken are held at a time, so memory does not grow with the video's length.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np

from spotbot.core.errors import AssetError, one_line
from spotbot.core.parts import VIDEO, Part, PartLimits, PartStream, fit

SCENE_SIDE = 32


def open_video(data: bytes, key: str, side: int, limits: PartLimits) -> PartStream:
    """Open a video (checked now: container, stream, codec, duration cap); frames come lazily."""
    try:
        import av
    except ImportError as exc:
        raise AssetError("videos need the media extra: pip install 'spotbot[media]'") from exc
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AssetError(f"unreadable video: {_reason(exc)}") from None
    try:
        if not container.streams.video:
            raise AssetError("not a video: the file has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context else None
        if not codec:
            raise AssetError("unreadable video: no decoder for its codec")
        duration = _duration(container, stream)
        if duration is not None and duration > limits.max_video_seconds:
            raise AssetError(
                f"video too long: {duration:.0f} s is over the {limits.max_video_seconds:.0f} s cap"
            )
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        stream.thread_type = "AUTO"
    except AssetError:
        container.close()
        raise
    except (av.FFmpegError, ValueError) as exc:
        container.close()
        raise AssetError(f"unreadable video: {_reason(exc)}") from None

    def frames() -> Iterator[Part]:
        taken, last_time = 0, None
        next_due, last_taken = 0.0, -math.inf
        last_small: np.ndarray | None = None
        try:
            for frame in container.decode(stream):
                when = frame.time
                if when is None:
                    continue
                if when > limits.max_video_seconds:
                    raise AssetError(
                        f"video too long: frames run past the {limits.max_video_seconds:.0f} s cap"
                    )
                last_time = when
                small = frame.to_ndarray(format="gray", width=SCENE_SIDE, height=SCENE_SIDE)
                due = when + 1e-6 >= next_due
                if not due and last_small is not None and when - last_taken >= limits.min_scene_gap:
                    change = float(np.abs(small.astype(np.int16) - last_small).mean()) / 255.0
                    due = change > limits.scene_threshold
                if not due:
                    continue
                if frame.width * frame.height > limits.max_pixels:
                    raise AssetError(f"video frames too large: {frame.width}x{frame.height}")
                scale = min(1.0, fit(frame.width, frame.height, side))
                image = frame.to_image(
                    width=max(2, round(frame.width * scale)),
                    height=max(2, round(frame.height * scale)),
                )
                yield Part(taken, image=image, time=float(when))
                taken += 1
                last_taken, last_small = when, small
                next_due = (math.floor(when / limits.frame_every + 1e-9) + 1) * limits.frame_every
        except av.FFmpegError as exc:
            raise AssetError(f"corrupt video: {_reason(exc)}") from None
        finally:
            container.close()
        if taken == 0:
            raise AssetError(f"corrupt video: no {codec} frame could be decoded")
        # A truncated file often decodes "cleanly" up to the cut: its frames stop early.
        if duration is not None and last_time is not None:
            missing = duration - (last_time + 1.0 / rate)
            if missing > max(0.5, 2.0 / rate):
                raise AssetError(
                    f"truncated video: frames end at {last_time:.1f} s of its {duration:.1f} s"
                )

    info = {"duration": round(duration, 3) if duration is not None else None, "codec": codec}
    return PartStream(VIDEO, key, frames(), info=info)


def _duration(container: object, stream: object) -> float | None:
    import av

    duration, base = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if duration and base:
        return float(duration * base)
    whole = getattr(container, "duration", None)
    return float(whole) / av.time_base if whole else None


def _reason(exc: BaseException) -> str:
    text = one_line(exc)
    return text.split(": '<", 1)[0] if text else type(exc).__name__
