"""Leadership routes: theme overview, one theme, and everything the overview page draws. Aggregates only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import LimitedLeader, ServiceDep
from api.errors import PROBLEM_RESPONSES
from api.schemas import MAX_PAGE_SIZE, MapPoint, OverviewOut, Page, ThemeDetailOut, ThemeSummary

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
    rows = service.cached("themes", service.themes)
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
    d = service.cached("overview", service.overview)
    return OverviewOut(
        run_id=d["run_id"],
        created_at=d["created_at"],
        themes=[_summary(t) for t in d["themes"]],
        trends=d["trends"],
        map=[MapPoint(**p) for p in d["map"]],
        departments=d["departments"],
        heatmap=d["heatmap"],
        unmet=[_summary(t) for t in d["unmet"]],
    )
