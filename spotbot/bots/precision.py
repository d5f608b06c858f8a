"""The number format a bot's network runs in on CPU, chosen by one variable per bot.

"auto" is bf16 where the CPU computes it in hardware (AVX512-BF16 or AMX: Cooper Lake, Sapphire
Rapids and later, e.g. EC2 c7i/m7i/r7i; Graviton 3+ reports bf16 too) and fp32 elsewhere,
because emulated bf16 is slower than fp32. "fp32" gives bit-for-bit repeatable scores across
machines. Bots may accept more choices (sentiment-zh: "int8", dynamic int8 Linear layers).
"""

from __future__ import annotations

import os

from spotbot.core.errors import ModelError

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (Linux: /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = set()
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[-1].split())
                    break
    except OSError:
        return False
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


def precision_choice(env: str, choices: tuple[str, ...] = ("auto", "fp32", "bf16")) -> str:
    """The precision named by `env` ("auto" when unset), resolved: never "auto" on return."""
    choice = os.environ.get(env, "auto").strip().lower() or "auto"
    if choice not in choices:
        raise ModelError(f"{env}={choice!r}: use {', '.join(choices[:-1])} or {choices[-1]}")
    if choice == "auto":
        return "bf16" if native_bf16() else "fp32"
    return choice
