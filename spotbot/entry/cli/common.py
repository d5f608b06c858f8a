"""What every `spotbot` command shares: the group, exit codes, options and error handling."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from spotbot.core.errors import (
    ENVIRONMENT_EXIT_CODE,
    EnvironmentFault,
    SpotbotError,
    UsageError,
)
from spotbot.entry.local_runner import Home, JobFailedError, JobInterruptedError, default_home

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The environment stopped the job (a full disk...): fix the cause, then resume.
EXIT_ENVIRONMENT = ENVIRONMENT_EXIT_CODE


def open_home(path: str | None) -> Home:
    return Home(Path(path).expanduser() if path else default_home())


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=None))


def fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


home_option = click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Where the task store and models live [env SPOTBOT_HOME; default:"
    " the user's data folder].",
)
threads_option = click.option(
    "--threads", type=click.IntRange(min=0), default=0, help="Model threads [0: all cores]."
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object on stdout and nothing else there.",
)


class OneLineErrorsGroup(click.Group):
    """A usage mistake (bad option, missing argument) is one line on stderr and exit 2, as
    spotbot's own UsageErrors are, instead of click's usage block."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(super().main, args, prog_name, complete_var, False, **extra)
        if not standalone_mode:
            return run()
        try:
            return run()
        except click.UsageError as exc:
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            fail(" ".join(exc.format_message().split()) + where, EXIT_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@click.group(cls=OneLineErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="spotbot")
def main(verbose: int) -> None:
    """Tag large collections of assets with machine-learning bots."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """Turn spotbot's own errors into one-line messages and exit codes (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except JobFailedError as exc:
            fail(f"job failed: {exc}", EXIT_JOB_FAILED)
        except JobInterruptedError as exc:
            fail(str(exc), EXIT_ENVIRONMENT)
        except EnvironmentFault as exc:
            fail(f"{exc}; once that is fixed, run the command again", EXIT_ENVIRONMENT)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except SpotbotError as exc:
            fail(str(exc), EXIT_JOB_FAILED)

    return wrapper
