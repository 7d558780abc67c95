"""Coach routes: suggestions for drafts and stored ideas, search, feedback, idea-need links."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.convertors import Convertor, register_url_convertor

from api.deps import Coach, LimitedCoach, ServiceDep
from api.errors import PROBLEM_RESPONSES
from api.schemas import (
    MAX_K,
    MAX_PAGE_SIZE,
    AssignIn,
    FeedbackIn,
    FeedbackOut,
    Filters,
    HitOut,
    IdeaIn,
    IdeaOut,
    IdeaPatch,
    IdeaView,
    InboxPage,
    LinkIn,
    NeedsOut,
    Page,
    ReviewIn,
    SubmitOut,
    SuggestIn,
    SuggestOut,
)
from idesluss.service import Query as SearchQuery
from pipelines.records import MAX_ID_CHARS

router = APIRouter(tags=["coach"], responses=PROBLEM_RESPONSES)


class RecordId(Convertor[str]):
    """A record id in a path: any id the service accepts, '/' included, except one that ends in a
    sub-resource name (so ``/ideas/X/similar`` is never read as the idea ``X/similar``)."""

    regex = r"(?:(?!/(?:similar|needs|ideas|review|assign)$)[^\n])+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("record_id", RecordId())
K = Annotated[int, Query(ge=1, le=MAX_K, description="antal förslag")]
PageNo = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
IsoDate = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")]


def _hits(hits: list[Any]) -> list[HitOut]:
    return [HitOut(**h.as_dict()) for h in hits]


def _suggest_out(result: dict[str, Any]) -> SuggestOut:
    return SuggestOut(
        similar=_hits(result["similar"]),
        needs=_hits(result["needs"]),
        duplicates=result["duplicates"],
        theme=result["theme"],
    )


def _idea_out(rec: Any) -> IdeaOut:
    return IdeaOut(**rec.public())


@router.post("/suggest", response_model=SuggestOut, summary="Förslag medan coachen skriver (sparas inte)")
def suggest(body: SuggestIn, service: ServiceDep, user: LimitedCoach) -> SuggestOut:
    filters = body.filters.as_dict() if body.filters else None
    return _suggest_out(service.suggest(body.text, body.title, body.k, filters, scope=body.scope))


@router.post(
    "/ideas",
    response_model=SubmitOut,
    status_code=201,
    summary="Lämna in en ny idé och få förslag (409 om id:t finns; ändra med PATCH)",
)
def submit_idea(body: IdeaIn, service: ServiceDep, user: LimitedCoach) -> SubmitOut:
    row = body.model_dump(exclude={"k"}, exclude_none=True)
    rec = service.add_idea(row, actor=user["name"])
    result = service.suggest(rec.text, rec.title, body.k, exclude_id=rec.id)
    return SubmitOut(idea=_idea_out(rec), suggestions=_suggest_out(result))


After = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="the previous page's next_after: the ideas after that id (instead of page=)",
    ),
]


@router.get("/ideas", response_model=Page[IdeaOut], summary="Idéer, sida för sida")
def list_ideas(
    service: ServiceDep, user: Coach, page: PageNo = 1, page_size: PageSize = 20, after: After = None
) -> Page[IdeaOut]:
    if after is not None and page != 1:
        raise ValueError("page and after: give one of them (after= goes on from the previous page's next_after)")
    records, total = service.page("ideas", page, page_size, after)
    more = len(records) == page_size and (after is not None or page * page_size < total)
    return Page[IdeaOut](
        items=[_idea_out(r) for r in records],
        page=page,
        page_size=page_size,
        total=total,
        next_after=records[-1].id if more and records else None,
    )


@router.get("/ideas/{idea_id:record_id}/similar", response_model=list[HitOut], summary="Liknande tidigare idéer")
def similar(
    idea_id: str,
    service: ServiceDep,
    user: LimitedCoach,
    k: K = 10,
    all_duplicates: bool = False,
    scope: Literal["own", "shared"] = "own",
) -> list[HitOut]:
    return _hits(service.similar([SearchQuery(id=idea_id)], k=k, all_duplicates=all_duplicates, scope=scope)[0])


@router.get("/ideas/{idea_id:record_id}/needs", response_model=list[HitOut], summary="Medborgarbehov som idén möter")
def needs_for_idea(idea_id: str, service: ServiceDep, user: LimitedCoach, k: K = 10) -> list[HitOut]:
    return _hits(service.needs_for([SearchQuery(id=idea_id)], k=k)[0])


@router.get("/needs/{need_id:record_id}/ideas", response_model=list[HitOut], summary="Idéer som möter ett behov")
def ideas_for_need(need_id: str, service: ServiceDep, user: LimitedCoach, k: K = 10) -> list[HitOut]:
    return _hits(service.ideas_for_need([SearchQuery(id=need_id)], k=k)[0])


@router.get("/ideas/{idea_id:record_id}", response_model=IdeaOut, summary="En idé (maskerad text)")
def get_idea(idea_id: str, service: ServiceDep, user: Coach) -> IdeaOut:
    return _idea_out(service.record("ideas", idea_id))


@router.patch(
    "/ideas/{idea_id:record_id}",
    response_model=IdeaOut,
    summary="Ändra en idé (bara de fält som skickas; maskeras och loggas)",
)
def update_idea(idea_id: str, body: IdeaPatch, service: ServiceDep, user: LimitedCoach) -> IdeaOut:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ValueError("send at least one field to change")
    return _idea_out(service.update_idea(idea_id, changes, actor=user["name"]))


@router.get("/search", response_model=list[HitOut], summary="Sök bland idéer med fritext och filter")
def search(
    service: ServiceDep,
    user: LimitedCoach,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="söktext")],
    k: K = 10,
    department: str | None = None,
    status: str | None = None,
    source: str | None = None,
    date_from: IsoDate = None,
    date_to: IsoDate = None,
    scope: Literal["own", "shared"] = "own",
) -> list[HitOut]:
    filters = Filters(
        department=department, status=status, source=source, date_from=date_from, date_to=date_to
    ).as_dict()
    return _hits(service.similar([SearchQuery(text=q)], k=k, filters=filters, scope=scope)[0])


@router.post("/feedback", response_model=FeedbackOut, status_code=201, summary="Återkoppling på ett förslag")
def feedback(body: FeedbackIn, service: ServiceDep, user: Coach) -> FeedbackOut:
    fid = service.feedback(
        body.query_kind, body.query_id, body.target_kind, body.target_id, body.verdict, actor=user["name"]
    )
    return FeedbackOut(feedback_id=fid)


@router.post("/links", status_code=204, summary="Bekräfta eller avvisa en koppling idé–behov")
def set_link(body: LinkIn, service: ServiceDep, user: Coach) -> None:
    service.set_link(body.idea_id, body.need_id, body.state, actor=user["name"])


# -- the coach's working day: inbox, one idea, needs -----------------------------------------------
@router.get(
    "/inbox",
    response_model=InboxPage,
    summary="Inkorgen: idéer som väntar på granskning, nyast först, med förslag beräknade när de kom in",
)
def inbox(
    service: ServiceDep,
    user: LimitedCoach,
    page: PageNo = 1,
    page_size: PageSize = 20,
    department: Annotated[str | None, Query(max_length=200)] = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    date_from: IsoDate = None,
    date_to: IsoDate = None,
    theme: Annotated[str | None, Query(max_length=200)] = None,
) -> InboxPage:
    filters = Filters(department=department, source=source, date_from=date_from, date_to=date_to)
    wanted: dict[str, Any] = {**filters.model_dump(exclude={"status"}), "theme": theme}
    return InboxPage(**service.inbox.page(wanted, page, page_size))


@router.get("/inbox/{idea_id:record_id}", response_model=IdeaView, summary="En idé: text, förslag med varför, historik")
def idea_view(idea_id: str, service: ServiceDep, user: LimitedCoach) -> IdeaView:
    return IdeaView(**service.inbox.view(idea_id))


@router.post(
    "/ideas/{idea_id:record_id}/review",
    status_code=204,
    summary="Markera som granskad (lämnar inkorgen) eller skicka tillbaka (loggas)",
)
def review(idea_id: str, body: ReviewIn, service: ServiceDep, user: LimitedCoach) -> None:
    service.inbox.mark_reviewed(idea_id, actor=user["name"], reviewed=body.reviewed)


@router.post("/ideas/{idea_id:record_id}/assign", status_code=204, summary="Tilldela idén en coach (loggas)")
def assign(idea_id: str, body: AssignIn, service: ServiceDep, user: LimitedCoach) -> None:
    service.inbox.assign(idea_id, body.coach, actor=user["name"])


@router.get("/needs", response_model=NeedsOut, summary="Behov med idéerna som möter dem, och otillgodosedda behov")
def needs_view(
    service: ServiceDep,
    user: LimitedCoach,
    sort: Literal["raised", "unmet", "id"] = "raised",
    unmet: bool = False,
) -> NeedsOut:
    return NeedsOut(**service.cached(f"needs-view:{sort}:{unmet}", lambda: service.inbox.needs(sort, unmet)))


# -- pages (server-rendered shells; the data comes from the routes above) ---------------------------
_templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _shell(request: Request, name: str, title: str) -> HTMLResponse:
    return _templates.TemplateResponse(request, name, {"title": title})


@router.get("/coach/idea", response_class=HTMLResponse, include_in_schema=False)
def idea_page(request: Request) -> HTMLResponse:
    return _shell(request, "idea.html", "Idé")


@router.get("/coach/needs", response_class=HTMLResponse, include_in_schema=False)
def needs_page(request: Request) -> HTMLResponse:
    return _shell(request, "needs.html", "Behov och idéer")
