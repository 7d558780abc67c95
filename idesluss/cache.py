"""Answers remembered until the theme run changes or anything is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from store import Store


class AnswerCache:
    """Cached answers keyed by (current theme run, write generation).

    Every write that changes what a cached answer shows calls :meth:`changed` (erasure,
    restore, curation, links, changed records; a new idea does not, as it joins a theme at the
    next run); a cached answer is computed again once the generation or the current theme run
    has moved on.

    Args:
        store: the store whose current theme run is part of the key.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._generation = 0  # moves on with every write; answers cached per theme run and generation
        self._cache: dict[str, tuple[tuple[int | None, int], Any]] = {}

    def changed(self) -> None:
        """Something was written: cached answers are stale."""
        self._generation += 1

    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered until the theme run changes or anything is written."""
        key = (self._store.themes.current_run_id(), self._generation)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        self._cache[name] = (key, value)
        return value
