"""Region routes: the themes that recur across a region's municipalities, from their shared ideas only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import limited
from api.errors import PROBLEM_RESPONSES
from api.schemas import RegionOut

router = APIRouter(tags=["region"], responses=PROBLEM_RESPONSES)
RegionUser = Annotated[dict[str, Any], Depends(limited("region"))]


@router.get(
    "/region/overview",
    response_model=RegionOut,
    summary="Teman som återkommer i flera kommuner (bara delade idéer räknas)",
)
def region_overview(request: Request, user: RegionUser) -> RegionOut:
    """Computed from each tenant's current themes and its shared ideas at the time of asking."""
    return RegionOut(**request.app.state.service.region_overview(list(user["region"])))


_templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@router.get("/region", response_class=HTMLResponse, include_in_schema=False)
def region_page(request: Request) -> HTMLResponse:
    return _templates.TemplateResponse(request, "region.html", {"title": "Regionen"})
