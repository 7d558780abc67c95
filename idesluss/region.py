"""The region's view: which themes recur in several municipalities, from their shared ideas only.

A region key (role ``region``) names the tenants it spans. Each tenant's themes come from its own
nightly run; only the ideas a tenant shares are looked at (an unshared idea is not counted, not
shown and not part of any vector used here). For each tenant theme with at least one shared idea,
the mean of its shared ideas' vectors stands for it; two themes of different municipalities are
taken to be the same subject when those means are at least as close as an idea must be to a theme
to join it (``theme_assign_threshold``, the service's own setting, not fitted to any data). Linked
themes form one regional theme (single linkage), named by the title of the shared idea nearest its
centre: the tenants' own labels are not shown, because they were drawn from unshared ideas too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from idesluss.service import Service


def _shared_rows(service: Service, members: list[str]) -> tuple[list[int], Any]:
    """Rows (in the tenant's idea snapshot) of the members that the tenant shares, and the snapshot."""
    snap = service.collections()["ideas"].snapshot
    default = service.store.tenants.shared_default(service.tenant)
    rows = []
    for idea_id in members:
        row = snap.row(idea_id)
        if row is None:
            continue
        flag = snap.items[row].shared
        if flag == "true" or (flag is None and default):
            rows.append(row)
    return rows, snap


def region_overview(service: Service, tenants: list[str], threshold: float) -> dict[str, Any]:
    """Regional themes across ``tenants``' shared ideas, those in the most municipalities first.

    Returns:
        ``{"tenants": [...], "themes": [{"label", "municipalities", "shared_ideas", "by_tenant":
        {tenant: count}, "ideas": [{"tenant", "id", "title", "status", "outcome"}, ...]}, ...]}``.
    """
    parts: list[dict[str, Any]] = []
    for tenant in tenants:
        svc = service.for_tenant(tenant)
        for theme in svc.themes(with_members=True):
            rows, snap = _shared_rows(svc, theme["members"])
            if not rows:
                continue
            vectors = np.asarray(snap.vectors[rows], dtype=np.float32)
            centre = vectors.mean(axis=0)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            parts.append(
                {"tenant": tenant, "centre": centre, "vectors": vectors, "items": [snap.items[r] for r in rows]}
            )
    parent = list(range(len(parts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if parts:
        centres = np.stack([p["centre"] for p in parts])
        sims = centres @ centres.T
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                if parts[i]["tenant"] != parts[j]["tenant"] and sims[i, j] >= threshold:
                    parent[find(i)] = find(j)
    groups: dict[int, list[dict[str, Any]]] = {}
    for i, part in enumerate(parts):
        groups.setdefault(find(i), []).append(part)
    themes = []
    for members in groups.values():
        vectors = np.concatenate([m["vectors"] for m in members])
        items = [(m["tenant"], it) for m in members for it in m["items"]]
        centre = vectors.mean(axis=0)
        nearest = int(np.argmax(vectors @ centre))
        _, rep = items[nearest]
        by_tenant: dict[str, int] = {}
        for tenant, _ in items:
            by_tenant[tenant] = by_tenant.get(tenant, 0) + 1
        themes.append(
            {
                "label": rep.title or rep.text[:80],
                "municipalities": len(by_tenant),
                "shared_ideas": len(items),
                "by_tenant": dict(sorted(by_tenant.items())),
                "ideas": [
                    {"tenant": t, "id": it.id, "title": it.title, "status": it.status, "outcome": it.outcome}
                    for t, it in sorted(items, key=lambda p: (p[0], p[1].id))
                ],
            }
        )
    themes.sort(key=lambda t: (-t["municipalities"], -t["shared_ideas"], t["label"]))
    return {"tenants": list(tenants), "themes": themes}
