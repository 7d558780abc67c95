"""Theme trends from the current run: counts per month and quarter, growth, departments, unmet needs
(``store.trends``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime
from typing import Any

from store.base import Repository


def _month(d: datetime) -> str:
    return f"{d.year}-{d.month:02d}"


def _quarter(d: datetime) -> str:
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}"


def _previous_quarter(q: str) -> str:
    year, quarter = int(q[:4]), int(q[-1])
    return f"{year - 1}-Q4" if quarter == 1 else f"{year}-Q{quarter - 1}"


class TrendRepository(Repository):
    """Trend aggregates over the members of the current theme run."""

    def theme_trends(
        self, today: date | None = None, unmet_ratio: float = 1.0, unmet_min_needs: int = 3
    ) -> dict[str, dict[str, Any]]:
        """Per theme: ideas and needs per month and quarter, growth, departments, need balance.

        Growth compares the last complete quarter with the one before it (new ideas and needs).
        A theme is flagged as an unmet need when it holds at least ``unmet_min_needs`` needs and
        needs outnumber ideas by ``unmet_ratio`` or more.
        """
        today = today or date.today()
        current_q = _quarter(datetime(today.year, today.month, 1))
        last_q = _previous_quarter(current_q)
        before_q = _previous_quarter(last_q)
        out: dict[str, dict[str, Any]] = defaultdict(
            lambda: {
                "months": Counter(),
                "quarters": Counter(),
                "ideas": 0,
                "needs": 0,
                "departments": Counter(),
                "idea_months": Counter(),
                "need_months": Counter(),
            }
        )
        for theme_id, kind, created, department in self._store.themes.trend_rows():
            t = out[theme_id]
            t[kind] += 1
            if department:
                t["departments"][department] += 1
            if created:
                t["months"][_month(created)] += 1
                t["quarters"][_quarter(created)] += 1
                t["idea_months" if kind == "ideas" else "need_months"][_month(created)] += 1
        result = {}
        for theme_id, t in out.items():
            last, before = t["quarters"].get(last_q, 0), t["quarters"].get(before_q, 0)
            growth = (last - before) / before if before else (None if not last else 1.0)
            result[theme_id] = {
                "ideas": t["ideas"],
                "needs": t["needs"],
                "per_month": dict(sorted(t["months"].items())),
                "per_quarter": dict(sorted(t["quarters"].items())),
                "ideas_per_month": dict(sorted(t["idea_months"].items())),
                "needs_per_month": dict(sorted(t["need_months"].items())),
                "last_quarter": last_q,
                "last_quarter_count": last,
                "previous_quarter_count": before,
                "growth": growth,
                "departments": dict(t["departments"].most_common()),
                "unmet_needs": t["needs"] >= unmet_min_needs and t["needs"] >= unmet_ratio * max(t["ideas"], 1),
            }
        return result
