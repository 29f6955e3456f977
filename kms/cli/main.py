"""`kms` command line. `--json` output goes to stdout alone; progress, warnings and logs to stderr.

Exit codes: 0 ok; 1 the operation failed; 2 usage error; 4 not found.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kms.cli import audit as audit_cli
from kms.cli import embedder as embedder_cli
from kms.cli import jobs as jobs_cli
from kms.cli import keys as keys_cli
from kms.cli import network as network_cli
from kms.cli import sources as sources_cli
from kms.cli import users as users_cli
from kms.cli.backend import open_backend
from kms.config import Settings
from kms.domain import SearchQuery
from kms.errors import ConfigError, InvalidInput, KmsError, NotFound

app = typer.Typer(
    help="kms: knowledge management and semantic search for HQ and missions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 1, 2, 4


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _run(action: Any) -> Any:
    """Run a backend action, mapping kms errors to exit codes."""
    try:
        return action()
    except NotFound as exc:
        raise _fail("not found", EXIT_NOT_FOUND) from exc
    except InvalidInput as exc:
        raise _fail(str(exc), EXIT_USAGE) from exc
    except KmsError as exc:
        raise _fail(str(exc), EXIT_FAILED) from exc


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursed).")],
    classification: Annotated[str | None, typer.Option(help="Classification for every file.")] = None,
    owner_unit: Annotated[
        str | None, typer.Option("--owner-unit", help="Owner unit, e.g. hq/consular.")
    ] = None,
    allow: Annotated[list[str] | None, typer.Option(help="Access token (repeatable).")] = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="Only queue a job for a worker (prints its id) and exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per file.")] = False,
) -> None:
    """Ingest files now (as a job run in this process, or by the running server's worker) with a
    progress bar; exits 1 if any file failed. With --queue, only queue the job."""
    from kms.cli.jobs import ingest_command

    overrides: dict[str, Any] = {}
    if classification:
        overrides["classification"] = classification
    if owner_unit:
        overrides["owner_unit"] = owner_unit
    if allow:
        overrides["allow"] = list(allow)
    outcome = _run(lambda: ingest_command(paths, overrides, queue=queue, progress=not as_json))
    if queue:
        _print_json(outcome)
        for refused in outcome["refused"]:
            typer.echo(f"refused   {refused['path']}  ({refused['error']})", err=True)
        if outcome["refused"]:
            raise typer.Exit(EXIT_FAILED)
        return
    results = outcome["results"]
    for result in results:
        if as_json:
            _print_json({k: result[k] for k in ("path", "doc_id", "status", "chunks", "error")})
        else:
            reason = f"  ({result['error']})" if result["error"] else ""
            typer.echo(
                f"{result['status']:<9} {result['doc_id'] or '-':<40} {result['chunks']:>4}  "
                f"{result['path']}{reason}"
            )
    failed = sum(1 for r in results if r["status"] == "failed")
    typer.echo(f"{len(results)} files, {failed} failed", err=True)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Number of documents.")] = 10,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many documents.")] = 0,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print the HTTP search response.")] = False,
    as_user: Annotated[str | None, typer.Option("--as", help="Search with this user's permissions.")] = None,
) -> None:
    """Search the index (as the local operator, or --as a user)."""
    if mode not in ("hybrid", "dense", "sparse"):
        raise _fail("--mode must be hybrid, dense or sparse", EXIT_USAGE)
    backend = _run(lambda: open_backend(Settings(), progress=False, as_user=as_user))
    try:
        result = _run(lambda: backend.search(SearchQuery(query=query, k=k, offset=offset, mode=mode)))  # type: ignore[arg-type]
    finally:
        backend.close()
    if as_json:
        _print_json(result)
        return
    for rank, hit in enumerate(result["results"], start=offset + 1):
        number = f" [{hit['doc_number']}]" if hit["doc_number"] else ""
        typer.echo(
            f"{rank:>2}. {hit['title']}{number}  ({hit['doc_id']}, {hit['classification']}, "
            f"{hit['score']:.4f})"
        )
        typer.echo(f"    {hit['snippet']}")
    typer.echo(f"{result['total']} documents", err=True)


@app.command()
def show(
    doc_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_user: Annotated[
        str | None, typer.Option("--as", help="Only if this user may read it (else exit 4).")
    ] = None,
) -> None:
    """Show a document's metadata and full text."""
    backend = _run(lambda: open_backend(Settings(), progress=False, as_user=as_user))
    try:
        document = _run(lambda: backend.document(doc_id))
    finally:
        backend.close()
    if as_json:
        _print_json(document)
        return
    for key, value in document.items():
        if key != "text":
            typer.echo(f"{key}: {value}")
    typer.echo("")
    typer.echo(document["text"])


@app.command()
def delete(doc_id: str) -> None:
    """Delete a document from the index and the registry (the original file is kept)."""
    backend = _run(lambda: open_backend(Settings(), progress=False))
    try:
        _run(lambda: backend.delete(doc_id))
    finally:
        backend.close()
    typer.echo(f"deleted {doc_id}", err=True)


@app.command("set-access")
def set_access(
    doc_id: str,
    classification: Annotated[
        str | None, typer.Option(help="New classification (id or label); default: unchanged.")
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option(help="New allow list, replacing the old one (repeatable).")
    ] = None,
    clear_allow: Annotated[
        bool, typer.Option("--clear-allow", help="Empty the allow list (nobody but admins sees it).")
    ] = False,
) -> None:
    """Re-classify a document or replace its allow list; every chunk changes before this returns."""
    if classification is None and allow is None and not clear_allow:
        raise _fail("give --classification, --allow or --clear-allow", EXIT_USAGE)
    if allow and clear_allow:
        raise _fail("--allow and --clear-allow exclude each other", EXIT_USAGE)
    backend = _run(lambda: open_backend(Settings(), progress=False))
    try:
        current = _run(lambda: backend.get_access(doc_id))
        level = classification or str(current["classification"] or "")
        tokens = [] if clear_allow else list(allow if allow is not None else current["allow"])
        result = _run(lambda: backend.set_access(doc_id, level, tokens))
    finally:
        backend.close()
    _print_json(result)


@app.command()
def reindex() -> None:
    """Rebuild the index from stored originals with the configured embedder, then swap it in."""
    backend = _run(lambda: open_backend(Settings()))
    try:
        result = _run(backend.reindex)
    finally:
        backend.close()
    _print_json(result)
    if result.get("failed"):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts of documents and chunks."""
    backend = _run(lambda: open_backend(Settings(), progress=False))
    try:
        result = _run(backend.stats)
    finally:
        backend.close()
    if as_json:
        _print_json(result)
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default KMS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default KMS_PORT).")] = None,
) -> None:
    """Serve the API and web UI; owns the embedded store while it runs."""
    from kms.server import run_server

    settings = Settings()
    _run(lambda: run_server(settings, host=host or settings.host, port=port or settings.port))


@app.command()
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after loading.")] = True,
) -> None:
    """Load the bundled sample corpus and serve API + web UI."""
    from kms.demo import load_demo

    settings = Settings()
    _run(lambda: load_demo(settings))
    if serve_after:
        serve(host=None, port=None)


app.add_typer(users_cli.app, name="users")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(embedder_cli.app, name="embedder")


app.add_typer(jobs_cli.app, name="jobs")
app.add_typer(sources_cli.app, name="sources")
app.add_typer(network_cli.app, name="network")


def _register_commands() -> None:
    from kms.cli.eval import eval_command
    from kms.cli.native import build_native_command

    app.command(name="eval")(eval_command)
    app.command(name="build-native")(build_native_command)
    app.command(name="worker")(jobs_cli.worker_command)
    app.command(name="check")(jobs_cli.check_command)


_register_commands()


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        app()
    except ConfigError as exc:  # e.g. unsafe OIDC settings: stop with the message naming the variable
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
