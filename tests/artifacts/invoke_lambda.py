"""Run handlers from the built function package as Lambda's Python runtime would.

Started as `python -I -S invoke_lambda.py TASK_ROOT LAYER RUNTIME` (no site-packages, no
PYTHONPATH): the path is exactly /var/task (the package), /opt/python (the layers) and the
runtime's own boto3. Reads {"env": {...}, "calls": [{"handler", "event"}]} on stdin; prints
{"imports_ms": {handler: ms}, "results": [...]} on stdout. A handler's exception is a result
{"exception": "Type: message"}, as Lambda reports an unhandled error.
"""

import json
import os
import sys
import time

sys.path[:0] = sys.argv[1:]
MARKER = "SPOTBOT-INVOKE-RESULT "


class Context:
    function_name = "spotbot-package-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:spotbot-package-test"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    log_group_name = "/aws/lambda/spotbot-package-test"
    log_stream_name = "2026/01/01/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self):
        return 900_000


def main():
    request = json.load(sys.stdin)
    os.environ.update(request["env"])
    handlers, imports_ms, results = {}, {}, []
    for call in request["calls"]:
        name = call["handler"]
        if name not in handlers:
            began = time.perf_counter()
            module = __import__(f"functions.{name}", fromlist=["lambda_handler"])
            imports_ms[name] = round((time.perf_counter() - began) * 1000, 1)
            handlers[name] = module.lambda_handler
        try:
            results.append(handlers[name](call["event"], Context()))
        except Exception as exc:
            results.append({"exception": f"{type(exc).__name__}: {exc}"})
    # Handlers log JSON lines to stdout too: the answer is the line with this marker.
    sys.stdout.write(MARKER + json.dumps({"imports_ms": imports_ms, "results": results}) + "\n")


if __name__ == "__main__":
    main()
