"""`kms keys`: API keys. Only a salted hash is stored; the key is printed once."""

from __future__ import annotations

from typing import Annotated

import typer

from kms.cli.common import open_registry, print_json, run_action
from kms.security import audit, users
from kms.security.authn import operator_name

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command("create")
def create(user_id: Annotated[str, typer.Argument(help="The user the key authenticates as.")]) -> None:
    """Create a key: the key alone (and a newline) on stdout, its key id on stderr."""
    registry = open_registry()
    try:

        def make() -> tuple[users.KeyInfo, str]:
            with registry.sessions() as session:
                created = users.create_key(session, user_id=user_id)
                session.commit()
            return created

        info, key = run_action(make)
        audit.append(
            registry.sessions,
            actor=operator_name(),
            action="key.create",
            target=info.key_id,
            detail={"user_id": user_id},
        )
    finally:
        registry.close()
    typer.echo(key)
    typer.echo(f"key id: {info.key_id}", err=True)


@app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key by its key id; requests with it are refused at once."""
    registry = open_registry()
    try:

        def change() -> users.KeyInfo:
            with registry.sessions() as session:
                info = users.revoke_key(session, key_id=key_id)
                session.commit()
            return info

        info = run_action(change)
        audit.append(
            registry.sessions,
            actor=operator_name(),
            action="key.revoke",
            target=key_id,
            detail={"user_id": info.user_id},
        )
    finally:
        registry.close()
    typer.echo(f"revoked {key_id}", err=True)


@app.command("list")
def list_(
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List keys (ids, owners, dates; never the keys)."""
    registry = open_registry()
    try:
        with registry.sessions() as session:
            rows = users.list_keys(session, user_id=user)
    finally:
        registry.close()
    for info in rows:
        if as_json:
            print_json(info.as_dict())
        else:
            revoked = f"revoked {info.revoked_at:%Y-%m-%d}" if info.revoked_at else "active"
            typer.echo(f"{info.key_id}  {info.user_id:<28} {info.created_at:%Y-%m-%d}  {revoked}")
