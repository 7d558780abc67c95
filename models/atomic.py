"""Directories that appear whole or not at all (model caches, exported variants)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def building(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to fill; on success it replaces ``target``.

    On any error (or interruption) the temporary directory is removed and ``target`` is left as it
    was, so a reader never sees a half-written directory.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def path_safe(model_id: str) -> str:
    """A model id as one directory name ("org/name@rev" -> "org--name-rev")."""
    return model_id.replace("/", "--").replace("@", "-")
