"""The optional extras that ``idesluss evaluate`` and ``idesluss bench`` need, checked before any work.

The service install leaves them out (docs/install.md); a command that needs a missing one stops at
once with the ``pip install`` line that adds it (exit code 2), instead of failing halfway with a
traceback. Packages are looked up, not imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from idesluss.errors import EXIT_USAGE, CliError

# The importable modules each extra of pyproject.toml provides (hunspell-sv is data that spylls reads).
EXTRAS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime"),
    "eval": ("bertopic", "wordfreq", "spylls", "matplotlib", "onnx", "onnxruntime"),
    "bench": ("onnx", "onnxruntime"),
}


def missing(packages: Iterable[str]) -> list[str]:
    """The modules among ``packages`` that are not installed."""
    return [p for p in packages if importlib.util.find_spec(p) is None]


def require_extra(extra: str, command: str, packages: Iterable[str] | None = None) -> None:
    """Stop with the install line when the extra (or the listed part of it) is not installed.

    Args:
        extra: a key of :data:`EXTRAS`.
        command: the ``idesluss`` command that needs it (named in the message).
        packages: the modules to check (default: all of the extra's).

    Raises:
        CliError: with exit code 2, naming the missing modules and ``pip install -e '.[extra]'``.
    """
    absent = missing(EXTRAS[extra] if packages is None else packages)
    if absent:
        raise CliError(
            f"`idesluss {command}` needs the {extra!r} extra ({', '.join(absent)} not installed): "
            f"pip install -e '.[{extra}]' -c requirements/dev.lock  (or: make {command})",
            EXIT_USAGE,
        )
