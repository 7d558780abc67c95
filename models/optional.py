"""Optional packages of the optional engines: imported only when chosen, named when missing."""

from __future__ import annotations

import importlib
from typing import Any


def require(package: str, engine: str) -> Any:
    """Import ``package`` for ``engine``, or fail naming the package and how to install it.

    Raises:
        ModuleNotFoundError: the package is not installed (the message names it and the engine).
    """
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"the {engine!r} engine needs the package {package!r}, which is not installed: "
            f"pip install {package} (or choose another engine)",
            name=package,
        ) from exc
