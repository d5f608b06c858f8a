"""`python -m benchmarks` (make bench): every benchmark, each in its own process, then a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCHES = [
    ("pipeline", ["benchmarks.bench_pipeline"], "pipeline.json"),
    ("sharing", ["benchmarks.bench_sharing"], "sharing.json"),
    ("car-model", ["benchmarks.bench_car"], "car_model.json"),
    ("sentiment-zh", ["benchmarks.bench_sentiment"], "sentiment.json"),
    ("ocr-zh", ["benchmarks.bench_ocr"], "ocr.json"),
    ("documents and videos", ["benchmarks.bench_media"], "media.json"),
    ("calibration", ["benchmarks.bench_calibration", "--no-write"], "calibration.json"),
]


def main() -> int:
    failed = []
    for name, module, _ in BENCHES:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", *module, *sys.argv[1:]], check=False).returncode:
            failed.append(name)
    print("\n== summary (ratios against the baseline measured in the same run)")
    for name, _, result in BENCHES:
        path = RESULTS / result
        if path.exists():
            print(f"{name}: {json.dumps(json.loads(path.read_text()), ensure_ascii=False)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
