"""The installed package stands on its own: every module imports outside the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import importlib, pkgutil, spotbot
failed = []
for info in pkgutil.walk_packages(spotbot.__path__, "spotbot."):
    if info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
try:
    import workflows  # the repository's folder must not be on the path here
    failed.append("the repository is on the path: the check would prove nothing")
except ModuleNotFoundError:
    pass
print("\\n".join(failed))
"""


def test_every_module_imports_from_a_folder_outside_the_repository(tmp_path: Path) -> None:
    # GIVEN an isolated interpreter (no PYTHONPATH, no user site) in an unrelated folder
    result = subprocess.run(
        [sys.executable, "-I", "-c", SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # THEN every module of the package imports: nothing reaches into the repository's folders
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", result.stdout
