"""Uploads (`POST /api/v1/ingest`, ingestors and admins) and originals
(`GET /api/v1/documents/{doc_id}/download`, whoever may read the document; 404 otherwise)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ingest import jobs, uploads
from ingest.converters import Limits
from kms.api.deps import AuditDep, DocumentReader, IngestorOrAdmin, ServicesDep
from kms.api.routes.jobs import JobDetailOut
from kms.db.registry import readable_document
from kms.errors import InvalidInput, KmsError, NotFound
from kms.services import Services

router = APIRouter(prefix="/api/v1", tags=["ingest"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "metadata": {"type": "string", "description": "JSON object: fields for every file"},
                        "file_metadata": {
                            "type": "string",
                            "description": "JSON object: file name -> fields for that file (doc_id, …)",
                        },
                        "classification": {"type": "string"},
                        "owner_unit": {"type": "string"},
                        "allow": {"type": "array", "items": {"type": "string"}},
                        "doc_type": {"type": "string"},
                        "title": {"type": "string"},
                        "language": {"type": "string"},
                        "issuer": {"type": "string"},
                        "issued_date": {"type": "string", "format": "date"},
                    },
                }
            }
        },
    }
}


def upload_limits(services: Services) -> uploads.UploadLimits:
    settings = services.settings
    return uploads.UploadLimits(
        max_file_bytes=settings.max_upload_bytes,
        max_request_bytes=settings.max_upload_request_bytes,
        max_files=settings.max_upload_files,
    )


@router.post("/ingest", status_code=202, response_model=JobDetailOut, openapi_extra=_UPLOAD_BODY)
async def upload(
    request: Request, principal: IngestorOrAdmin, services: ServicesDep, audit: AuditDep
) -> JobDetailOut:
    """Queue files for ingestion. Each file streams into the content store under the size limits
    (413 as soon as one is passed); each is checked by content; a refused file fails alone, in the
    job. Answers 202 with the job (poll `GET /api/v1/jobs/{id}`)."""
    received = await uploads.receive_multipart(
        request.stream(),
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        limits=upload_limits(services),
        originals=services.originals,
    )
    if not received.files:
        raise InvalidInput("no files in the upload (send them as form field `files`)")

    def queue() -> dict[str, Any]:
        specs = uploads.upload_specs(
            received,
            principal,
            classification=services.classification,
            originals=services.originals,
            limits=Limits(max_file_bytes=services.settings.max_upload_bytes),
            allow_images=services.settings.ocr_enabled,
        )
        job_id, _ = jobs.submit(
            services.sessions,
            specs,
            submitter=principal,
            priority=jobs.PRIORITY_UPLOAD,
            max_attempts=services.settings.job_max_attempts,
        )
        jobs.audit_refused(services.sessions, job_id, actor=audit.actor)
        job, files = jobs.get(services.sessions, job_id, principal)
        return jobs.job_detail(job, files, principal, services.classification)

    detail = await run_in_threadpool(queue)
    audit.record(
        "job.submit",
        str(detail["id"]),
        files=detail["files_total"],
        refused=detail["files_failed"],
        kind="upload",
    )
    return JobDetailOut.model_validate(detail)


_MEDIA = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}


@router.get("/documents/{doc_id}/download", tags=["documents"], response_class=FileResponse)
def download(doc_id: str, principal: DocumentReader, services: ServicesDep, audit: AuditDep) -> FileResponse:
    """The original file, as an attachment. Missing and unreadable documents are both 404."""
    with services.sessions() as session:
        row = readable_document(session, doc_id, principal, services.classification)
        found = None if row is None else (row.original_sha256, row.file_name, row.version)
    if found is None:
        audit.record("document.download", doc_id, outcome="not_found")
        raise NotFound()
    sha256, file_name, version = found
    path = services.originals.path(sha256 or "")
    if not sha256 or not path.is_file():
        audit.record("document.download", doc_id, outcome="original_missing")
        raise KmsError(f"the original of {doc_id} is missing from the content store (run `kms check`)")
    name = uploads.safe_name(file_name or doc_id, default="document")
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    # HTML, e-mail and anything unknown are never served as something a browser would render
    media = _MEDIA.get(suffix, "application/octet-stream")
    audit.record("document.download", doc_id, outcome="ok", version=version, sha256=sha256)
    return FileResponse(
        path,
        media_type=media,
        filename=name,
        headers={"x-content-type-options": "nosniff", "content-security-policy": "sandbox"},
        content_disposition_type="attachment",
    )
