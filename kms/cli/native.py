"""`kms build-native`: compile the hot pure-Python modules with mypyc (see kms/native.py)."""

from __future__ import annotations

import sys


def build_native_command() -> None:
    """Compile the snippet module to C (mypyc, a C compiler); without them the Python source runs."""
    from kms.native import build

    try:
        built = build()
    except (RuntimeError, OSError) as exc:
        print(f"not compiled, the pure-Python modules run instead: {exc}", file=sys.stderr)
        return
    for path in built:
        print(path)
