"""Compiled copies of pure-Python hot paths, used only when built from the very source in the tree.

A search makes a snippet for each of its ten hits, and that pure-Python pass (`kms.text.snippets`)
was the largest piece of a search outside the index (~1.5 ms of ~5 at 100k chunks). mypyc (part of
mypy, from PyPI) compiles the same typed source to a C extension, about 1.7x faster with the same
results. The module stays plain Python: `build` compiles a copy named after the SHA-256 of its
source (`kms_native.snippets_<digest>`), and the module switches to the copy only if one with its
own digest is installed. An edited source therefore never runs a stale build, and a machine without
a C compiler runs the Python it reads. `KMS_NATIVE=0` turns the compiled copies off.

    kms build-native      # what `make install` runs
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "build", "compiled_copy"]

PACKAGE = "kms_native"  # top-level package of the compiled copies, in site-packages
COMPILED = ("kms.text.snippets",)  # modules with a compiled copy; each ends by asking for it
# What mypyc reads for the types of the kms names they import (an empty `kms/__init__.py` instead of
# the real one, whose imports would have it type-check most of kms and its libraries: 6 minutes).
_TYPES_FROM = ("kms/native.py", "kms/text/__init__.py", "kms/text/normalize.py", "kms/text/docnumber.py")
_DIGEST_CHARS = 16


def _source(module: str) -> Path:
    return Path(__file__).resolve().parent.parent.joinpath(*module.split(".")).with_suffix(".py")


def copy_name(module: str, source: bytes) -> str:
    """`snippets_<first 16 hex digits of the source's SHA-256>`."""
    return f"{module.rpartition('.')[2]}_{hashlib.sha256(source).hexdigest()[:_DIGEST_CHARS]}"


def compiled_copy(module: str, source_file: str) -> ModuleType | None:
    """The compiled copy of `module` built from exactly `source_file`'s bytes, or None."""
    if os.environ.get("KMS_NATIVE", "1") == "0":
        return None
    name = f"{PACKAGE}.{copy_name(module, Path(source_file).read_bytes())}"
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def build(target: Path | None = None) -> list[Path]:
    """Compile each module in `COMPILED` into `target` (default: this interpreter's site-packages)
    and remove copies built from older sources. Raises if mypyc or the C compiler fails."""
    target = (target or Path(sysconfig.get_paths()["platlib"])) / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").touch()
    built: list[Path] = []
    for module in COMPILED:
        source = _source(module).read_bytes()
        name = copy_name(module, source)
        with tempfile.TemporaryDirectory(prefix="kms-native-") as work:
            package = Path(work) / PACKAGE
            package.mkdir()
            (package / "__init__.py").touch()
            (package / f"{name}.py").write_bytes(source)
            _copy_types(Path(work))
            _mypyc(Path(work), f"{PACKAGE}/{name}.py")
            stem = module.rpartition(".")[2]
            for old in target.glob(f"{stem}_*"):
                old.unlink()
            for library in package.glob("*.so"):
                built.append(Path(shutil.copy2(library, target / library.name)))
    return built


def _copy_types(work: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    (work / "kms").mkdir()
    (work / "kms" / "__init__.py").touch()
    for relative in _TYPES_FROM:
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, work / relative)


def _mypyc(work: Path, source: str) -> None:
    """Run mypyc on one file in `work` (which holds the kms modules it imports, for their types)."""
    done = subprocess.run(
        # Only the copy is compiled; what it imports is read for types, its errors are not ours here.
        [sys.executable, "-m", "mypyc", "--follow-imports=silent", "--ignore-missing-imports", source],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mypyc failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
