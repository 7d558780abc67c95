"""Leadership routes: theme overview, one theme, and everything the overview page draws. Aggregates only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import LimitedLeader, ServiceDep
from api.errors import PROBLEM_RESPONSES
from api.schemas import MAX_PAGE_SIZE, MapPoint, OverviewOut, Page, ThemeDetailOut, ThemeSummary
from store import themes as sql

router = APIRouter(tags=["leadership"], responses=PROBLEM_RESPONSES)


def _summary(t: dict[str, Any]) -> ThemeSummary:
    return ThemeSummary(**{k: t[k] for k in ThemeSummary.model_fields})


@router.get("/themes", response_model=Page[ThemeSummary], summary="Teman: storlek, tillväxt, förvaltningar")
def themes(
    service: ServiceDep,
    user: LimitedLeader,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> Page[ThemeSummary]:
    rows = service.themes()
    start = (page - 1) * page_size
    return Page[ThemeSummary](
        items=[_summary(t) for t in rows[start : start + page_size]], page=page, page_size=page_size, total=len(rows)
    )


@router.get("/themes/{theme_id}", response_model=ThemeDetailOut, summary="Ett tema: nyckelord, exempel, trend")
def theme(theme_id: str, service: ServiceDep, user: LimitedLeader) -> ThemeDetailOut:
    d = service.theme_detail(theme_id)
    return ThemeDetailOut(**{k: d[k] for k in ThemeDetailOut.model_fields})


@router.get("/overview", response_model=OverviewOut, summary="Allt som ledningens översikt ritar")
def overview(service: ServiceDep, user: LimitedLeader) -> OverviewOut:
    from store.trends import theme_trends

    rows = service.themes()
    runs = sql.theme_runs(service.store, limit=1)
    trends = theme_trends(service.store)
    titles = {}
    for kind in ("ideas", "needs"):
        for r in service.store.records(kind):
            titles[(kind, r.id)] = r.title or r.text[:80]
    points = [
        MapPoint(
            x=m["x"], y=m["y"], theme_id=m["theme_id"], kind=m["kind"], title=titles.get((m["kind"], m["item_id"]), "")
        )
        for m in sql.memberships(service.store)
        if m["x"] is not None and m["theme_id"]
    ]
    departments = sorted({d for t in rows for d in t["departments"]})
    heat = [[t["departments"].get(d, 0) for d in departments] for t in rows]
    return OverviewOut(
        run_id=runs[0]["run_id"] if runs else None,
        created_at=runs[0]["created_at"].isoformat() if runs else None,
        themes=[_summary(t) for t in rows],
        trends={
            t["id"]: {
                "ideas": trends.get(t["id"], {}).get("ideas_per_month", {}),
                "needs": trends.get(t["id"], {}).get("needs_per_month", {}),
            }
            for t in rows
        },
        map=points,
        departments=departments,
        heatmap=heat,
        unmet=[_summary(t) for t in rows if t["unmet_needs"]],
    )
