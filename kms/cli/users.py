"""`kms users`: people who authenticate with API keys (the local operator acts, audited)."""

from __future__ import annotations

from typing import Annotated

import typer

from kms.cli.common import open_registry, print_json, run_action
from kms.security import audit, users
from kms.security.authn import operator_name

app = typer.Typer(help="Manage users (API-key principals).", no_args_is_help=True)


@app.command("add")
def add(
    user_id: Annotated[str, typer.Argument(help="User id, e.g. nguyen.van.an")],
    clearance: Annotated[str, typer.Option(help="Clearance level id or label, e.g. confidential or Mật.")],
    unit: Annotated[str, typer.Option(help="Unit path, e.g. hq/consular or mission/jp-tokyo.")],
    group: Annotated[list[str] | None, typer.Option(help="Group (repeatable).")] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="reader, ingestor, admin or auditor (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add a user (role `reader` unless --role is given); an existing id is an error."""
    registry = open_registry()
    try:

        def create() -> users.UserInfo:
            with registry.sessions() as session:
                info = users.create_user(
                    session,
                    user_id=user_id,
                    clearance=clearance,
                    unit=unit,
                    groups=group or [],
                    roles=role or ["reader"],
                    classification=registry.classification,
                )
                session.commit()
            return info

        info = run_action(create)
        audit.append(
            registry.sessions,
            actor=operator_name(),
            action="user.create",
            target=info.user_id,
            detail={
                "clearance": info.clearance,
                "unit": info.unit,
                "groups": info.groups,
                "roles": info.roles,
            },
        )
    finally:
        registry.close()
    if as_json:
        print_json(info.as_dict())
    else:
        typer.echo(
            f"added {info.user_id} ({info.clearance}, {info.unit}, roles {','.join(info.roles)})", err=True
        )


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="One JSON line per user.")] = False) -> None:
    """List users."""
    registry = open_registry()
    try:
        with registry.sessions() as session:
            rows = users.list_users(session)
    finally:
        registry.close()
    for info in rows:
        if as_json:
            print_json(info.as_dict())
        else:
            state = "disabled" if info.disabled else "active"
            typer.echo(
                f"{info.user_id:<28} {info.clearance:<13} {info.unit:<24} {','.join(info.roles):<24} "
                f"{','.join(info.groups) or '-':<24} {state}"
            )


def _set_disabled(user_id: str, disabled: bool) -> None:
    registry = open_registry()
    try:

        def change() -> None:
            with registry.sessions() as session:
                users.update_user(
                    session, user_id=user_id, classification=registry.classification, disabled=disabled
                )
                session.commit()

        run_action(change)
        audit.append(
            registry.sessions,
            actor=operator_name(),
            action="user.update",
            target=user_id,
            detail={"changes": {"disabled": disabled}},
        )
    finally:
        registry.close()
    typer.echo(f"{'disabled' if disabled else 'enabled'} {user_id}", err=True)


@app.command("disable")
def disable(user_id: str) -> None:
    """Disable a user: every key (and OIDC login) of theirs is refused at once."""
    _set_disabled(user_id, True)


@app.command("enable")
def enable(user_id: str) -> None:
    """Enable a disabled user again."""
    _set_disabled(user_id, False)
