"""kms's public surface is pinned: a new public name shows up as a reviewed diff."""

from __future__ import annotations

import kms


def test_public_names() -> None:
    assert sorted(kms.__all__) == ["Principal", "SearchHit", "SearchQuery", "Settings", "create_app"]
    for name in kms.__all__:
        assert getattr(kms, name) is not None
