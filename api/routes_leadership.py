"""Leadership routes: theme overview, one theme, and everything the overview page draws. Aggregates only."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import LimitedLeader, ServiceDep
from api.errors import PROBLEM_RESPONSES
from api.schemas import (
    MAX_PAGE_SIZE,
    MIN_GROWTH_ITEMS,
    MapPoint,
    OverviewOut,
    Page,
    ThemeDetailOut,
    ThemePageOut,
    ThemeSummary,
    UnmetNeed,
)

router = APIRouter(tags=["leadership"], responses=PROBLEM_RESPONSES)


def _summary(t: dict[str, Any], trends: dict[str, dict[str, Any]] | None = None) -> ThemeSummary:
    """A theme's summary; growth only where both quarters hold MIN_GROWTH_ITEMS new items, else the counts."""
    tr = (trends or {}).get(t["id"], {})
    last, before = int(tr.get("last_quarter_count", 0)), int(tr.get("previous_quarter_count", 0))
    enough = trends is None or (last >= MIN_GROWTH_ITEMS and before >= MIN_GROWTH_ITEMS)
    return ThemeSummary(
        **{k: t[k] for k in ("id", "label", "keywords", "size", "ideas", "needs", "unmet_needs", "departments")},
        representative_title=t.get("representative_title"),
        growth=t["growth"] if enough else None,
        last_quarter=tr.get("last_quarter"),
        last_quarter_count=last,
        previous_quarter_count=before,
    )


def _trends(service: Any) -> dict[str, dict[str, Any]]:
    return service.theme_trends()


@router.get("/themes", response_model=Page[ThemeSummary], summary="Teman: storlek, tillväxt, förvaltningar")
def themes(
    service: ServiceDep,
    user: LimitedLeader,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> Page[ThemeSummary]:
    rows = service.cached("themes", service.themes)
    trends = _trends(service)
    start = (page - 1) * page_size
    return Page[ThemeSummary](
        items=[_summary(t, trends) for t in rows[start : start + page_size]],
        page=page,
        page_size=page_size,
        total=len(rows),
    )


@router.get("/themes/{theme_id}", response_model=ThemeDetailOut, summary="Ett tema: nyckelord, exempel, trend")
def theme(theme_id: str, service: ServiceDep, user: LimitedLeader) -> ThemeDetailOut:
    d = service.theme_detail(theme_id)
    return ThemeDetailOut(**{k: d[k] for k in ThemeDetailOut.model_fields})


@router.get(
    "/themes/{theme_id}/page",
    response_model=ThemePageOut,
    summary="Temasidan: representativa idéer, trend, förvaltningar och otillgodosedda behov",
)
def theme_page(theme_id: str, service: ServiceDep, user: LimitedLeader) -> ThemePageOut:
    p = service.theme_page(theme_id)
    tr = p["detail"]["trend"]
    return ThemePageOut(
        theme=_summary(p["row"], _trends(service)),
        representatives=p["detail"]["representatives"],
        per_month={"ideas": tr.get("ideas_per_month", {}), "needs": tr.get("needs_per_month", {})},
        unmet=[UnmetNeed(**u) for u in p["unmet"]],
    )


@router.get("/overview", response_model=OverviewOut, summary="Allt som ledningens översikt ritar")
def overview(service: ServiceDep, user: LimitedLeader) -> Response:
    # the answer (a map of up to 5,000 points) is validated and serialised once per theme run and
    # write, like the figures it is made of: at 10k ideas that was 13 to 20 ms and some 50,000
    # objects per request, with a garbage collection of the whole heap every few requests
    body = service.cached("overview-json", lambda: _overview_out(service).model_dump_json().encode())
    return Response(content=body, media_type="application/json")


def _overview_out(service: Any) -> OverviewOut:
    d = service.cached("overview", service.overview)
    trends = _trends(service)
    return OverviewOut(
        run_id=d["run_id"],
        created_at=d["created_at"],
        themes=[_summary(t, trends) for t in d["themes"]],
        trends=d["trends"],
        map=[MapPoint(**p) for p in d["map"]],
        departments=d["departments"],
        heatmap=d["heatmap"],
        unmet=[_summary(t, trends) for t in d["unmet"]],
    )


def _csv_cell(value: Any) -> Any:
    """A cell that a spreadsheet will not run as a formula (=, +, -, @ lead a formula)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get(
    "/overview.csv",
    summary="Översikten som CSV (tabellerna: teman, förvaltningar per tema, otillgodosedda behov)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, semikolonseparerad, UTF-8 med BOM"}},
)
def overview_csv(service: ServiceDep, user: LimitedLeader) -> Response:
    d = service.cached("overview", service.overview)
    trends = _trends(service)
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(
        [
            "tabell",
            "tema",
            "idéer",
            "behov",
            "kvartal",
            "nya senaste kvartalet",
            "nya kvartalet före",
            "tillväxt",
            "förvaltning",
            "antal",
        ]
    )
    for t in (_summary(x, trends) for x in d["themes"]):
        growth = "" if t.growth is None else f"{round(t.growth * 100)} %"
        w.writerow(
            [
                _csv_cell(c)
                for c in (
                    "teman",
                    t.label,
                    t.ideas,
                    t.needs,
                    t.last_quarter,
                    t.last_quarter_count,
                    t.previous_quarter_count,
                    growth,
                    "",
                    "",
                )
            ]
        )
    for t in d["themes"]:
        for dept, n in t["departments"].items():
            w.writerow([_csv_cell(c) for c in ("förvaltningar", t["label"], "", "", "", "", "", "", dept, n)])
    for t in d["unmet"]:
        w.writerow(
            [_csv_cell(c) for c in ("otillgodosedda behov", t["label"], t["ideas"], t["needs"], "", "", "", "", "", "")]
        )
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="idesluss-oversikt.csv"'},
    )


# -- pages (server-rendered shells; the data comes from the routes above) ---------------------------
_templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@router.get("/leadership", response_class=HTMLResponse, include_in_schema=False)
def overview_shell(request: Request) -> HTMLResponse:
    # registered before the app's generic page of the same path: this one knows the growth minimum
    return _templates.TemplateResponse(
        request, "leadership.html", {"title": "Ledningens översikt", "printable": False, "min_growth": MIN_GROWTH_ITEMS}
    )


@router.get("/leadership/theme", response_class=HTMLResponse, include_in_schema=False)
def theme_shell(request: Request) -> HTMLResponse:
    return _templates.TemplateResponse(request, "theme.html", {"title": "Tema"})


@router.get("/leadership/print", response_class=HTMLResponse, include_in_schema=False)
def print_shell(request: Request) -> HTMLResponse:
    return _templates.TemplateResponse(
        request,
        "leadership.html",
        {"title": "Ledningens översikt (utskrift)", "printable": True, "min_growth": MIN_GROWTH_ITEMS},
    )
