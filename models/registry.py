"""Models by configuration value: the embedded default, or any sentence-transformers name or path."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from models.build import DEFAULT_MODEL_ID, ensure_default_model
from models.encoder import Encoder

log = logging.getLogger(__name__)

DEFAULT = "default"
ALIASES = {DEFAULT, DEFAULT_MODEL_ID, "multilingual-e5-small-q4"}


def resolve_model_path(name: str, cache_dir: Path) -> tuple[str, str]:
    """Map a configured model value to (path or hub name, model id recorded with vectors).

    Args:
        name: ``"default"`` (the embedded e5-small), a local sentence-transformers directory, or a
            hub name (only usable where a hub is reachable or the model is already cached).
        cache_dir: where the default model is built.
    """
    if name in ALIASES:
        return str(ensure_default_model(cache_dir)), DEFAULT_MODEL_ID
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ValueError(f"model path {path} is not a sentence-transformers directory (no modules.json)")
        return str(path.resolve()), f"path:{path.resolve().name}"
    return name, name


def cpu_has_bf16() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """'auto' becomes 'bf16' on CPUs with bfloat16 instructions and 'fp32' elsewhere."""
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; use 'auto', 'fp32' or 'bf16'")
    return precision


def load_encoder(
    name: str,
    cache_dir: Path,
    batch_size: int = 32,
    threads: int | None = None,
    precision: str = "fp32",
    engine: str = "auto",
) -> Encoder:
    """Load the configured model once and wrap it in an :class:`Encoder`."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    if threads:
        torch.set_num_threads(threads)
    location, model_id = resolve_model_path(name, cache_dir)
    try:
        model = SentenceTransformer(location, device="cpu")
    except OSError as exc:
        raise RuntimeError(
            f"could not load model {name!r}: {exc}. No model hub is reachable at run time; "
            "give a local sentence-transformers directory or use the default model."
        ) from exc
    model.eval()
    return Encoder(
        model, model_id=model_id, batch_size=batch_size, precision=resolve_precision(precision), engine=engine
    )


def load_static_encoder(encoder: Encoder, cache_dir: Path) -> Any:
    """The static model distilled from ``encoder`` (distilled into the cache on first use)."""
    from models.static import StaticEncoder, ensure_static_model

    return StaticEncoder(ensure_static_model(encoder, cache_dir))
