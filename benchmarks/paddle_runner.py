"""PaddleOCR's own pipeline over a set of images; run by benchmarks/bench_ocr.py in .venv-paddle.

    .venv-paddle/bin/python benchmarks/paddle_runner.py --set SET.json --det DIR --rec DIR \
        [--threads N] [--det-side 960] [--repeats 2]

SET.json: {"images": [path, ...]} (repeated paths are decoded once and share one array).
DIR: a local Paddle-format PP-OCR model folder (inference.pdmodel + inference.pdiparams +
inference.yml); nothing is downloaded. Prints one JSON line on stdout: the texts read (one
string per image, lines joined by newlines), the load time and every timed pass, and this
process's peak RSS. This file imports nothing from spotbot: it runs in its own venv.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

# Offline, and no model-source check that would reach for the network at import.
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", required=True)
    parser.add_argument("--det", required=True)
    parser.add_argument("--rec", required=True)
    parser.add_argument("--det-name", default="PP-OCRv4_mobile_det")
    parser.add_argument("--rec-name", default="PP-OCRv4_mobile_rec")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--det-side", type=int, default=960)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import cv2
    import numpy as np

    with open(args.set, encoding="utf-8") as handle:
        paths = json.load(handle)["images"]
    decoded: dict[str, np.ndarray] = {}
    for path in paths:
        if path not in decoded:
            decoded[path] = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, as PaddleOCR expects
    images = [decoded[p] for p in paths]

    from paddleocr import PaddleOCR

    started = time.perf_counter()
    # The same settings as ocr-zh where both have them: no document/line orientation models,
    # the detector's longer side limited to det_side, recognised lines below 0.5 dropped.
    # mkldnn (oneDNN) off: with it on, these PP-OCRv4 models fail under Paddle 3 on this CPU.
    ocr = PaddleOCR(
        text_detection_model_name=args.det_name,
        text_detection_model_dir=args.det,
        text_recognition_model_name=args.rec_name,
        text_recognition_model_dir=args.rec,
        use_doc_orientation_classify=False,
        use_doc_unwarping=False,
        use_textline_orientation=False,
        text_det_limit_type="max",
        text_det_limit_side_len=args.det_side,
        text_rec_score_thresh=0.5,
        device="cpu",
        enable_mkldnn=False,
        cpu_threads=args.threads,
    )
    ocr.predict(images[0])  # warm-up, not timed
    load_s = time.perf_counter() - started

    def read_all() -> list[str]:
        texts = []
        for result in ocr.predict(images):
            texts.append("\n".join(str(t) for t in result["rec_texts"] if str(t).strip()))
        return texts

    passes, texts = [], []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        texts = read_all()
        passes.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from importlib.metadata import version

    print(
        json.dumps(
            {
                "engine": "paddleocr",
                "versions": {p: version(p) for p in ("paddleocr", "paddlepaddle", "paddlex")},
                "threads": args.threads,
                "det_side": args.det_side,
                "load_s": load_s,
                "passes_s": passes,
                "texts": texts,
                "peak_rss_mb_self": peak_kb / 1024,
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
