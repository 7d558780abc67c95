"""The lighter install: locks that agree with pyproject, extras that are asked for, plotly.js fetched."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

MOVED = {"onnx", "onnxscript", "onnxruntime", "model2vec", "matplotlib", "plotly"}


def _pins(path: Path) -> dict[str, str]:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {re.split("==", ln)[0].lower().replace("_", "-"): ln.split("==", 1)[1] for ln in lines}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_service_lock_pins_every_core_dependency_and_nothing_moved_out() -> None:
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    service = _pins(REPO / "requirements" / "service.lock")
    assert {_name(r) for r in core} <= set(service)
    assert not MOVED & set(service)
    assert service["torch"] == "2.13.0+cpu"


def test_the_dev_lock_keeps_the_service_pins_and_pins_every_extra() -> None:
    service, dev = _pins(REPO / "requirements" / "service.lock"), _pins(REPO / "requirements" / "dev.lock")
    assert {k: dev.get(k) for k in service} == service
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {_name(r) for reqs in extras.values() for r in reqs} - {"idesluss-matcher"}
    assert named <= set(dev), named - set(dev)


def test_the_service_imports_no_package_of_an_extra() -> None:
    code = (
        "import sys, api.app, idesluss.cli, idesluss.service, pipelines.themes.job, matcher.hybrid, models.registry\n"
        "print(sorted(m for m in ('matplotlib', 'plotly', 'onnx', 'onnxruntime', 'model2vec', 'bertopic', 'ray') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("argv", "extra"), [(["evaluate"], "eval"), (["bench", "--only", "encoder"], "bench")])
def test_a_command_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], extra: str
) -> None:
    import importlib.util

    from idesluss.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["--db", str(tmp_path / "x.duckdb"), *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"pip install -e '.[{extra}]'" in err and "onnxruntime" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_a_wrong_wheel_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "requirements"))
    try:
        import fetch_plotly_js as fetch
    finally:
        sys.path.pop(0)
    fake = tmp_path / f"plotly-{fetch.PLOTLY}-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(fetch.MEMBER, "/* not plotly */")
    assert fetch.main(["--wheel", str(fake), "--dest", str(tmp_path / "vendor")]) == 1
    assert not (tmp_path / "vendor").exists()


def test_without_plotly_js_the_app_starts_and_says_what_to_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from api import app as app_module
    from idesluss.settings import Settings

    monkeypatch.setattr(app_module, "PLOTLY_JS", tmp_path / "plotly.min.js")
    with caplog.at_level(logging.WARNING, logger="api.app"):
        client = TestClient(app_module.create_app(Settings(db=tmp_path / "x.duckdb")))
    assert "fetch_plotly_js.py" in caplog.text
    answer = client.get("/vendor/plotly.min.js")
    assert answer.status_code == 503 and "make install" in answer.json()["detail"]
    assert client.get("/health").status_code == 200
