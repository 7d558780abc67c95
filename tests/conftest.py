"""Shared fixtures: offline mode, the fake encoder, the real model (once per session), data paths."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.fakes import KeywordEncoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MODEL_CACHE = Path(os.environ.get("IDESLUSS_CACHE_DIR", REPO / ".cache" / "models"))


@pytest.fixture
def fake_encoder() -> KeywordEncoder:
    return KeywordEncoder()


@pytest.fixture(scope="session")
def real_encoder():
    """The embedded default model, built into the project cache once and loaded once."""
    from models.registry import load_encoder

    return load_encoder("default", MODEL_CACHE)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return MODEL_CACHE


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip: a user's clone has no ../shared (CI has it)."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: the public evaluation data lives in ../shared/data next to the clone")
    return path


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, real_encoder):
    """One real server for the browser and load tests (the model cache is built by real_encoder)."""
    from tests.live import start_live_server

    work = tmp_path_factory.mktemp("live")
    xss = work / "xss.csv"
    evil = "<a href='https://evil.example/'>Evilförvaltningen</a>"  # must show as text in the charts
    xss.write_text(
        "id;title;text;department\nXSS1;<script>alert(1)</script>;Cykelväg med <b>fet</b> text och "
        "<img src=x onerror=alert(2)> till Öjebyn;\n"
        f"XSS2;Cykelväg från Öjebyn;Det behövs en gång- och cykelväg från Öjebyn till centrum.;{evil}\n"
        f"XSS3;Trygg cykelväg Öjebyn;Bygg en säker gång- och cykelväg från Öjebyn in till centrum.;{evil}\n",
        encoding="utf-8",
    )
    server = start_live_server(work, MODEL_CACHE, extra_ideas=xss)
    yield server
    server.stop()
