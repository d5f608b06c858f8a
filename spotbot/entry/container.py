"""The bot images' entry point: `python -m spotbot.entry.container serve|work|train|warm [args]`.

SageMaker runs `IMAGE serve` (inference) and `IMAGE train` (training); AWS Batch runs the job
definition's command `["work"]`. `serve` and `work` are the `spotbot` CLI commands of those
names. `train` follows the SageMaker training contract under /opt/ml (SPOTBOT_OPT_ML moves
it, so the same code runs in tests and on a laptop): the shipped bots train through
spotbot.training.contract (hyperparameters, channels, checkpoints); other bots run their training
module (`training.<bot>`, its `main(argv)` or its `python -m` entry). When training fails or
does not exist, the reason goes to /opt/ml/output/failure and the exit is non-zero.
`warm` (run once while the image is built) loads the image's bot with its built-in model, so
what a first load derives and caches (sentiment-zh's ONNX export, under SPOTBOT_CACHE_DIR) is
in the image and no container pays for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import runpy
import sys
import traceback
from collections.abc import Sequence

from spotbot.core import envnames
from spotbot.core.opt_ml import failure_path, opt_ml, write_failure
from spotbot.core.plugins import load_bot_class
from spotbot.entry.cli import main as cli
from spotbot.training.contract import train_in_container
from spotbot.training.run import TRAINERS

log = logging.getLogger(__name__)

TRAINING_PACKAGE_ENV = "SPOTBOT_TRAINING_PACKAGE"  # where training.<bot> modules live
COMMANDS = ("serve", "work", "train", "warm")
USAGE = "usage: python -m spotbot.entry.container {serve|work|train|warm} [args...]"


def _training_module(bot: str) -> str:
    package = os.environ.get(TRAINING_PACKAGE_ENV) or "training"
    name = bot
    if ":" in bot:  # a module:Class spec: the bot's registered name picks the module
        name = load_bot_class(bot).name
    return f"{package}.{name.replace('-', '_')}"


def _has_main_guard(module: str) -> bool:
    """Whether `python -m module` would do anything: a package __main__ or a __main__ guard."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    try:
        source = spec.loader.get_source(module) if spec.loader else None  # type: ignore[attr-defined]
    except (ImportError, OSError):
        return False
    return isinstance(source, str) and '__name__ == "__main__"' in source


def _is_trainable(bot: str | None) -> bool:
    """Whether the bot (or, unnamed, the hyperparameters' bot) has a trainer in spotbot.training.run."""
    if bot is None:
        return (opt_ml() / "input" / "config" / "hyperparameters.json").is_file()
    return bot in TRAINERS


def train(argv: Sequence[str]) -> int:
    """Run the bot's training entry point; on failure write output/failure and return 1."""
    bot = os.environ.get(envnames.BOT)
    args = list(argv)
    if "--bot" in args:
        at = args.index("--bot")
        bot = args[at + 1] if at + 1 < len(args) else None
        del args[at : at + 2]
    if not os.environ.get(TRAINING_PACKAGE_ENV) and _is_trainable(bot):
        # The shipped bots train through the shared contract (spotbot.training.contract); it also
        # takes the bot from hyperparameters.json when neither the image nor --bot names it.

        return train_in_container(bot)
    if not bot:
        write_failure(f"no bot to train: set {envnames.BOT} in the image or pass --bot")
        return 1
    try:
        module = _training_module(bot)
        found = importlib.util.find_spec(module) is not None
    except Exception as exc:  # a missing parent package or a broken bot spec
        write_failure(f"cannot find the training code of bot {bot!r}: {exc}")
        return 1
    if not found:
        write_failure(f"bot {bot!r} has no training code yet: module {module} does not exist")
        return 1
    try:
        # `python -m` semantics first (checked without importing, so the module runs once);
        # a module without a __main__ entry may still offer main(argv).
        if _has_main_guard(module):
            sys.argv = [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        elif callable(entry := getattr(importlib.import_module(module), "main", None)):
            code = entry(args)
        else:
            write_failure(
                f"bot {bot!r} has no training entry point yet: {module} defines no main(argv)"
                " and cannot be run with python -m"
            )
            return 1
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code and not failure_path().exists():
            write_failure(f"training of {bot!r} exited with {exc.code}")
    except Exception as exc:
        log.error("training failed\n%s", traceback.format_exc())
        write_failure(f"training of {bot!r} failed: {type(exc).__name__}: {exc}")
        return 1
    code = int(code or 0)
    if code and not failure_path().exists():
        write_failure(f"training of {bot!r} exited with code {code}")
    return code


def warm() -> int:
    """Load the image's bot (SPOTBOT_BOT) with its built-in model once; 0 when it loads."""
    import time

    from spotbot.entry.serving import load_builtin_bot

    name = os.environ.get(envnames.BOT, "").strip()
    if not name:
        sys.stderr.write(f"warm: set {envnames.BOT} to the image's bot\n")
        return 2
    started = time.perf_counter()
    load_builtin_bot(name)
    sys.stderr.write(f"warm: {name} loaded in {time.perf_counter() - started:.1f} s\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        got = f" (got {args[0]!r})" if args else ""
        sys.stderr.write(f"{USAGE}{got}\n")
        return 2
    command, rest = args[0], args[1:]
    if command == "train":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        return train(rest)
    if command == "warm":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        return warm()

    try:
        cli.main(args=[command, *rest], prog_name="spotbot", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
