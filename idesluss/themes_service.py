"""Theme functions of the service: run the job, list and explain themes, curation, provisional themes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idesluss.errors import NotFound
from idesluss.resources import Resources
from pipelines.masking import mask
from store import Store


def ray_options(settings: Any, address: str | None = None, scratch: str | None = None) -> Any:
    """The Ray engine's options for these settings: each encoder actor builds the service's encoder.

    Raises:
        ValueError: Ray (the ``scale`` extra) is not installed; the message says how to install it.
    """
    from pipelines.themes.ray_engine import INSTALL_HINT, RayOptions, ray_available

    if not ray_available():
        raise ValueError(INSTALL_HINT)
    from pipelines.themes.ray_ops import EncoderSpec

    spec = EncoderSpec(
        model=settings.model,
        cache_dir=str(settings.cache_dir),
        theme_model=settings.theme_model,
        batch_size=settings.batch_size,
        threads=settings.threads or 1,
        precision=settings.precision,
        engine=settings.engine,
    )
    return RayOptions(address=address, encoder_factory=spec, scratch=scratch)


# growth is shown only where both quarters hold at least this many new ideas and needs: below it a
# percentage swings wildly on one item (2 -> 3 is "+50 %"), so the counts are shown instead
MIN_GROWTH_ITEMS = 5


class ThemeService:
    """Theme functions shared by the CLI and the API (the service delegates to one of these).

    Args:
        store: the open store (theme runs, memberships, trends, curation).
        resources: the service's encoders (the theme encoder for the job and provisional themes).
        changed: called after every write (cached answers are stale).
    """

    def __init__(self, store: Store, resources: Resources, changed: Callable[[], None]) -> None:
        self.store = store
        self._resources = resources
        self._changed = changed

    def cluster(
        self,
        progress: Any = None,
        show_bar: bool | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        ray_scratch: str | None = None,
        ray: Any = None,
    ) -> dict[str, Any]:
        """Run the nightly theme job now, here (``engine="local"``) or on a Ray cluster (``"ray"``).

        Args:
            ray: the Ray engine's options (default: from the settings, at ``ray_address``).

        Raises:
            ValueError: ``engine="ray"`` without the ``scale`` extra (the message says how to install it).
        """
        from pipelines.themes.job import run_theme_job

        if engine == "ray" and ray is None:
            ray = ray_options(self._resources.settings, ray_address, ray_scratch)
        return run_theme_job(
            self.store, self._resources.theme_encoder, progress=progress, show_bar=show_bar, engine=engine, ray=ray
        )

    def theme_runs(self, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
        """One page of theme-run records, newest first, and how many runs there are."""
        rows = self.store.themes.theme_runs(limit=page_size, offset=(page - 1) * page_size)
        return rows, self.store.themes.count_theme_runs()

    def themes(self, with_members: bool = False) -> list[dict[str, Any]]:
        """The current themes, largest first (DESIGN.md shape), with trend summaries."""
        from pipelines.themes.labels import representative_title

        members = self.store.themes.current_members() if with_members else {}
        trends = self.store.trends.theme_trends()
        current = self.store.themes.current_themes()
        titles = self._titles({(r["kind"], r["id"]) for t in current for r in t.representatives})
        out = []
        for t in current:
            tr = trends.get(t.theme_id, {})
            last, before = int(tr.get("last_quarter_count", 0)), int(tr.get("previous_quarter_count", 0))
            row: dict[str, Any] = {
                "id": t.theme_id,
                "label": t.label,
                "keywords": t.keywords,
                "size": t.size,
                "representative_title": representative_title(t.representatives, lambda k, i: titles.get((k, i))),
                "ideas": tr.get("ideas", 0),
                "needs": tr.get("needs", 0),
                # growth only where both quarters hold enough new items to compare; else the counts
                "growth": tr.get("growth") if min(last, before) >= MIN_GROWTH_ITEMS else None,
                "last_quarter_count": last,
                "previous_quarter_count": before,
                "unmet_needs": tr.get("unmet_needs", False),
                "departments": tr.get("departments", {}),
            }
            if with_members:
                row["members"] = sorted(
                    k.split(":", 1)[1] for k in members.get(t.theme_id, set()) if k.startswith("ideas:")
                )
                row["need_members"] = sorted(
                    k.split(":", 1)[1] for k in members.get(t.theme_id, set()) if k.startswith("needs:")
                )
            out.append(row)
        return out

    def _titles(self, refs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Title (else text) of each (kind, id), fetched in one query per kind; erased records are absent."""
        out: dict[tuple[str, str], str] = {}
        for kind in ("ideas", "needs"):
            ids = [i for k, i in refs if k == kind]
            for rec in self.store.records(kind, ids) if ids else []:
                out[(kind, rec.id)] = rec.title or rec.text
        return out

    def theme_detail(
        self, theme_id: str, trends: dict[str, dict[str, Any]] | None = None, idea_members: bool = True
    ) -> dict[str, Any]:
        """One theme: keywords, representatives (masked texts), trend and members.

        Args:
            trends: every theme's trend (:meth:`store.trends.TrendRepository.theme_trends`), when the
                caller has them cached; computed here otherwise (a pass over the run's members).
            idea_members: False leaves ``members`` (the theme's idea ids) empty and reads only its needs.
        """
        found = [t for t in self.store.themes.current_themes() if t.theme_id == theme_id]
        if not found:
            raise NotFound(f"no theme with id {theme_id!r} in the current run")
        t = found[0]
        reps = []
        for r in t.representatives:
            rec = self.store.get_record(r["kind"], r["id"])
            if rec:
                reps.append({"kind": r["kind"], "id": rec.id, "title": rec.title, "text": rec.text})
        members = self.store.themes.memberships(theme_id, kind=None if idea_members else "needs")
        return {
            "id": t.theme_id,
            "label": t.label,
            "keywords": t.keywords,
            "size": t.size,
            "representatives": reps,
            "trend": (trends if trends is not None else self.store.trends.theme_trends()).get(theme_id, {}),
            "members": [m["item_id"] for m in members if m["kind"] == "ideas"],
            "need_members": [m["item_id"] for m in members if m["kind"] == "needs"],
        }

    def curate(
        self,
        action: str,
        actor: str,
        theme_id: str,
        other_theme_id: str | None = None,
        kind: str | None = None,
        item_id: str | None = None,
        name: str | None = None,
    ) -> str:
        """Rename, merge, move or pin; applied now and respected by every later run."""
        current = {t.theme_id for t in self.store.themes.current_themes()}
        for tid in (theme_id, other_theme_id):
            if tid is not None and tid not in current:
                raise NotFound(f"no theme with id {tid!r} in the current run")
        if action in ("move", "pin"):
            if kind not in ("ideas", "needs") or not item_id:
                raise ValueError("move and pin need kind ('ideas' or 'needs') and item_id")
            if self.store.get_record(kind, item_id) is None:
                raise NotFound(f"no {kind[:-1]} with id {item_id!r}")
        if action == "rename" and not (name or "").strip():
            raise ValueError("rename needs a non-empty name")
        if action == "merge" and (not other_theme_id or other_theme_id == theme_id):
            raise ValueError("merge needs other_theme_id, a different theme")
        shown = mask(name.strip()).text if name else None  # a theme name is shown to leadership
        cid = self.store.themes.add_curation(action, actor, theme_id, other_theme_id, kind, item_id, shown)
        self.store.audit.record(actor, f"curate {action}", "themes", theme_id)
        self._changed()
        return cid

    def overview(self) -> dict[str, Any]:
        """Everything the leadership overview draws, for the current run (aggregates and titles only)."""
        rows = self.themes()
        runs = self.store.themes.theme_runs(limit=1)
        trends = self.store.trends.theme_trends()
        members = [m for m in self.store.themes.memberships() if m["x"] is not None and m["theme_id"]]
        titles = {}
        for kind in ("ideas", "needs"):
            wanted = {m["item_id"] for m in members if m["kind"] == kind}
            for r in self.store.records(kind, wanted):
                titles[(kind, r.id)] = r.title or r.text[:80]
        departments = sorted({d for t in rows for d in t["departments"]})
        return {
            "run_id": runs[0]["run_id"] if runs else None,
            "created_at": runs[0]["created_at"].isoformat() if runs else None,
            "themes": rows,
            "trends": {
                t["id"]: {
                    "ideas": trends.get(t["id"], {}).get("ideas_per_month", {}),
                    "needs": trends.get(t["id"], {}).get("needs_per_month", {}),
                }
                for t in rows
            },
            "map": [
                {
                    **{k: m[k] for k in ("x", "y", "theme_id", "kind")},
                    "title": titles.get((m["kind"], m["item_id"]), ""),
                }
                for m in members
            ],
            "departments": departments,
            "heatmap": [[t["departments"].get(d, 0) for d in departments] for t in rows],
            "unmet": [t for t in rows if t["unmet_needs"]],
        }

    def provisional_theme(self, text: str | None = None, vector: Any = None) -> dict[str, Any] | None:
        """Nearest current theme for a new text, when it clears that theme's threshold."""
        enc = self._resources.theme_encoder
        themes, centroids = self.store.themes.current_centroids(enc.dim)
        if not themes:
            return None
        if vector is None:
            vector = enc.encode_queries([text or ""])[0]
        sims = centroids @ vector
        best = int(sims.argmax())
        if sims[best] < themes[best].assign_threshold:
            return None
        return {
            "id": themes[best].theme_id,
            "label": themes[best].label,
            "similarity": round(float(sims[best]), 4),
            "provisional": True,
        }
