"""Optional packages of the optional engines: imported only when chosen, named when missing."""

from __future__ import annotations

import importlib
from typing import Any

# The extra of pyproject.toml that installs a package (docs/install.md); packages of the core have none.
EXTRA_OF = {"onnxruntime": "onnx", "onnx": "onnx"}


class MissingExtra(ModuleNotFoundError):
    """An optional package an engine needs is not installed; the message says how to install it."""


def install_hint(package: str) -> str:
    """The command that installs ``package`` into this project's environment."""
    extra = EXTRA_OF.get(package)
    if extra is None:
        return f"pip install {package}"
    return f"pip install -e '.[{extra}]' -c requirements/dev.lock (in the repository; or: pip install {package})"


def require(package: str, engine: str) -> Any:
    """Import ``package`` for ``engine``, or fail naming the package and how to install it.

    Raises:
        MissingExtra: the package is not installed (the message names it, the engine and the install line).
    """
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingExtra(
            f"the {engine!r} engine needs the package {package!r}, which is not installed: "
            f"{install_hint(package)}, or choose another engine",
            name=package,
        ) from exc
