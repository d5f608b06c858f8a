"""The SageMaker container contract's folders under /opt/ml, shared by serving and training.

SPOTBOT_OPT_ML moves the base folder, so the same code runs in tests and on a laptop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

OPT_ML_ENV = "SPOTBOT_OPT_ML"
#: SageMaker shows the first 1,024 characters of output/failure as the job's FailureReason.
FAILURE_LIMIT = 1024


def opt_ml(env: Mapping[str, str] | None = None) -> Path:
    """The SageMaker base directory: /opt/ml, or SPOTBOT_OPT_ML."""
    env = os.environ if env is None else env
    return Path(env.get(OPT_ML_ENV) or "/opt/ml")


def failure_path(base: Path | None = None) -> Path:
    return (base or opt_ml()) / "output" / "failure"


def write_failure(reason: str, base: Path | None = None) -> Path:
    """Write why the job failed where SageMaker reads it (the first FAILURE_LIMIT characters)."""
    path = failure_path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reason[:FAILURE_LIMIT].rstrip("\n") + "\n", "utf-8")
    return path
