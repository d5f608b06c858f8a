"""The built function package, a stand-in for what Lambda puts beside it, and an invoker.

Lambda's Python 3.11 runtime provides boto3; the public Powertools layer provides Powertools
and pydantic. Both are installed here, for the Lambda platform, into folders of their own
(cached under build/, like the package), so a test's interpreter sees those and the package,
and nothing of the development venv.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from infra.lambda_package import PLATFORMS, PYTHON_VERSION, LambdaPackage, build

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
INVOKER = Path(__file__).resolve().parent / "artifacts" / "invoke_lambda.py"
MARKER = "SPOTBOT-INVOKE-RESULT "


@dataclass(frozen=True)
class LambdaRuntime:
    layer: Path  # /opt/python of the Powertools layer
    runtime: Path  # the runtime's own boto3


def _install(target: Path, requirement: str) -> Path:
    if (target / ".complete").exists():
        return target
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "--platform",
            PLATFORMS["x86_64"],
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--only-binary=:all:",
            "--upgrade",
            requirement,
        ],
        check=True,
        timeout=600,
    )
    (target / ".complete").write_text(requirement)
    return target


def lambda_package() -> LambdaPackage:
    """The package `pulumi up` would upload, built (or reused) under build/."""
    return build(BUILD)


def lambda_runtime() -> LambdaRuntime:
    """Lambda's boto3 and the Powertools layer, for the Lambda platform (cached under build/)."""
    layer_req = (
        f"aws-lambda-powertools[tracer,parser,validation]=={version('aws-lambda-powertools')}"
    )
    runtime_req = f"boto3=={version('boto3')}"
    key = hashlib.sha256(f"{layer_req} {runtime_req}".encode()).hexdigest()[:12]
    root = BUILD / "lambda-runtime" / key
    return LambdaRuntime(
        layer=_install(root / "layer", layer_req), runtime=_install(root / "runtime", runtime_req)
    )


def invoke(
    package: LambdaPackage,
    runtime: LambdaRuntime,
    env: dict[str, str],
    calls: list[tuple[str, dict[str, Any]]],
    extra_paths: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Run handlers in a fresh interpreter that sees only the package, the layer and boto3
    (and `extra_paths`: e.g. a third-party bot's distribution, as a layer would add it)."""
    request = {"env": env, "calls": [{"handler": h, "event": e} for h, e in calls]}
    result = subprocess.run(
        [
            sys.executable,
            "-I",  # no PYTHONPATH, no user site
            "-S",  # no site-packages: not the development venv's
            str(INVOKER),
            str(package.folder),
            *(str(path) for path in extra_paths),
            str(runtime.layer),
            str(runtime.runtime),
        ],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(BUILD), **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(lines[-1][len(MARKER) :])  # type: ignore[no-any-return]


class HandlerError(Exception):
    """A packaged handler's unhandled error; `error_type` is its class name."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def packaged_handler(
    name: str, env: dict[str, str], extra_paths: tuple[Path, ...] = ()
) -> Callable[[dict[str, Any]], Any]:
    """A handler that runs `functions.<name>` from the built package in its own interpreter
    (a cold start per call); an unhandled error is raised as an exception of the same name."""
    package, runtime = lambda_package(), lambda_runtime()

    def handler(event: dict[str, Any]) -> Any:
        (result,) = invoke(package, runtime, env, [(name, event)], extra_paths)["results"]
        if isinstance(result, dict) and set(result) == {"exception"}:
            error_type, _, message = result["exception"].partition(": ")
            raise type(error_type, (HandlerError,), {})(error_type, message)
        return result

    return handler
