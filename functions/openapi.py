"""The committed OpenAPI document of the REST API, generated from the resolver in functions/api.py.

``python -m functions.openapi`` rewrites ``functions/openapi.json``; a test fails when it and
the resolver drift apart. The api module validates its environment at import, so rendering
fills the variables it requires with placeholders: the document does not depend on them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from spotbot.core import envnames

DOCUMENT = Path(__file__).resolve().parent / "openapi.json"
_PLACEHOLDERS = {
    envnames.OPENSEARCH_ENDPOINT: "https://search.invalid",
    envnames.ARTIFACTS_BUCKET: "artifacts",
    envnames.ALLOWED_BUCKETS: "artifacts",
    envnames.STATE_MACHINE_ARN: "arn:aws:states:us-east-1:000000000000:stateMachine:tagging",
    envnames.RETRY_STATE_MACHINE_ARN: "arn:aws:states:us-east-1:000000000000:stateMachine:retry",
}


def render() -> str:
    for name, value in _PLACEHOLDERS.items():
        os.environ.setdefault(name, value)
    from functions.api import rest_app

    schema = rest_app.get_openapi_json_schema(
        title="spotbot",
        version="1",
        description="Tag huge asset collections with ML bots: jobs, bots, models and search. "
        "Every method is IAM-authorised (SigV4). Errors are JSON {error, detail}.",
    )
    return json.dumps(json.loads(schema), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    DOCUMENT.write_text(render(), encoding="utf-8")
