"""Writes the sample photos in examples/photos/ for the car-model demo, from scikit-image's data.

Run from the repository root: python examples/make_photos.py (needs scikit-image). No package
ships car photos; scikit-image ships one real vehicle photo (a motorcycle, from its stereo pair)
and several non-vehicles, which is what the built-in vehicle-type model needs to show both of
its outcomes. One copy of the motorcycle is stored sideways with an EXIF orientation tag, as
phones do, to show that decoding turns it upright. expected.json holds what the built-in model
should say first for each photo.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PIL import Image

OUT = Path(__file__).parent / "photos"
# output name -> (scikit-image data file, expected first tag)
PHOTOS = {
    "motorcycle.jpg": ("motorcycle_left.png", "motorcycle"),
    "coffee.jpg": ("coffee.png", "not-a-vehicle"),
    "astronaut.jpg": ("astronaut.png", "not-a-vehicle"),
    "cat.jpg": ("chelsea.png", "not-a-vehicle"),
}
EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # "rotate 90 degrees clockwise to display"

log = logging.getLogger("make_photos")


def skimage_file(name: str) -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent / name


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (source, label) in PHOTOS.items():
        with Image.open(skimage_file(source)) as image:
            image.convert("RGB").save(OUT / name, quality=90)
        expected[name] = label
    # Stored rotated 90 degrees counter-clockwise; the EXIF tag says how to show it upright.
    with Image.open(skimage_file("motorcycle_left.png")) as image:
        sideways = image.convert("RGB").transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = ROTATE_90_CW
        sideways.save(OUT / "motorcycle-exif-rotated.jpg", quality=90, exif=exif)
    expected["motorcycle-exif-rotated.jpg"] = "motorcycle"
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %d photos to %s", len(expected), OUT)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
