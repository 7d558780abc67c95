"""Admin routes: uploads, the theme job, run history, curation, erasure, keys, audit."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, UploadFile

from api.deps import Admin, LimitedAdmin, ServiceDep
from api.errors import PROBLEM_RESPONSES
from api.schemas import MAX_PAGE_SIZE, CurateIn, IngestOut, JobOut, KeyIn, KeyOut, NewKeyOut, Page, RunOut
from pipelines.records import FileRejected
from pipelines.themes.job import ThemeJobRunning

router = APIRouter(prefix="/admin", tags=["admin"], responses=PROBLEM_RESPONSES)
PageNo = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
ALLOWED_SUFFIXES = (".csv", ".jsonl", ".json")


@router.post("/ingest/{kind}", response_model=IngestOut, summary="Ladda upp idéer eller behov (.csv/.jsonl/.json)")
def ingest(kind: Literal["ideas", "needs"], file: UploadFile, service: ServiceDep, user: LimitedAdmin) -> IngestOut:
    """A plain (threaded) route: parsing, masking and embedding never run on the event loop.

    The body guard has already refused a body over the limit, counted as it streamed; the upload
    is copied into a private (0700) temporary directory and removed after.
    """
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise HTTPException(415, f"file type {suffix or '(none)'!r} is not accepted; send .csv, .jsonl or .json")
    shown = Path(file.filename or f"upload{suffix}").name
    with tempfile.TemporaryDirectory(prefix="idesluss-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, 1 << 20)
        try:
            report = service.ingest(kind, path, actor=user["name"], shown_path=shown)
        except FileRejected as exc:
            raise HTTPException(400, str(exc).replace(str(path), shown)) from exc
    data = report.as_dict()
    return IngestOut(**{k: data[k] for k in IngestOut.model_fields})


def _job_out(job: dict[str, Any]) -> JobOut:
    return JobOut(**{k: job[k] for k in JobOut.model_fields})


@router.post("/jobs/cluster", response_model=JobOut, status_code=202, summary="Starta nattjobbet nu")
def start_job(
    request: Request,
    user: Admin,
    engine: Annotated[
        Literal["local", "ray"], Query(description="local: in the service; ray: on the Ray cluster (RAY_ADDRESS)")
    ] = "local",
) -> JobOut:
    try:
        return _job_out(request.app.state.jobs.start(actor=user["name"], tenant=user["tenant"], engine=engine))
    except ThemeJobRunning as exc:
        raise HTTPException(409, str(exc)) from exc
    except ValueError as exc:  # Ray is not installed here
        raise HTTPException(400, str(exc)) from exc


@router.get("/jobs/{job_id}", response_model=JobOut, summary="Ett jobbs förlopp")
def job(job_id: str, request: Request, user: Admin) -> JobOut:
    found = request.app.state.jobs.get(job_id, tenant=user["tenant"])
    if found is None:
        raise HTTPException(404, f"no job {job_id!r} since the service started")
    return _job_out(found)


@router.get("/runs", response_model=Page[RunOut], summary="Körhistorik för temajobbet")
def runs(service: ServiceDep, user: Admin, page: PageNo = 1, page_size: PageSize = 20) -> Page[RunOut]:
    rows, total = service.theme_runs(page, page_size)
    items = [
        RunOut(
            run_id=r["run_id"],
            created_at=r["created_at"].isoformat(),
            n_themes=r["n_themes"],
            share_unassigned=r["share_unassigned"],
            quality=r["quality"],
            timings=r["timings"],
            events=r["events"],
        )
        for r in rows
    ]
    return Page[RunOut](items=items, page=page, page_size=page_size, total=total)


@router.post("/themes/{theme_id}/curate", status_code=201, summary="Byt namn, slå ihop, flytta eller fäst")
def curate(theme_id: str, body: CurateIn, service: ServiceDep, user: Admin) -> dict[str, str]:
    cid = service.curate(
        body.action,
        user["name"],
        theme_id,
        other_theme_id=body.other_theme_id,
        kind=body.kind,
        item_id=body.item_id,
        name=body.name,
    )
    return {"curation_id": cid}


_ERASE_DOC = (
    "204 when the record was erased; 404 when there is no such id (also when it was erased before). "
    "The answer comes once the database file has been rewritten without the record's bytes."
)


@router.delete(
    "/ideas/{item_id:path}",
    status_code=204,
    summary="Radera en idé helt (text, vektorer, kopplingar)",
    description=_ERASE_DOC,
)
def erase_idea(item_id: str, service: ServiceDep, user: Admin) -> Response:
    service.erase("ideas", item_id, actor=user["name"])
    return Response(status_code=204)


@router.delete(
    "/needs/{item_id:path}",
    status_code=204,
    summary="Radera ett behov helt (text, vektorer, kopplingar)",
    description=_ERASE_DOC,
)
def erase_need(item_id: str, service: ServiceDep, user: Admin) -> Response:
    service.erase("needs", item_id, actor=user["name"])
    return Response(status_code=204)


@router.get("/keys", response_model=Page[KeyOut], summary="API-nycklar (utan hemligheter)")
def list_keys(service: ServiceDep, user: Admin, page: PageNo = 1, page_size: PageSize = 50) -> Page[KeyOut]:
    rows = service.list_keys()
    items = [
        KeyOut(
            key_id=r["key_id"],
            name=r["name"],
            role=r["role"],
            created_at=r["created_at"].isoformat(),
            revoked_at=r["revoked_at"].isoformat() if r["revoked_at"] else None,
        )
        for r in rows
    ]
    start = (page - 1) * page_size
    return Page[KeyOut](items=items[start : start + page_size], page=page, page_size=page_size, total=len(items))


@router.post("/keys", response_model=NewKeyOut, status_code=201, summary="Skapa en nyckel (visas en gång)")
def create_key(body: KeyIn, service: ServiceDep, user: Admin) -> NewKeyOut:
    key_id, key = service.create_key(body.role, body.name, actor=user["name"])
    return NewKeyOut(key_id=key_id, role=body.role, name=body.name, key=key)


@router.delete("/keys/{key_id}", status_code=204, summary="Återkalla en nyckel")
def revoke_key(key_id: str, service: ServiceDep, user: Admin) -> None:
    if not service.revoke_key(key_id, actor=user["name"]):
        raise HTTPException(404, f"no live key {key_id!r}")


@router.get("/audit", summary="Granskningslogg (id:n, aldrig innehåll)")
def audit(service: ServiceDep, user: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    return [{**r, "at": r["at"].isoformat()} for r in service.audit_log(limit)]
