"""The service's models: the encoder (loaded once, on first use), the theme encoder and the matcher."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from idesluss.settings import Settings
from matcher.hybrid import FusionConfig, HybridMatcher
from models.encoder import TextEncoder


class Resources:
    """The encoders and the fusion the service's parts share.

    Args:
        settings: the service settings (model, cache, batching, fusion weights).
        encoder: an encoder (loaded from ``settings.model`` on first use when omitted).
    """

    def __init__(self, settings: Settings, encoder: TextEncoder | None = None) -> None:
        self.settings = settings
        self._encoder: Any = encoder
        self._owns_encoder = False
        self._encoder_lock = threading.Lock()  # one load, whichever thread asks first (the index build's loader)
        self._theme_encoder: TextEncoder | None = None
        weights = {k: getattr(settings, k) for k in ("dense_weight", "lexical_weight", "char_weight")}
        if encoder is None and not weights.keys() & settings.model_fields_set:  # explicit settings win
            from models.registry import learned_fusion

            weights.update(learned_fusion(settings.model, settings.cache_dir) or {})
        self.matcher_config = FusionConfig(method=settings.fusion_method, **weights)

    @property
    def encoder(self) -> TextEncoder:
        """The encoder, loaded once."""
        if self._encoder is not None:
            return self._encoder  # type: ignore[no-any-return]
        with self._encoder_lock:
            return self._load_encoder()

    def _load_encoder(self) -> TextEncoder:
        if self._encoder is None:
            from models.batching import MicroBatcher
            from models.registry import load_encoder

            # concurrent requests' query encodings share forward passes (a wait of at most 2 ms)
            self._owns_encoder = True
            kwargs: dict[str, Any] = {
                "name": self.settings.model,
                "cache_dir": self.settings.cache_dir,
                "batch_size": self.settings.batch_size,
                "threads": self.settings.threads,
                "precision": self.settings.precision,
                "engine": self.settings.engine,
            }
            # (not with the static theme model, which is distilled from the encoder's own weights)
            if self.settings.encoder_process and self.settings.theme_model == "same":
                from models.process_encoder import EncoderProcess

                # the server: forward passes in a process of their own, one torch thread unless set
                # (models/process_encoder.py has the measurement)
                kwargs["threads"] = self.settings.threads or 1
                kwargs["lean"] = True  # it only encodes: no sentence-transformers there (models/lean.py)
                inner: Any = EncoderProcess(
                    "models.registry:load_encoder", kwargs, bulk_setup="idesluss.priority:lower_this_thread"
                )
            else:
                inner = load_encoder(**kwargs)
            self._encoder = MicroBatcher(inner)
        return self._encoder

    def bulk_queries(self, texts: list[str]) -> Any:
        """Query vectors encoded on the calling thread, past the batcher that serves requests.

        For bulk work (an upload's precomputed suggestions) on a thread of lower priority: the
        forward passes then run at that thread's priority, in batches of their own, instead of
        joining the requests' batches at theirs.
        """
        inner = getattr(self.encoder, "inner", self.encoder)
        bulk = getattr(inner, "bulk_queries", None)  # an encoder process: its bulk connection
        return bulk(texts) if bulk is not None else inner.encode_queries(texts)

    def requests_served(self) -> Callable[[], int] | None:
        """A counter that moves on with every request whose query the batcher encodes (None where no
        batcher serves requests: the CLI on the file, or an encoder handed in). Bulk work paces
        itself by it (:class:`idesluss.priority.Pacer`)."""
        stats = getattr(self.encoder, "stats", None)
        if stats is None:
            return None
        return lambda: int(stats.requests)

    @property
    def theme_encoder(self) -> TextEncoder:
        """The encoder whose vectors the nightly themes use: the service's, or its static model."""
        if self.settings.theme_model == "same":
            return self.encoder
        if self._theme_encoder is None:
            from models.registry import load_static_encoder

            self._theme_encoder = load_static_encoder(self.encoder, self.settings.cache_dir)  # type: ignore[arg-type]
        return self._theme_encoder

    def matcher(self, fusion: FusionConfig | None = None) -> HybridMatcher:
        """A hybrid matcher with the configured (or the given) fusion."""
        return HybridMatcher(self.encoder, fusion or self.matcher_config)

    def close(self) -> None:
        """Stop the encoder's batching thread, when this object started one."""
        if self._owns_encoder and self._encoder is not None:
            self._encoder.close()
            close_inner = getattr(getattr(self._encoder, "inner", None), "close", None)
            if close_inner is not None:  # an encoder process
                close_inner()
