"""`kms audit`: export the hash-chained audit log, verify the chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kms.cli.common import EXIT_FAILED, open_registry
from kms.security import audit
from kms.security.authn import operator_name

app = typer.Typer(help="The audit log.", no_args_is_help=True)


@app.command("export")
def export(
    after: Annotated[int, typer.Option(min=0, help="Only records with a larger id.")] = 0,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. search.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Write records as JSON lines (id, ts, actor, action, target, detail, prev_hash, hash)."""
    registry = open_registry()
    try:
        sink = out.open("w", encoding="utf-8") if out else None
        written, last = 0, after
        try:
            while True:
                with registry.sessions() as session:
                    page = audit.records(session, after_id=last, limit=1000, action=action, actor=actor)
                for record in page:
                    line = json.dumps(record.as_dict(), ensure_ascii=False, sort_keys=True)
                    if sink:
                        sink.write(line + "\n")
                    else:
                        typer.echo(line)
                    written += 1
                if len(page) < 1000:
                    break
                last = page[-1].id
        finally:
            if sink:
                sink.close()
        audit.append(
            registry.sessions,
            actor=operator_name(),
            action="audit.export",
            detail={"after": after, "action": action, "actor": actor, "records": written},
        )
    finally:
        registry.close()
    typer.echo(f"{written} records", err=True)


@app.command("verify")
def verify(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the whole chain; exit 1 naming the first broken or missing record. Read-only."""
    registry = open_registry()
    try:
        with registry.sessions() as session:
            result = audit.verify(session)
    finally:
        registry.close()
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    elif result.ok:
        typer.echo(f"ok: {result.records} records, head {result.head_hash}")
    else:
        typer.echo(f"BROKEN: {result.problem} ({result.records} records verified before it)")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
