"""The Lambda function package: what `pulumi up` uploads for every handler, built here.

It holds the handlers (``functions/``), the installed ``spotbot`` distribution with its
metadata (so the ``spotbot.bots`` entry points resolve), and every package the handlers
import, resolved for the Lambda runtime (CPython 3.11 on manylinux wheels) by pip. What the
runtime provides (boto3 and its dependencies) and what the Powertools layer provides
(Powertools, pydantic) is left out, and so is what only the CLI uses.

The build is cached by a digest of everything that goes in: a second `pulumi up` or `make
artifacts` with unchanged sources reuses the zip. `python -m infra.lambda_package --out build`
(`make artifacts`) writes ``build/lambda.zip``. This module does not import Pulumi: the
program (infra/functions.py), the Makefile and the tests share it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "build"
PYTHON_VERSION = "3.11"
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
#: The spotbot extra the handlers need (opensearch-py, requests) beside the base dependencies.
EXTRA = "cloud"
#: Lambda's limit on a function's unzipped code and layers together.
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
#: Left out: the runtime's (boto3 and its dependencies) and the Powertools layer's.
PROVIDED = frozenset(
    {
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "aws-lambda-powertools",
        "aws-xray-sdk",
        "wrapt",
        "pydantic",
        "pydantic-core",
        "annotated-types",
        "typing-extensions",
        "typing-inspection",
    }
)
#: Left out: what the spotbot distribution requires for its CLI and local mode only.
CLI_ONLY = frozenset({"click", "rich", "markdown-it-py", "mdurl", "pygments", "platformdirs"})
#: Left out: opensearch-py 3 requires them for its gRPC transport; spotbot talks HTTPS + SigV4
#: (20 MB the handlers never import: the package's isolated-interpreter test shows it).
UNUSED_TRANSPORT = frozenset({"grpcio", "protobuf", "opensearch-protobufs"})
#: What the package copies from the repository, beside the installed distribution.
HANDLER_FILES = ("*.py", "openapi.json")
#: Fixed timestamps make the zip (and so the function's code hash) depend on contents only.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class PackageTooLargeError(ValueError):
    """The function package would not fit Lambda's unzipped limit."""


@dataclass(frozen=True)
class LambdaPackage:
    zip_path: Path
    folder: Path  # the unzipped contents, as Lambda lays them out in /var/task
    digest: str
    unzipped_bytes: int
    zipped_bytes: int
    reused: bool

    def report(self) -> str:
        share = self.unzipped_bytes / UNZIPPED_LIMIT_BYTES
        return (
            f"{self.zip_path}: {self.zipped_bytes / 1e6:.1f} MB zipped,"
            f" {self.unzipped_bytes / 1e6:.1f} MB unzipped ({share:.0%} of Lambda's 250 MB)"
            + (" [cached]" if self.reused else "")
        )


def _sources() -> list[Path]:
    files = [REPO_ROOT / "pyproject.toml", REPO_ROOT / "README.md", Path(__file__)]
    files += sorted(p for p in (REPO_ROOT / "spotbot").rglob("*") if _is_source(p))
    for pattern in HANDLER_FILES:
        files += sorted((REPO_ROOT / "functions").glob(pattern))
    return files


def _is_source(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"


def source_digest(architecture: str = "x86_64") -> str:
    """A digest of everything that goes into the package, and of how it is resolved."""
    digest = hashlib.sha256(f"{architecture} {PYTHON_VERSION} {EXTRA}".encode())
    for path in _sources():
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(out: Path = DEFAULT_OUT, architecture: str = "x86_64") -> LambdaPackage:
    """Build (or reuse) the package for `architecture`; `out`/lambda.zip is the newest one."""
    if architecture not in PLATFORMS:
        raise ValueError(f"architecture must be one of {', '.join(PLATFORMS)}")
    digest = source_digest(architecture)
    folder = out / "lambda" / f"{architecture}-{digest}"
    cached = out / "lambda" / f"{architecture}-{digest}.zip"
    reused = cached.is_file() and folder.is_dir()
    if not reused:
        _build_folder(folder, architecture)
        check_size(folder_bytes(folder))
        _zip(folder, cached)
    latest = out / "lambda.zip"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, latest)
    return LambdaPackage(
        zip_path=latest,
        folder=folder,
        digest=digest,
        unzipped_bytes=folder_bytes(folder),
        zipped_bytes=latest.stat().st_size,
        reused=reused,
    )


def check_size(unzipped_bytes: int) -> None:
    if unzipped_bytes > UNZIPPED_LIMIT_BYTES:
        raise PackageTooLargeError(
            f"the function package is {unzipped_bytes / 1e6:.0f} MB unzipped, over Lambda's"
            " 250 MB: a handler imports a heavy package (torch, a model?); keep the"
            " handlers' imports to spotbot's core, aws and cloud layers"
        )


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _build_folder(folder: Path, architecture: str) -> None:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="spotbot-wheel-") as tmp:
        wheel = _spotbot_wheel(Path(tmp))
        _pip(
            "install",
            "--quiet",
            "--target",
            str(staging),
            "--platform",
            PLATFORMS[architecture],
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--only-binary=:all:",
            f"{wheel}[{EXTRA}]",
        )
    _drop_distributions(staging, PROVIDED | CLI_ONLY | UNUSED_TRANSPORT)
    shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: not run in Lambda
    # Model weights that ship in the package (sentiment-zh's) serve workers, never a handler.
    shutil.rmtree(staging / "spotbot" / "bots" / "data", ignore_errors=True)
    for pycache in list(staging.rglob("__pycache__")):
        shutil.rmtree(pycache, ignore_errors=True)
    handlers = staging / "functions"
    handlers.mkdir()
    for pattern in HANDLER_FILES:
        for path in sorted((REPO_ROOT / "functions").glob(pattern)):
            shutil.copy2(path, handlers / path.name)
    if folder.exists():
        shutil.rmtree(folder)
    staging.replace(folder)


def _spotbot_wheel(tmp: Path) -> Path:
    """The spotbot wheel, built from a clean copy of its sources (no stale build/ leftovers)."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "spotbot", source / "spotbot", ignore=shutil.ignore_patterns("__pycache__")
    )
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp / "wheel"), str(source))
    (wheel,) = (tmp / "wheel").glob("spotbot-*.whl")
    return wheel


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise RuntimeError("pip failed building the function package: " + " | ".join(tail))


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _drop_distributions(target: Path, names: frozenset[str]) -> None:
    """Remove installed distributions (their files, by RECORD) whose name is in `names`."""
    target = target.resolve()
    for dist_info in sorted(target.glob("*.dist-info")):
        name = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        if _normalise(name) not in names:
            continue
        record = dist_info / "RECORD"
        for line in record.read_text(encoding="utf-8").splitlines() if record.exists() else []:
            path = target / line.split(",", 1)[0]
            if path.is_file() and target in path.resolve().parents:
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
    for folder in sorted(target.iterdir()):  # folders the removal left empty
        if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder)


def _zip(folder: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.lambda_package", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the build folder")
    parser.add_argument("--architecture", choices=sorted(PLATFORMS), default="x86_64")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        package = build(args.out, args.architecture)
    except (PackageTooLargeError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "zip": str(package.zip_path),
                    "digest": package.digest,
                    "zipped_bytes": package.zipped_bytes,
                    "unzipped_bytes": package.unzipped_bytes,
                    "reused": package.reused,
                }
            )
        )
    else:
        print(package.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
