"""`kms jobs list|show|retry|cancel`, `kms worker`, `kms check`, and the queue side of `kms ingest`.

The jobs commands read and write the registry database directly (no index, no model), so they work
while `kms serve` or a `kms worker` owns the embedded index.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ingest import jobs
from ingest.files import Catalog, prepare_paths
from kms.cli.backend import open_backend, running_server
from kms.cli.common import EXIT_FAILED, fail, print_json, run_action
from kms.cli.progress import progress_bar
from kms.config import Settings
from kms.db.job_models import TERMINAL_STATES
from kms.domain import Principal
from kms.errors import StoreBusy
from kms.security.authn import operator_name
from kms.services import Services

app = typer.Typer(
    help="Ingestion jobs: list, show, retry, cancel.", no_args_is_help=True, add_completion=False
)

Overrides = dict[str, Any]


def _operator() -> Principal:
    return Principal.operator(operator_name())


def _context() -> jobs.QueueContext:
    return run_action(lambda: jobs.QueueContext.open(Settings()))


# ---- kms jobs ----------------------------------------------------------------------------------
@app.command("list")
def list_command(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Most recent jobs first."""
    ctx = _context()
    try:
        rows, total = jobs.list_jobs(ctx.sessions, _operator(), state=state, limit=limit)
    finally:
        ctx.close()
    data = [jobs.job_summary(r) for r in rows]
    if as_json:
        print_json({"data": data, "count": total})
        return
    for job in data:
        error = f"  {job['error']}" if job["error"] else ""
        typer.echo(
            f"{job['id']:>6} {job['state']:<10} {job['kind']:<6} "
            f"{job['files_done']:>4}/{job['files_total']:<4} {job['chunks_written']:>6} chunks  "
            f"{job['submitted_by']}{error}"
        )
    typer.echo(f"{total} job(s)", err=True)


@app.command("show")
def show_command(job_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A job's progress and every file's outcome."""
    ctx = _context()
    try:
        job, files = run_action(lambda: jobs.get(ctx.sessions, job_id, _operator()))
        detail = jobs.job_detail(job, files, _operator(), ctx.classification)
    finally:
        ctx.close()
    if as_json:
        print_json(detail)
        return
    for key, value in detail.items():
        if key != "files":
            typer.echo(f"{key}: {value}")
    for file in detail["files"]:
        reason = f"  ({file['error']})" if file["error"] else ""
        typer.echo(
            f"  {file['status'] or file['state']:<9} {file['doc_id'] or '-':<40} {file['name']}{reason}"
        )


def _command(action: Callable[[jobs.QueueContext], Any], audit_action: str, job_id: int) -> None:
    from kms.security import audit

    ctx = _context()
    try:
        job = run_action(lambda: action(ctx))
        audit.append(ctx.sessions, actor=operator_name(), action=audit_action, target=str(job_id))
    finally:
        ctx.close()
    print_json(jobs.job_summary(job))


@app.command("retry")
def retry_command(job_id: int) -> None:
    """Queue a failed, dead or cancelled job again (its failed files are tried again)."""
    _command(lambda ctx: jobs.retry(ctx.sessions, job_id, _operator()), "job.retry", job_id)


@app.command("cancel")
def cancel_command(job_id: int) -> None:
    """Cancel a queued job; a running one stops after its current batch."""
    _command(lambda ctx: jobs.cancel(ctx.sessions, job_id, _operator()), "job.cancel", job_id)


# ---- the queue side of `kms ingest` and `kms sources sync` --------------------------------------------
def enqueue_paths(catalog: Catalog, paths: list[Path], overrides: Overrides, *, priority: int) -> int:
    specs = prepare_paths(catalog, paths, overrides)
    job_id, _ = jobs.submit(
        catalog.sessions,
        specs,
        submitter=_operator(),
        priority=priority,
        max_attempts=catalog.settings.job_max_attempts,
    )
    jobs.audit_refused(catalog.sessions, job_id, actor=operator_name())
    return job_id


def wait_for_job(
    catalog: Catalog, job_id: int, *, progress: bool = True, poll_s: float = 0.5
) -> list[dict[str, Any]]:
    """Wait for a worker (`kms serve`'s or a `kms worker`) to finish a job; its file results."""
    waited, warned = time.monotonic(), False
    with progress_bar(f"job {job_id}", enabled=progress) as report:
        while True:
            job, _files = jobs.get(catalog.sessions, job_id, _operator())
            report(job.files_done, job.files_total)
            if job.state in TERMINAL_STATES:
                break
            if job.state == "queued" and not warned and time.monotonic() - waited > 15:
                typer.echo(f"job {job_id} is still queued: is a worker running (`kms worker`)?", err=True)
                warned = True
            time.sleep(poll_s)
    results = [r.as_dict() for r in jobs.file_results(catalog.sessions, job_id)]
    for result in results:  # files a dead or cancelled job never reached
        if result["status"] == "pending":
            result.update(status="failed", error=f"not processed: job {job.state}: {job.error or ''}".strip())
    return results


def run_queue_until(services: Services, job_id: int) -> list[dict[str, Any]]:
    """Work the queue in this process (which owns the index) until job `job_id` is over."""
    from ingest.worker import Worker

    worker = Worker(services, name=jobs.worker_name("cli"))
    worker.recover()
    while jobs.get(services.sessions, job_id, _operator())[0].state not in TERMINAL_STATES:
        if not worker.run_once():
            time.sleep(0.5)  # in backoff: wait for it to be due
    return wait_for_job(services, job_id, progress=False)


def ingest_command(paths: list[Path], overrides: Overrides, *, queue: bool, progress: bool) -> dict[str, Any]:
    """`kms ingest`: in this process when it can own the index, else through the queue and a worker.

    Returns {"results": [...]} (synchronous) or {"job_id": N, "refused": [...]} (`queue`).
    """
    settings = Settings()
    if queue:
        ctx = _context()
        try:
            job_id = enqueue_paths(ctx, paths, overrides, priority=jobs.PRIORITY_INTERACTIVE)
            refused = [r.as_dict() for r in jobs.file_results(ctx.sessions, job_id) if r.status == "failed"]
            return {"job_id": job_id, "refused": refused}
        finally:
            ctx.close()
    if running_server(settings) is None:
        try:
            backend = open_backend(settings, progress=progress)
        except StoreBusy:
            backend = None  # a `kms worker` owns the embedded index: queue the files for it
        if backend is not None:
            try:
                return {"results": run_action(lambda: backend.ingest(paths, overrides))}
            finally:
                backend.close()
    ctx = _context()
    try:
        job_id = enqueue_paths(ctx, paths, overrides, priority=jobs.PRIORITY_INTERACTIVE)
        typer.echo(f"queued as job {job_id}; waiting for the worker", err=True)
        return {"results": wait_for_job(ctx, job_id, progress=progress)}
    finally:
        ctx.close()


# ---- kms worker ----------------------------------------------------------------------------------
def worker_command(
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit when no job is due instead of waiting.")
    ] = False,
) -> None:
    """Run ingestion jobs until stopped (SIGTERM/Ctrl-C: the current batch finishes, its job is requeued).

    On the embedded store one process owns the index, so one worker runs (inside `kms serve`, or
    this command); several workers at once need a Qdrant server (KMS_QDRANT_URL).
    """
    from ingest.worker import Worker
    from kms.logging import configure_logging, wants_json
    from kms.services import Services

    settings = Settings()
    configure_logging(json_lines=wants_json(settings.log_format, service=True), level=settings.log_level)
    embedded = settings.store_backend != "server"
    server = running_server(settings)
    if embedded and server is not None:
        raise fail(
            f"kms serve (pid {server['pid']}) owns the embedded index of {settings.data_dir} and runs "
            "its own worker; several workers need a Qdrant server (KMS_QDRANT_URL)",
            EXIT_FAILED,
        )
    try:
        services = Services.open(settings)
    except StoreBusy as exc:
        raise fail(
            f"{exc}. On the embedded store one process owns the index, so only one worker can run; "
            "several workers need a Qdrant server (KMS_QDRANT_URL)",
            EXIT_FAILED,
        ) from exc
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    try:
        Worker(services).run(stop, drain=drain)
    finally:
        services.close()


# ---- kms check -----------------------------------------------------------------------------------
def check_command(
    repair: Annotated[
        bool, typer.Option("--repair", help="Fix what can be fixed from the originals.")
    ] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also verify every original's sha256.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare the registry with the index and the originals; exits 1 if they disagree."""
    backend = run_action(lambda: open_backend(Settings(), progress=False))
    try:
        report = run_action(lambda: backend.check(repair=repair, deep=deep))
    finally:
        backend.close()
    if as_json:
        print_json(report)
    else:
        for problem in report["problems"]:
            typer.echo(f"{problem['kind']:<17} {problem['doc_id']:<40} {problem['detail']}")
        if report["repaired"]:
            typer.echo(f"repaired {len(report['repaired'])} problem(s)", err=True)
        typer.echo(
            f"{report['documents']} documents, {report['chunks']} chunks: "
            f"{'clean' if report['clean'] else str(len(report['problems'])) + ' problem(s)'}",
            err=True,
        )
    if not report["clean"]:
        raise typer.Exit(EXIT_FAILED)
