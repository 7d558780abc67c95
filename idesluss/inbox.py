"""The coach's working day: the inbox of ideas awaiting review, one idea's view, and the needs view.

Suggestions for an idea (similar earlier ideas with their outcome, the needs it answers, its
duplicate group, its provisional theme) are computed once, when the idea arrives
(:meth:`Inbox.precompute`), and stored in ``idea_suggestions``. A page view reads them; only a
missing or stale row (the idea's text or the theme run changed since) is computed on demand.

What is stored is ids, scores and the "why" of each suggestion; titles, snippets, status and
outcome are read from the records when shown, so they are current (what became of an earlier
idea may change after the suggestion was computed) and an erased record leaves no text behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from idesluss.errors import NotFound
from idesluss.priority import Pacer, lower_this_thread
from idesluss.search import Search
from matcher.hybrid import GROUP_SHOWN
from pipelines.masking import mask

if TYPE_CHECKING:
    from idesluss.service import Service

log = logging.getLogger(__name__)

K_SUGGESTIONS = 5


def _count(value: Any) -> int:
    """A sortable count (missing counts as 0)."""
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


# the evidence kept per suggestion (never another record's text: see the module docstring)
_KEPT = ("id", "score", "dense", "lexical", "shared_terms", "why", "duplicate_group", "duplicate_count")


def _slim(hit: Any) -> dict[str, Any]:
    d = hit.as_dict()
    return {k: d[k] for k in _KEPT}


def _capped_group(hit: dict[str, Any]) -> dict[str, Any]:
    """A stored suggestion's duplicate group as a search gives it now: at most GROUP_SHOWN ids (its own
    among them) and the group's size. Suggestions stored before the cap listed every id and no size."""
    group = list(hit.get("duplicate_group") or [])
    count = hit.get("duplicate_count", len(group) if len(group) > 1 else 0)
    if len(group) > GROUP_SHOWN:
        first = group[:GROUP_SHOWN]
        group = first if hit["id"] in first else [*first[: GROUP_SHOWN - 1], hit["id"]]
    return {**hit, "duplicate_group": group, "duplicate_count": count}


class Inbox:
    """The inbox, the idea view and the needs view (reads), review and assignment (writes).

    Args:
        service: the service whose search, records, store and writer the inbox uses.
    """

    def __init__(self, service: Service) -> None:
        self._service = service
        self.store = service.store
        # an upload's ideas are precomputed here, one batch after another, off the request's thread
        self._later = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="idesluss-inbox", initializer=lower_this_thread
        )
        self._pending: list[Future[int]] = []

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._service.writer.run(fn, *args)

    def precompute_later(self, idea_ids: list[str], batch: int = 64) -> None:
        """Precompute the ideas' suggestions in the background (an upload answers without waiting)."""
        self._pending = [f for f in self._pending if not f.done()]
        for start in range(0, len(idea_ids), batch):
            self._pending.append(self._later.submit(self._precompute_logged, idea_ids[start : start + batch]))

    def _precompute_logged(self, idea_ids: list[str]) -> int:
        """Precompute in small steps; while coaches' requests are served, rest after each step so that
        this takes at most half the upload's share of the time (``Settings.bulk_share``; at full speed
        on an idle server). It is speculative: a page view computes what is missing, and meanwhile it
        holds the server's interpreter lock, the one thing the searches queue for."""
        done = 0
        pace = Pacer(self._service.settings.bulk_share / 2, activity=self._service.requests_served())
        try:
            for start in range(0, len(idea_ids), 8):
                done += self.precompute(idea_ids[start : start + 8])
                pace()
        except Exception:  # noqa: BLE001 - a page view computes what is missing
            log.exception("precomputing inbox suggestions failed; they are computed when the idea is opened")
        return done

    def settle(self) -> None:
        """Wait until the background precomputations queued so far are done."""
        for f in list(self._pending):
            f.result()

    def close(self) -> None:
        """Drop what has not started; wait for what has."""
        self._later.shutdown(wait=True, cancel_futures=True)

    # -- precomputation ---------------------------------------------------------------------------
    def precompute(self, idea_ids: list[str], only_awaiting: bool = True) -> int:
        """Compute and store the suggestions of those ideas that await review; returns how many.

        Meant to run once per arriving idea (after a new idea or an ingest). Ideas with a decided
        status are skipped (unless ``only_awaiting`` is False): they never show in the inbox, and
        their view computes on demand.
        """
        ids = list(dict.fromkeys(idea_ids))
        wanted = self.store.reviews.awaiting(ids) if only_awaiting else ids
        if not wanted:
            return 0
        bases = self.store.reviews.bases(wanted)
        records = [r for r in (self.store.get_record("ideas", i) for i in wanted) if r is not None]  # none erased
        texts = [Search.query_text(r.text, r.title) for r in records]
        # encoded together on this thread (the inbox's worker runs at bulk priority), not in the
        # batches that serve the coaches' requests
        vectors = self._service.bulk_queries(texts) if texts else None
        rows = []
        for n, rec in enumerate(records):
            idea_id = rec.id
            found = self._service.suggest(
                rec.text,
                rec.title,
                k=K_SUGGESTIONS,
                exclude_id=rec.id,
                vector=vectors[n] if vectors is not None else None,
            )
            data = {
                "similar": [_slim(h) for h in found["similar"]],
                "needs": [_slim(h) for h in found["needs"]],
                "duplicates": found["duplicates"],
                "theme": found["theme"],
            }
            theme_id = found["theme"]["id"] if found["theme"] else None
            rows.append((idea_id, bases[idea_id], theme_id, data))
        self._write(self.store.reviews.put_suggestions, rows)
        return len(rows)

    def _suggestions(self, idea_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored suggestions, with missing or stale ones computed now (the fallback)."""
        have = self.store.reviews.suggestions(idea_ids)
        bases = self.store.reviews.bases(idea_ids)
        stale = [i for i in idea_ids if i in bases and (i not in have or have[i][0] != bases[i])]
        if stale:
            self.precompute(stale, only_awaiting=False)
            have = self.store.reviews.suggestions(idea_ids)
        return {i: {**have[i][1], "computed_at": have[i][2]} for i in idea_ids if i in have}

    def forget(self, idea_id: str) -> None:
        """Drop an idea's inbox rows (called before its erasure)."""
        self._write(self.store.reviews.forget, idea_id)

    # -- reads -----------------------------------------------------------------------------------
    def _hydrate(self, kind: str, slim: list[dict[str, Any]], links: dict[str, str] | None = None) -> list[dict]:
        """Suggestions with the current title, snippet, status and outcome of each target (erased ones dropped)."""
        records = {r.id: r for r in self.store.records(kind, [s["id"] for s in slim])}
        out = []
        for s in slim:
            rec = records.get(s["id"])
            if rec is None:
                continue
            text = rec.text if len(rec.text) <= 220 else rec.text[:219].rsplit(" ", 1)[0] + "…"
            row = {**_capped_group(s), **{k: v for k, v in rec.public().items() if k != "text"}, "snippet": text}
            row["created_at"] = rec.created_at.date().isoformat() if rec.created_at else None
            row["link"] = (links or {}).get(s["id"])
            out.append(row)
        if links is not None:  # a confirmed link first, a rejected one last
            order = {"confirmed": 0, None: 1, "rejected": 2}
            out.sort(key=lambda r: order[r["link"]])
        return out

    def _card(self, idea_id: str, data: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        rec = self.store.get_record("ideas", idea_id)
        if rec is None:
            raise NotFound(f"no idea with id {idea_id!r}")
        links = {need: state for (_, need), state in self.store.feedback.links(idea_id=idea_id).items()}
        labels = {t.theme_id: t.label for t in self.store.themes.current_themes()}
        theme_id = self.store.themes.theme_of("ideas", idea_id)
        theme = data.get("theme")
        if theme_id:
            theme = {"id": theme_id, "label": labels.get(theme_id, theme_id), "provisional": False, "similarity": None}
        elif theme and theme["id"] in labels:  # provisional, from when the idea arrived: the current name
            theme = {**theme, "label": labels[theme["id"]]}
        else:
            theme = None
        return {
            "idea": rec.public(),
            "similar": self._hydrate("ideas", data.get("similar", [])),
            "needs": self._hydrate("needs", data.get("needs", []), links),
            "duplicates": [d for d in data.get("duplicates", []) if d != idea_id],
            "theme": theme,
            "computed_at": data.get("computed_at"),
            "reviewed_at": review.get("reviewed_at"),
            "reviewed_by": review.get("reviewed_by"),
            "assigned_to": review.get("assigned_to"),
        }

    def page(self, filters: dict[str, Any], page: int, page_size: int) -> dict[str, Any]:
        """One page of the inbox, newest first, each idea with its suggestions.

        Args:
            filters: ``department``, ``source``, ``date_from``, ``date_to`` (dates), ``theme``.
            page: 1-based page number.
            page_size: ideas per page.

        Returns:
            ``items`` (cards), ``total`` waiting under the filters, ``page``, ``page_size`` and the
            filter choices (``departments``, ``sources``).
        """
        clean = dict(filters)
        for key, end in (("date_from", datetime.min.time()), ("date_to", datetime.max.time())):
            if isinstance(clean.get(key), date):
                clean[key] = datetime.combine(clean[key], end)
        for key in ("department", "source"):
            if clean.get(key):
                clean[key] = mask(clean[key]).text  # stored values are masked: compare like with like
        ids, total = self.store.reviews.inbox_page(clean, page_size, (page - 1) * page_size)
        data = self._suggestions(ids)
        reviews = self.store.reviews.review_state(ids)
        items = [self._card(i, data.get(i, {}), reviews.get(i, {})) for i in ids]
        facets = self.store.reviews.inbox_facets()
        return {
            "items": items,
            "total": total,
            "page": page,
            "page_size": page_size,
            "departments": facets["department"],
            "sources": facets["source"],
        }

    def view(self, idea_id: str) -> dict[str, Any]:
        """One idea: its masked text, suggestions with why, review state and history (newest first)."""
        rec = self.store.get_record("ideas", idea_id)
        if rec is None:
            raise NotFound(f"no idea with id {idea_id!r}")
        data = self._suggestions([idea_id]).get(idea_id, {})
        card = self._card(idea_id, data, self.store.reviews.review_state([idea_id]).get(idea_id, {}))
        card["history"] = self.store.reviews.history(idea_id)
        card["awaiting"] = bool(self.store.reviews.awaiting([idea_id]))
        return card

    # -- writes (audited) ---------------------------------------------------------------------------
    def mark_reviewed(self, idea_id: str, actor: str, reviewed: bool = True) -> None:
        """Mark an idea reviewed (it leaves the inbox) or waiting again; audited."""
        self._service.record("ideas", idea_id)

        def apply() -> None:
            self.store.reviews.mark_reviewed(idea_id, actor, reviewed)
            self.store.audit.record(actor, "reviewed" if reviewed else "back to inbox", "ideas", idea_id)

        self._write(apply)

    def assign(self, idea_id: str, coach: str, actor: str) -> None:
        """Hand an idea to a coach (a name, masked like any text shown); audited."""
        self._service.record("ideas", idea_id)
        name = mask(coach.strip()).text
        if not name:
            raise ValueError("coach: give the name of the coach to assign the idea to")

        def apply() -> None:
            self.store.reviews.assign(idea_id, name, actor)
            self.store.audit.record(actor, f"assigned to {name}", "ideas", idea_id)

        self._write(apply)

    # -- needs view ----------------------------------------------------------------------------------
    def needs(self, sort: str = "raised", only_unmet: bool = False) -> dict[str, Any]:
        """Every need with the ideas confirmed to answer it, and how many citizens raised it.

        "Raised by" is the need's ``count`` attribute where the file carried one (allow-listed),
        else the size of its near-duplicate group in the index (the need and the needs that say the
        same thing, dense cosine over the duplicate threshold); ``raised_basis`` says which.

        Args:
            sort: ``raised`` (most raised first), ``unmet`` (unmet first, then most raised), ``id``.
            only_unmet: only needs that no confirmed idea answers.
        """
        if sort not in ("raised", "unmet", "id"):
            raise ValueError("sort: use 'raised', 'unmet' or 'id'")
        links = self.store.reviews.confirmed_links()
        snap = self._service.collections()["needs"].snapshot
        needs = self.store.records("needs")
        titles = {
            r.id: r.title or r.text[:80] for r in self.store.records("ideas", {i for v in links.values() for i in v})
        }
        rows = []
        for n in needs:
            count = n.attributes.get("count") if n.attributes else None
            if isinstance(count, int | float | str) and str(count).strip().isdigit():
                raised, basis = int(str(count).strip()), "count"
            else:
                row = snap.row(n.id)
                raised, basis = (snap.group_size(row) if row is not None else 1), "duplicates"
            ideas = [{"id": i, "title": titles.get(i, i)} for i in links.get(n.id, []) if i in titles]
            rows.append(
                {
                    "id": n.id,
                    "title": n.title,
                    "text": n.text,
                    "department": n.department,
                    "source": n.source,
                    "created_at": n.created_at.date().isoformat() if n.created_at else None,
                    "raised": raised,
                    "raised_basis": basis,
                    "ideas": ideas,
                    "unmet": not ideas,
                }
            )
        if only_unmet:
            rows = [r for r in rows if r["unmet"]]
        if sort == "raised":
            rows.sort(key=lambda r: (-_count(r["raised"]), str(r["id"])))
        elif sort == "unmet":
            rows.sort(key=lambda r: (not r["unmet"], -_count(r["raised"]), str(r["id"])))
        return {
            "items": rows,
            "total": len(rows),
            "unmet": sum(r["unmet"] for r in rows),
        }
