"""`kms sources add|list|remove|sync`: folders kept in sync with the index (see ingest/sources.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ingest import jobs, sources
from kms.cli.backend import running_server
from kms.cli.common import EXIT_FAILED, print_json, run_action
from kms.cli.jobs import run_queue_until, wait_for_job
from kms.config import Settings
from kms.domain import Principal
from kms.errors import StoreBusy
from kms.security import audit
from kms.security.authn import operator_name

app = typer.Typer(
    help="Source folders: new files are added, changed ones re-ingested, deleted ones removed.",
    no_args_is_help=True,
    add_completion=False,
)


def _context() -> jobs.QueueContext:
    return run_action(lambda: jobs.QueueContext.open(Settings()))


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A short name, e.g. hq-consular.")],
    path: Annotated[Path, typer.Argument(help="The folder (a local path or a mounted share).")],
    classification: Annotated[str | None, typer.Option(help="Default classification.")] = None,
    allow: Annotated[list[str] | None, typer.Option(help="Default access token (repeatable).")] = None,
    owner_unit: Annotated[str | None, typer.Option("--owner-unit", help="Default owner unit.")] = None,
    schedule: Annotated[
        int | None, typer.Option(help="Sync every this many minutes (a running worker does it).")
    ] = None,
) -> None:
    """Register a folder. Its `.kms.yaml` files and sidecars override these defaults."""
    defaults: dict[str, Any] = {"classification": classification, "owner_unit": owner_unit}
    if allow:
        defaults["allow"] = list(allow)
    ctx = _context()
    try:
        created = run_action(
            lambda: sources.add_source(
                ctx,
                name=name,
                path=path,
                defaults=defaults,
                schedule_minutes=schedule,
                created_by=operator_name(),
            )
        )
        audit.append(ctx.sessions, actor=operator_name(), action="source.add", target=name, detail=created)
    finally:
        ctx.close()
    print_json(created)


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    ctx = _context()
    try:
        found = sources.list_sources(ctx)
    finally:
        ctx.close()
    if as_json:
        print_json(found)
        return
    for source in found:
        every = f"every {source['schedule_minutes']} min" if source["schedule_minutes"] else "manual"
        typer.echo(f"{source['name']:<24} {source['files']:>6} files  {every:<16} {source['path']}")


@app.command("remove")
def remove(name: str) -> None:
    """Forget a source; its documents stay in the index (empty the folder and sync first to remove them)."""
    ctx = _context()
    try:
        run_action(lambda: sources.remove_source(ctx, name))
        audit.append(ctx.sessions, actor=operator_name(), action="source.remove", target=name)
    finally:
        ctx.close()
    typer.echo(f"removed source {name}", err=True)


@app.command("sync")
def sync(
    name: str,
    queue: Annotated[bool, typer.Option("--queue", help="Only queue the sync job for a worker.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep watching the folder and sync on changes.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Watch: seconds between looks.")] = 5.0,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Accept an empty folder (removes all its documents).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per file.")] = False,
) -> None:
    """Add new files, re-ingest changed ones, remove deleted ones; exits 1 if a file failed.

    --watch polls the folder (it works on network shares, where change notifications do not) and
    syncs whenever a file, sidecar or `.kms.yaml` changes, until Ctrl-C.
    """
    if not watch:
        failed = _sync_once(name, queue=queue, allow_empty=allow_empty, as_json=as_json)
        if failed:
            raise typer.Exit(EXIT_FAILED)
        return
    ctx = _context()
    try:
        folder = Path(run_action(lambda: sources.get_source(ctx, name)).path)
    finally:
        ctx.close()
    last: dict[str, tuple[int, int]] | None = None
    try:
        while True:
            current = sources.snapshot(folder)
            if current != last:
                _sync_once(name, queue=queue, allow_empty=allow_empty, as_json=as_json)
                last = current
            time.sleep(interval)
    except KeyboardInterrupt:
        typer.echo("stopped watching", err=True)


def _sync_once(name: str, *, queue: bool, allow_empty: bool, as_json: bool) -> int:
    """One sync: in this process when it can own the index, else queued (and waited for unless `queue`)."""
    settings = Settings()
    operator = Principal.operator(operator_name())
    results: list[dict[str, Any]] | None = None
    if not queue and running_server(settings) is None:
        results = _sync_here(settings, name, operator, allow_empty=allow_empty)
    if results is None:
        ctx = _context()
        try:
            job_id, _ = run_action(
                lambda: sources.sync(ctx, name, submitter=operator, allow_empty=allow_empty)
            )
            if job_id is None:
                typer.echo(f"source {name}: no changes", err=True)
                return 0
            if queue:
                print_json({"job_id": job_id})
                return 0
            typer.echo(f"source {name}: job {job_id}, waiting for the worker", err=True)
            results = wait_for_job(ctx, job_id, progress=not as_json)
        finally:
            ctx.close()
    return _report(results, as_json=as_json)


def _sync_here(
    settings: Settings, name: str, operator: Principal, *, allow_empty: bool
) -> list[dict[str, Any]] | None:
    from ingest.worker import run_claimed_job
    from kms.cli.progress import progress_bar
    from kms.services import Services

    try:
        services = Services.open(settings)
    except StoreBusy:
        return None  # a `kms worker` owns the embedded index
    try:
        job_id, lease = run_action(
            lambda: sources.sync(
                services, name, submitter=operator, claim_as=jobs.worker_name("sync"), allow_empty=allow_empty
            )
        )
        if job_id is None:
            typer.echo(f"source {name}: no changes", err=True)
            return []
        if lease is not None:
            with progress_bar(f"sync {name}") as report:
                run_claimed_job(services, lease, progress=report, raise_errors=True)
            return [r.as_dict() for r in jobs.file_results(services.sessions, job_id)]
        # a sync of this source was already queued (or left running by a stopped process): we own
        # the index now, so we are the worker that finishes it
        return run_queue_until(services, job_id)
    finally:
        services.close()


def _report(results: list[dict[str, Any]], *, as_json: bool) -> int:
    for result in results:
        if as_json:
            print_json({k: result[k] for k in ("path", "doc_id", "status", "chunks", "error")})
        else:
            reason = f"  ({result['error']})" if result["error"] else ""
            typer.echo(f"{result['status']:<9} {result['doc_id'] or '-':<40} {result['path']}{reason}")
    failed = sum(1 for r in results if r["status"] == "failed")
    if results:
        typer.echo(f"{len(results)} change(s), {failed} failed", err=True)
    return failed
