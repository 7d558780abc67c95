"""Request and response schemas. Input and public models are separate, so a leadership response
cannot carry a field it must not (no submitter data, no unmasked text)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

from idesluss.themes_service import MIN_GROWTH_ITEMS  # one rule for the API and the CLI
from pipelines.records import MAX_TEXT_CHARS, MAX_TITLE_CHARS

T = TypeVar("T")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _whole_number(value: Any) -> Any:
    """JSON integers only: 3 or 3.0, never true/false or 3.5 (pydantic's lax mode would take true as 1)."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")
    return int(value) if isinstance(value, float) else value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
MAX_K = 50
MAX_PAGE_SIZE = 100


class Filters(BaseModel):
    """Optional filters on similar ideas."""

    model_config = ConfigDict(extra="forbid")
    department: str | None = Field(None, max_length=200)
    status: str | None = Field(None, max_length=100)
    source: str | None = Field(None, max_length=100)
    date_from: date | None = None
    date_to: date | None = None

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if value is None or isinstance(value, date):
            return value
        if not isinstance(value, str) or not _ISO_DATE.match(value):
            raise ValueError("must be an ISO 8601 date string (YYYY-MM-DD)")
        return value

    def as_dict(self) -> dict[str, Any]:
        from datetime import datetime

        out: dict[str, Any] = {
            k: v for k, v in self.model_dump().items() if v and k in ("department", "status", "source")
        }
        if self.date_from:
            out["date_from"] = datetime.combine(self.date_from, datetime.min.time())
        if self.date_to:
            out["date_to"] = datetime.combine(self.date_to, datetime.max.time())
        return out


class SuggestIn(BaseModel):
    """A drafted idea that is not stored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Bygg en belyst cykelväg mellan Öjebyn och centrum", "k": 5}]},
    )
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, description="idétext (utkast)")
    title: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    k: WholeNumber = Field(5, ge=1, le=MAX_K)
    filters: Filters | None = None
    scope: Literal["own", "shared"] = Field(
        "own", description="own: this municipality's ideas; shared: ideas other municipalities share"
    )


class _IdeaMeta(BaseModel):
    """The optional fields of an idea, shared by creation and change (each masked on storing)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    created_at: str | None = Field(None, max_length=40)
    department: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    status: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    outcome: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    source: str | None = Field(None, max_length=MAX_TITLE_CHARS)
    shared: StrictBool | None = Field(
        None, description="shared with other municipalities (true/false); unset: the municipality's default"
    )


class IdeaIn(_IdeaMeta):
    """A new idea to store."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "I9001",
                    "title": "Bänkar vid busshållplatsen",
                    "text": "Sätt upp bänkar vid hållplatserna i byarna.",
                    "department": "Samhällsbyggnadsförvaltningen",
                }
            ]
        },
    )
    id: str = Field(..., min_length=1, max_length=200)
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    contact_ref: str | None = Field(
        None, max_length=MAX_TITLE_CHARS, description="källsystemets referens till inlämnaren (ogenomskinlig)"
    )
    k: WholeNumber = Field(5, ge=1, le=MAX_K)


class IdeaPatch(_IdeaMeta):
    """Fields of a stored idea to change; fields not sent are kept. Masked like every text."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "genomförd", "outcome": "Bänkar uppsatta 2025"}]}
    )
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)


class HitFields(BaseModel):
    """What every suggestion shows: the target and the evidence."""

    id: str
    score: float
    title: str | None
    snippet: str
    department: str | None
    created_at: str | None
    status: str | None
    outcome: str | None
    source: str | None
    dense: float
    lexical: float
    shared_terms: list[str]
    why: str
    duplicate_group: list[str] = Field(
        description="ids in the hit's near-duplicate group, itself included (at most 20; empty: no group)"
    )
    duplicate_count: int = Field(0, description="how many items the near-duplicate group has in all (0: no group)")
    tenant: str | None = Field(None, description="the municipality of an idea it shares (scope shared only)")


class HitOut(HitFields):
    """One suggestion with its evidence."""

    confirmed: bool


class ThemeRef(BaseModel):
    """A theme an idea belongs to (provisional between nightly runs)."""

    id: str
    label: str
    provisional: bool = False
    similarity: float | None = None


class SuggestOut(BaseModel):
    """Suggestions for a draft or a stored idea."""

    similar: list[HitOut]
    needs: list[HitOut]
    duplicates: list[str]
    theme: ThemeRef | None


class IdeaOut(BaseModel):
    """A stored idea as a coach sees it (masked text)."""

    id: str
    title: str | None
    text: str
    created_at: str | None
    department: str | None
    status: str | None
    outcome: str | None
    source: str | None
    shared: bool | None = None


class SubmitOut(BaseModel):
    """A stored idea with its suggestions."""

    idea: IdeaOut
    suggestions: SuggestOut


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    page: int
    page_size: int
    total: int
    next_after: str | None = Field(
        None, description="where a list that pages by cursor goes on: pass it as after= (None on the last page)"
    )


class FeedbackIn(BaseModel):
    """A coach's verdict on a suggestion."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query_kind": "ideas",
                    "query_id": "I0068",
                    "target_kind": "ideas",
                    "target_id": "I0069",
                    "verdict": "duplicate",
                }
            ]
        },
    )
    query_kind: Literal["ideas", "needs", "draft"]
    query_id: str = Field(..., min_length=1, max_length=200)
    target_kind: Literal["ideas", "needs"]
    target_id: str = Field(..., min_length=1, max_length=200)
    verdict: Literal["useful", "not_useful", "duplicate", "confirmed_need_link", "rejected_need_link"]


class FeedbackOut(BaseModel):
    """The stored feedback id."""

    feedback_id: int


class LinkIn(BaseModel):
    """Confirm or reject an idea-need link."""

    model_config = ConfigDict(extra="forbid")
    idea_id: str = Field(..., min_length=1, max_length=200)
    need_id: str = Field(..., min_length=1, max_length=200)
    state: Literal["confirmed", "rejected"]


class ThemeSummary(BaseModel):
    """A theme in the leadership overview: aggregates only."""

    id: str
    label: str
    keywords: list[str]
    size: int
    representative_title: str | None = Field(None, description="title of the theme's most representative idea")
    ideas: int
    needs: int
    growth: float | None = Field(
        description="last complete quarter against the one before; null unless both quarters hold at least "
        "MIN_GROWTH_ITEMS new items (then compare the counts)"
    )
    unmet_needs: bool
    departments: dict[str, int]
    last_quarter: str | None = None
    last_quarter_count: int = 0
    previous_quarter_count: int = 0


class UnmetNeed(BaseModel):
    """A need in a theme that no idea is confirmed to answer."""

    id: str
    title: str


class Representative(BaseModel):
    """A representative item, masked text only."""

    kind: str
    id: str
    title: str | None
    text: str


class ThemeDetailOut(BaseModel):
    """One theme for leadership: keywords, representatives and trend (no member lists)."""

    id: str
    label: str
    keywords: list[str]
    size: int
    representatives: list[Representative]
    trend: dict[str, Any]


class MapPoint(BaseModel):
    """One item on the 2-D theme map."""

    x: float
    y: float
    theme_id: str
    kind: str
    title: str


class OverviewOut(BaseModel):
    """Everything the leadership page draws."""

    run_id: int | None
    created_at: str | None
    themes: list[ThemeSummary]
    trends: dict[str, dict[str, dict[str, int]]]
    map: list[MapPoint]
    departments: list[str]
    heatmap: list[list[int]]
    unmet: list[ThemeSummary]


class ThemePageOut(BaseModel):
    """One theme's page for leadership: representatives, trend, departments and unmet needs."""

    theme: ThemeSummary
    representatives: list[Representative]
    per_month: dict[str, dict[str, int]]
    unmet: list[UnmetNeed]
    min_growth_items: int = MIN_GROWTH_ITEMS


class CurateIn(BaseModel):
    """Staff curation of a theme."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"action": "rename", "name": "Vinterväghållning"}]}
    )
    action: Literal["rename", "merge", "move", "pin"]
    name: str | None = Field(None, max_length=200)
    other_theme_id: str | None = Field(None, max_length=40)
    kind: Literal["ideas", "needs"] | None = None
    item_id: str | None = Field(None, max_length=200)


class KeyIn(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["coach", "leadership", "admin"]
    name: str = Field(..., min_length=1, max_length=100)


class KeyOut(BaseModel):
    """A key as listed (never the secret)."""

    key_id: str
    name: str
    role: str
    created_at: str
    revoked_at: str | None


class NewKeyOut(BaseModel):
    """A created key: the secret is shown this once."""

    key_id: str
    role: str
    name: str
    key: str


class IngestOut(BaseModel):
    """Result of an upload."""

    kind: str
    inserted: int
    updated: int
    unchanged: int
    embedded: int
    errors: list[dict[str, Any]]


class JobOut(BaseModel):
    """A theme job: state and progress."""

    job_id: str
    state: Literal["queued", "running", "done", "failed"]
    stage: str | None
    progress: float
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None


class RunOut(BaseModel):
    """A theme run record."""

    run_id: int
    created_at: str
    n_themes: int | None
    share_unassigned: float | None
    quality: float | None
    timings: dict[str, float]
    events: list[dict[str, Any]]


# -- the coach's inbox, idea view and needs view ------------------------------------------------
class InboxHit(HitFields):
    """A precomputed suggestion, with the target's current title, status and outcome."""

    link: Literal["confirmed", "rejected"] | None = Field(None, description="a coach's word on this idea-need link")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# the store keeps UTC without tzinfo; the API says so (an RFC 3339 date-time carries its offset)
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class InboxCard(BaseModel):
    """An idea awaiting review with its suggestions (computed when it arrived)."""

    idea: IdeaOut
    similar: list[InboxHit]
    needs: list[InboxHit]
    duplicates: list[str]
    theme: ThemeRef | None
    computed_at: UtcDatetime | None
    reviewed_at: UtcDatetime | None
    reviewed_by: str | None
    assigned_to: str | None


class InboxPage(BaseModel):
    """One page of the inbox, newest first, and the filter choices."""

    items: list[InboxCard]
    total: int = Field(description="ideas waiting under these filters")
    page: int
    page_size: int
    departments: list[str]
    sources: list[str]


class HistoryEvent(BaseModel):
    """Something that happened to an idea: who, what and when (never content)."""

    at: UtcDatetime
    actor: str
    what: str
    kind: Literal["audit", "feedback"]
    target: str | None


class IdeaView(InboxCard):
    """One idea with its suggestions, review state and history."""

    history: list[HistoryEvent]
    awaiting: bool = Field(description="true while the idea is in the inbox")


class ReviewIn(BaseModel):
    """Mark an idea reviewed (it leaves the inbox) or send it back (``reviewed: false``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reviewed": True}]})
    reviewed: StrictBool = True


class AssignIn(BaseModel):
    """Hand an idea to a coach."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"coach": "Anna, idécoach"}]})
    coach: str = Field(..., min_length=1, max_length=200, description="coachens namn")


class NeedIdea(BaseModel):
    """An idea confirmed to answer a need."""

    id: str
    title: str


class NeedRow(BaseModel):
    """A citizen need with the ideas that answer it."""

    id: str
    title: str | None
    text: str
    department: str | None
    source: str | None
    created_at: str | None
    raised: int = Field(description="how many citizens raised it (see raised_basis)")
    raised_basis: Literal["count", "duplicates"] = Field(
        description="count: the file's count attribute; duplicates: the need and its near-duplicates"
    )
    ideas: list[NeedIdea]
    unmet: bool = Field(description="no idea is confirmed to answer it")


class NeedsOut(BaseModel):
    """The needs view."""

    items: list[NeedRow]
    total: int
    unmet: int


class RegionIdea(BaseModel):
    """A shared idea in a regional theme."""

    tenant: str
    id: str
    title: str | None
    status: str | None
    outcome: str | None


class RegionTheme(BaseModel):
    """A subject that several municipalities' themes share, named by its most central shared idea."""

    label: str
    municipalities: int
    shared_ideas: int
    by_tenant: dict[str, int]
    ideas: list[RegionIdea]


class RegionOut(BaseModel):
    """The region's overview: its tenants and the regional themes, those in most municipalities first."""

    tenants: list[str]
    themes: list[RegionTheme]
