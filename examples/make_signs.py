"""Renders the sample sign photos in examples/signs/ (Chinese text on textured backgrounds).

Run from the repository root: python examples/make_signs.py. Needs a CJK font
(Debian: apt-get install fonts-wqy-microhei). The output is committed, so the demo runs
without the font; the script is here so anyone can see and remake what the samples are.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from spotbot.bots.synth import PHRASES, cjk_fonts, render_sign

OUT = Path(__file__).parent / "signs"
SIZES = [
    (1280, 720),
    (1280, 720),
    (960, 640),
    (800, 600),
    (1280, 720),
    (640, 360),
    (1024, 768),
    (720, 480),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    fonts = cjk_fonts()
    rng = random.Random(2026)
    truth = {}
    for i, size in enumerate(SIZES):
        lines = rng.sample(PHRASES, k=rng.randint(1, 3))
        image, placed = render_sign(lines, fonts, seed=100 + i, size=size)
        name = f"sign-{i + 1:02d}.jpg"
        image.save(OUT / name, quality=88)
        truth[name] = placed
    (OUT / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
