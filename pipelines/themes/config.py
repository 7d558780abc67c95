"""Parameters of the theme job (recorded with every run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ThemeJobConfig:
    """Parameters of the theme pipeline (recorded with every run).

    Attributes:
        reducer: "umap", "pca" or "none".
        reducer_params: passed to the reducer.
        clusterer: "hdbscan".
        clusterer_params: passed to the clusterer.
        keep_quantile: a theme's assignment threshold is this quantile of its own members' cosine
            to the centroid (outliers and new items must be at least as close to join).
        stay_quantile: the looser quantile an item of last night's theme must reach to stay in it
            (hysteresis: themes do not flicker from night to night).
        map_max_points: items placed on the 2-D map (a seeded sample above this).
        max_fit_items: above this many items, reduction and clustering run on a seeded sample of
            this size and every other item joins its nearest theme under the same thresholds as
            outliers (UMAP's cost grows faster than linearly: measured 276 s for 100,000 items on
            two cores, against about a minute for the sample).
        representatives: items shown per theme.
    """

    reducer: str = "umap"
    reducer_params: dict[str, Any] = field(
        default_factory=lambda: {"n_components": 5, "n_neighbors": 15, "random_state": 42}
    )
    clusterer: str = "hdbscan"
    clusterer_params: dict[str, Any] = field(default_factory=lambda: {"min_samples": 3})
    keep_quantile: float = 0.05
    stay_quantile: float = 0.02
    map_max_points: int = 5_000
    max_fit_items: int = 20_000
    representatives: int = 5
