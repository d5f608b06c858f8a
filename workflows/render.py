"""Renders the committed ASL files from the builders for a fixed reference set of refs.

``python -m workflows.render`` rewrites ``tagging.asl.json`` and ``retry.asl.json`` beside
this module; ``python -m workflows.render --check`` exits 1 when they are out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workflows.tagging import TaggingRefs, build_definition, build_retry_definition

HERE = Path(__file__).resolve().parent
_ACCOUNT = "123456789012"
_REGION = "us-east-1"


def _function(name: str) -> str:
    return f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:spotbot-{name}"


REFERENCE_REFS = TaggingRefs(
    partition="aws",
    init_function_arn=_function("init"),
    scan_function_arn=_function("scan"),
    endpoint_function_arn=_function("endpoint"),
    finalize_function_arn=_function("finalize"),
    cleanup_function_arn=_function("cleanup"),
    requeue_function_arn=_function("requeue"),
    job_queue_arn=f"arn:aws:batch:{_REGION}:{_ACCOUNT}:job-queue/spotbot-spot",
    job_definition_arns={
        bot: f"arn:aws:batch:{_REGION}:{_ACCOUNT}:job-definition/spotbot-{bot}:1"
        for bot in ("car-model", "ocr-zh", "sentiment-zh")
    },
)

RENDERED = {
    "tagging.asl.json": build_definition,
    "retry.asl.json": build_retry_definition,
}


def to_json(definition: dict[str, Any]) -> str:
    """The committed form: sorted-free (builder order), two-space indent, trailing newline."""
    return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"


def render(refs: TaggingRefs = REFERENCE_REFS) -> dict[str, str]:
    """File name -> rendered text."""
    return {name: to_json(build(refs)) for name, build in RENDERED.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write(f"stale: {', '.join(stale)}; run python -m workflows.render\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
