"""The real BERTopic, with its documented defaults, as the theme anchor (evaluation only).

BERTopic is an optional, evaluation-only dependency (``pip install -e '.[eval]'``); the service never
imports it. It is handed the project's own vectors, so it loads and downloads no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

INSTALL_HINT = "the BERTopic anchor needs the eval extra: pip install -e '.[eval]' (bertopic)"


def bertopic_topics(
    texts: Sequence[str], embeddings: np.ndarray, min_topic_size: int = 10, seed: int = 42
) -> tuple[np.ndarray, list[list[str]]]:
    """Fit BERTopic on precomputed embeddings.

    Every setting is BERTopic's default (UMAP 15 neighbours, 5 components, min_dist 0, cosine;
    HDBSCAN with min_cluster_size = min_topic_size, euclidean, leaf 'eom'; CountVectorizer with no
    stop-word list; c-TF-IDF) except UMAP's ``random_state``, fixed so the figure is reproducible.

    Returns:
        (topic per text, -1 for outliers; the top words of each topic in topic order).
    """
    try:
        from bertopic import BERTopic
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    model = BERTopic(umap_model=umap_model, min_topic_size=min_topic_size, verbose=False)
    topics, _ = model.fit_transform(list(texts), np.asarray(embeddings, dtype=np.float32))
    labels = np.asarray(topics, dtype=int)
    keywords = [[w for w, _ in model.get_topic(t) or []] for t in sorted(set(labels.tolist()) - {-1})]
    return labels, keywords
