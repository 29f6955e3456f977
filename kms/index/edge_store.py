"""Store backend `edge`: Qdrant's Rust engine in-process (qdrant-edge-py), with HNSW, int8 quantization,
payload indexes, sparse IDF and RRF fusion, and a write-ahead log.

Layout under `<data dir>/edge/`:

    .lock                       flock held by the one process that owns the store (released by the
                                kernel when that process dies, so a killed server never blocks a restart)
    aliases.json                {"chunks": "chunks_2"}: what searches read
    collections/<name>/meta.json   {"embedder", "dim", "created", "generation"}
    collections/<name>/g<N>/       the live shard of that collection

An edge shard is one collection: collections, aliases and their metadata are kept here in files.

**Optimization off the request path.** Building HNSW graphs (`EdgeShard.optimize`) holds the GIL for
tens of seconds. It never runs in the serving process: the live shard is flushed and copied to
`g<N+1>` (searches keep answering; writes wait only for the copy), a child process optimizes the copy,
and the writes that arrived meanwhile (kept in a journal; every write here is idempotent) are
replayed onto it before it is swapped in. The old generation is closed once its last reader is done.
A crash at any point leaves `meta.json` naming a complete generation; leftovers are removed on open.
"""

from __future__ import annotations

import atexit
import datetime as dt
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import qdrant_edge as qe
from qdrant_client import models

from kms.config import CollectionLayout
from kms.errors import InvalidInput, KmsError, StoreBusy
from kms.index.base import (
    WRITE_BATCH,
    ChunkPoint,
    ChunkStore,
    IndexInfo,
    ScoredChunk,
    chunk_point_id,
    doc_condition,
    payload_selector,
    scored_chunks,
    version_condition,
)
from kms.index.preload import PageCacheWarmer, searched_files

log = logging.getLogger(__name__)

_DISTANCE = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}


def _memory(on_disk: bool) -> qe.Memory | None:
    """Cold: memory-mapped, pages read when a search touches them; None: edge's default (in RAM)."""
    return qe.Memory.Cold if on_disk else None


_TEMPLATES: dict[str, Path] = {}  # empty shards per (dim, layout), see EdgeChunkStore._empty_shard
_TEMPLATE_LOCK = threading.Lock()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Run in a child process on a copy of the shard: optimize() holds the GIL while it builds graphs.
_OPTIMIZE_SCRIPT = (
    "import os, sys, qdrant_edge\n"
    "os.nice(10)\n"  # searches in the serving process come first on a small machine
    "shard = qdrant_edge.EdgeShard.load(sys.argv[1])\n"
    "changed = shard.optimize()\n"
    "shard.flush()\n"
    "shard.close()\n"
    "print(int(changed))\n"
)


# ---- translation from qdrant_client.models -------------------------------------------------------
def edge_filter(value: models.Filter | None) -> qe.Filter | None:
    """The same filter for the edge engine. Anything it cannot express exactly raises InvalidInput."""
    return None if value is None else _filter(value)


def _filter(value: models.Filter) -> qe.Filter:
    min_should = None
    if value.min_should is not None:
        min_should = qe.MinShould(
            [_condition(c) for c in value.min_should.conditions], value.min_should.min_count
        )
    return qe.Filter(
        must=_conditions(value.must),
        should=_conditions(value.should),
        must_not=_conditions(value.must_not),
        min_should=min_should,
    )


def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_condition(c) for c in items]


def _condition(value: Any) -> Any:
    if isinstance(value, models.Filter):
        return _filter(value)
    if isinstance(value, models.FieldCondition):
        return _field_condition(value)
    if isinstance(value, models.IsEmptyCondition):
        return qe.IsEmptyCondition(value.is_empty.key)
    if isinstance(value, models.IsNullCondition):
        return qe.IsNullCondition(value.is_null.key)
    if isinstance(value, models.HasIdCondition):
        return qe.HasIdCondition({_point_id(i) for i in value.has_id})
    if isinstance(value, models.NestedCondition):
        return qe.NestedCondition(value.nested.key, _filter(value.nested.filter))
    raise InvalidInput(f"the edge store cannot apply a {type(value).__name__} condition")


def _field_condition(value: models.FieldCondition) -> qe.FieldCondition:
    unsupported = (value.geo_bounding_box, value.geo_radius, value.geo_polygon)
    if any(v is not None for v in unsupported):
        raise InvalidInput(f"the edge store cannot apply geo conditions (on {value.key!r})")
    kwargs: dict[str, Any] = {}
    if value.match is not None:
        kwargs["match"] = _match(value.match)
    if value.range is not None:
        kwargs["range"] = _range(value.range)
    if value.values_count is not None:
        count = value.values_count
        kwargs["values_count"] = qe.ValuesCount(lt=count.lt, gt=count.gt, lte=count.lte, gte=count.gte)
    if value.is_empty is not None:
        kwargs["is_empty"] = value.is_empty
    if value.is_null is not None:
        kwargs["is_null"] = value.is_null
    if not kwargs:
        raise InvalidInput(f"a condition on {value.key!r} has nothing to match")
    return qe.FieldCondition(key=value.key, **kwargs)


def _match(value: Any) -> Any:
    if isinstance(value, models.MatchValue):
        return qe.MatchValue(value.value)
    if isinstance(value, models.MatchAny):
        return qe.MatchAny(cast(Any, list(value.any)))
    if isinstance(value, models.MatchExcept):
        return qe.MatchExcept(cast(Any, list(value.except_)))
    if isinstance(value, models.MatchText):
        return qe.MatchText(value.text)
    if isinstance(value, models.MatchPhrase):
        return qe.MatchPhrase(value.phrase)
    raise InvalidInput(f"the edge store cannot apply a {type(value).__name__} match")


def _range(value: Any) -> Any:
    if isinstance(value, models.DatetimeRange):
        return qe.RangeDateTime(
            gte=_iso(value.gte), gt=_iso(value.gt), lte=_iso(value.lte), lt=_iso(value.lt)
        )
    if isinstance(value, models.Range):
        return qe.RangeFloat(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)
    raise InvalidInput(f"the edge store cannot apply a {type(value).__name__} range")


def _iso(value: dt.datetime | dt.date | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC).isoformat()


def _point_id(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return value
    return value


def _vector(value: Any) -> Any:
    if isinstance(value, models.SparseVector):
        return qe.SparseVector(list(value.indices), list(value.values))
    if isinstance(value, models.NearestQuery):
        return _vector(value.nearest)
    if isinstance(value, list):
        return [float(x) for x in value]
    if hasattr(value, "tolist"):  # numpy arrays
        return [float(x) for x in value.tolist()]
    raise InvalidInput(f"the edge store cannot search with a {type(value).__name__}")


def _from_edge_vectors(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for name, vector in value.items():
        if isinstance(vector, qe.SparseVector):
            out[name] = models.SparseVector(indices=list(vector.indices), values=list(vector.values))
        else:
            out[name] = list(vector)
    return out


def _record(record: qe.Record) -> models.Record:
    if record.vector is None:  # nothing to validate in the engine's own values
        return models.Record.model_construct(id=str(record.id), payload=record.payload, vector=None)
    return models.Record(id=str(record.id), payload=record.payload, vector=_from_edge_vectors(record.vector))


# ---- process lock --------------------------------------------------------------------------------
def _acquire_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreBusy(
            f"the embedded index in {path.parent} is open in another process (pid {holder}; "
            "is `kms serve` or `kms worker` running?)"
        ) from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace `path` (write, fsync, rename)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ---- one collection ------------------------------------------------------------------------------
@dataclass
class _Generation:
    number: int
    path: Path
    shard: qe.EdgeShard
    readers: int = 0


@dataclass
class _Optimization:
    thread: threading.Thread
    done: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[str] | None = None
    changed: bool = False
    error: str | None = None
    warmer: PageCacheWarmer | None = None  # reading the new generation in before the swap


class _Collection:
    """One collection: its live shard generation, a write lock, and background optimization."""

    def __init__(self, path: Path, preload: Sequence[str] = ()) -> None:
        self.path = path
        self._preload = tuple(preload)  # folder names of what searches read, most useful first
        self.meta: dict[str, Any] = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        number = int(self.meta["generation"])
        for stale in path.glob("g*"):  # an optimization that did not finish before a crash
            if stale.is_dir() and stale.name != f"g{number}":
                shutil.rmtree(stale, ignore_errors=True)
        live = path / f"g{number}"
        self._gen = _Generation(number, live, qe.EdgeShard.load(str(live)))
        self._state = threading.Condition()  # guards _gen and readers
        self._write = threading.RLock()  # one write (or swap) at a time
        self._journal: list[qe.UpdateOperation] | None = None
        self._optimization: _Optimization | None = None
        self.writes_since_optimize = 0
        self.closed = False
        self.warmer: PageCacheWarmer | None = None  # once a server asks for a warm index

    def warm(self) -> PageCacheWarmer | None:
        """Read the live generation's searched files into the page cache (once; kms/index/preload.py);
        every generation an optimization swaps in after this is read in before the swap."""
        with self._state:
            if self.warmer is None:
                self.warmer = self._warm(self._gen.path)
            return self.warmer

    def _warm(self, generation: Path) -> PageCacheWarmer | None:
        if not self._preload:
            return None
        return PageCacheWarmer(searched_files(generation, self._preload), name=self.path.name)

    @contextmanager
    def shard(self) -> Iterator[qe.EdgeShard]:
        with self._state:
            if self.closed:
                raise KmsError(f"the collection {self.path.name} is closed")
            generation = self._gen
            generation.readers += 1
        try:
            yield generation.shard
        finally:
            with self._state:
                generation.readers -= 1
                self._state.notify_all()

    def update(self, operation: qe.UpdateOperation) -> None:
        with self._write, self.shard() as shard:
            shard.update(operation)
            if self._journal is not None:
                self._journal.append(operation)

    @property
    def optimizing(self) -> bool:
        job = self._optimization
        return job is not None and not job.done.is_set()

    def optimize(self, *, wait: bool) -> bool:
        with self._write:
            job = self._optimization
            if job is None or job.done.is_set():
                job = _Optimization(thread=threading.Thread(target=self._optimize, daemon=True))
                job.thread.name = f"edge-optimize-{self.path.name}"
                self._optimization = job
                job.thread.start()
        if not wait:
            return True
        job.done.wait()
        if job.error:
            raise KmsError(f"optimizing {self.path.name} failed: {job.error}")
        return job.changed

    def _optimize(self) -> None:
        job = self._optimization
        assert job is not None
        target: Path | None = None
        try:
            with self._write:  # a consistent copy; searches go on meanwhile
                current = self._gen
                current.shard.flush()
                target = self.path / f"g{current.number + 1}"
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(current.path, target)
                self._journal = []
                self.writes_since_optimize = 0
            job.process = subprocess.Popen(
                [sys.executable, "-c", _OPTIMIZE_SCRIPT, str(target)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            out, err = job.process.communicate()
            if job.process.returncode != 0:
                raise KmsError(err.strip()[-2000:] or f"exit status {job.process.returncode}")
            job.changed = out.strip().endswith("1")
            fresh = qe.EdgeShard.load(str(target))
            # The child's close dropped the new files from the page cache: read them in before the
            # swap, so searches do not meet a cold index after every optimization.
            warmer = job.warmer = self._warm(target) if self.warmer is not None else None
            if warmer is not None:
                warmer.done.wait()
            with self._write:
                journal, self._journal = self._journal or [], None
                for operation in journal:
                    fresh.update(operation)
                fresh.flush()
                self.meta["generation"] = current.number + 1
                self.meta["optimized_points"] = int(fresh.count(qe.CountRequest(exact=True)))
                _write_json(self.path / "meta.json", self.meta)
                with self._state:
                    old, self._gen = self._gen, _Generation(current.number + 1, target, fresh)
                    old_warmer, self.warmer = self.warmer, warmer
                target = None
            if old_warmer is not None:
                old_warmer.stop()
            log.info("optimized %s (generation %d)", self.path.name, current.number + 1)
            self._retire(old)
        except Exception as exc:
            job.error = str(exc) or type(exc).__name__
            log.warning("optimizing %s failed: %s", self.path.name, job.error)
            with self._write:
                self._journal = None
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
        finally:
            job.done.set()

    def _retire(self, old: _Generation) -> None:
        with self._state:
            self._state.wait_for(lambda: old.readers == 0)
        old.shard.close()
        shutil.rmtree(old.path, ignore_errors=True)

    def close(self) -> None:
        job = self._optimization
        if job is not None and not job.done.is_set():
            if job.process is not None and job.process.poll() is None:
                job.process.terminate()
            if job.warmer is not None:
                job.warmer.stop()
            job.done.wait()
        if self.warmer is not None:
            self.warmer.stop()
        with self._write, self._state:
            if self.closed:
                return
            self._state.wait_for(lambda: self._gen.readers == 0)
            self.closed = True
            self._gen.shard.flush()
            self._gen.shard.close()


# ---- the store -----------------------------------------------------------------------------------
class EdgeChunkStore(ChunkStore):
    """The edge backend. `auto_optimize` = points written before a background optimization starts
    (None: the layout's indexing threshold; 0: only when `optimize()` is called)."""

    backend = "edge"

    def __init__(
        self,
        root: Path,
        layout: CollectionLayout,
        *,
        auto_optimize: int | None = None,
        preload: bool = True,
    ) -> None:
        super().__init__(layout)
        self.root = root
        # What a search reads, most useful first: the float vectors it rescores, the candidates'
        # payloads, the HNSW graph, the posting lists, the payload indexes (not the stored sparse
        # vectors, which only `with_vectors` reads return).
        self._preload: tuple[str, ...] = (
            (
                f"vector_storage-{layout.dense_name}",
                "payload_storage",
                f"vector_index-{layout.dense_name}",
                *(f"vector_index-{name}" for name in layout.sparse),
                "payload_index",
            )
            if preload
            else ()
        )
        (root / "collections").mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd: int | None = _acquire_lock(root / ".lock")
        self._auto_optimize = auto_optimize
        self._open: dict[str, _Collection] = {}
        self._guard = threading.RLock()
        self._active: str | None = None
        aliases = self._read_aliases()
        if aliases.get(self.alias) in self.collections():
            self._active = aliases[self.alias]

    # ---- collections -------------------------------------------------------------------------
    def _read_aliases(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / "aliases.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _dir(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"invalid collection name {name!r}")
        return self.root / "collections" / name

    def _collection(self, name: str | None = None) -> _Collection:
        name = name or self._active
        if name is None:
            raise KmsError(f"the index has no live collection {self.alias!r}")
        with self._guard:
            if self._lock_fd is None:
                raise KmsError("the store is closed")
            opened = self._open.get(name)
            if opened is None:
                if not (self._dir(name) / "meta.json").exists():
                    raise KmsError(f"no collection {name!r}")
                opened = self._open[name] = _Collection(self._dir(name), self._preload)
                self._maybe_optimize(opened, opened_now=True)
            return opened

    def active_collection(self) -> str | None:
        return self._active

    def wait_warm(self, timeout: float) -> bool:
        if self._active is None:
            return True
        warmer = self._collection().warm()
        return warmer is None or warmer.wait(timeout)

    def collections(self) -> list[str]:
        base = self.root / "collections"
        return sorted(
            p.name
            for p in base.iterdir()
            if p.name.startswith(f"{self.alias}_") and (p / "meta.json").exists()
        )

    def info(self, collection: str | None = None) -> IndexInfo | None:
        name = collection or self._active
        if name is None or not (self._dir(name) / "meta.json").exists():
            return None
        coll = self._collection(name)
        with coll.shard() as shard:
            points = shard.count(qe.CountRequest(exact=True))
        return IndexInfo(
            collection=name, model=str(coll.meta["embedder"]), dim=int(coll.meta["dim"]), points=points
        )

    def shard_info(self, collection: str | None = None) -> dict[str, int]:
        """Segments, points and HNSW-indexed vectors of a collection (for stats and benchmarks)."""
        with self._collection(collection).shard() as shard:
            info = shard.info()
        return {
            "segments": info.segments_count,
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
        }

    def _edge_config(self, dim: int) -> qe.EdgeConfig:
        layout = self.layout
        quantization = None
        if layout.quantization:
            quantization = qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, quantile=layout.quantile, always_ram=True
            )
        return qe.EdgeConfig(
            vectors={
                layout.dense_name: qe.EdgeVectorParams(
                    size=dim,
                    distance=_DISTANCE[layout.distance.lower()],
                    memory=_memory(layout.dense_on_disk),
                )
            },
            sparse_vectors={
                name: qe.EdgeSparseVectorParams(
                    modifier=qe.Modifier.Idf if modifier == "idf" else None,
                    memory=_memory(name in layout.sparse_on_disk),
                )
                for name, modifier in layout.sparse.items()
            },
            hnsw_config=qe.HnswIndexConfig(
                m=layout.hnsw_m,
                ef_construct=layout.hnsw_ef_construct,
                full_scan_threshold=layout.full_scan_threshold_kb,
            ),
            quantization_config=quantization,
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=layout.indexing_threshold_kb),
        )

    def _empty_shard(self, dim: int) -> Path:
        """An empty shard with this layout's payload indexes, made once per process and copied.

        Creating the ten payload indexes costs seconds of fsyncs; a copy of the empty shard is the same
        shard (a shard holds no absolute paths).
        """
        key = json.dumps([dim, repr(self.layout)])
        with _TEMPLATE_LOCK:
            template = _TEMPLATES.get(key)
            if template is None or not template.exists():
                template = Path(tempfile.mkdtemp(prefix="kms-edge-empty-")) / "shard"
                shard = qe.EdgeShard.create(str(template), self._edge_config(dim))
                for field_name, kind in self.layout.payload_indexes.items():
                    shard.update(qe.UpdateOperation.create_field_index(field_name, _index_schema(kind)))
                shard.flush()
                shard.close()
                _TEMPLATES[key] = template
                atexit.register(shutil.rmtree, template.parent, True)
            return template

    def create_collection(self, model: str, dim: int) -> str:
        with self._guard:
            name = self.next_collection_name()
            path = self._dir(name)
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True, mode=0o700)
            shutil.copytree(self._empty_shard(dim), path / "g1")
            meta = {
                "embedder": model,
                "dim": dim,
                "created": dt.datetime.now(dt.UTC).isoformat(),
                "generation": 1,
                "optimized_points": 0,
            }
            _write_json(path / "meta.json", meta)  # last: a collection without meta.json is not one
            return name

    def swap_alias(self, collection: str) -> None:
        live = self._open.get(self._active or "")
        if live is not None and live.warmer is not None:
            # a server asked for a warm index: a reindexed collection goes live read in, too (and a
            # missing one raises here as below)
            warmer = self._collection(collection).warm()
            if warmer is not None:
                warmer.done.wait()
        with self._guard:
            if not (self._dir(collection) / "meta.json").exists():
                raise KmsError(f"no collection {collection!r}")
            aliases = self._read_aliases()
            aliases[self.alias] = collection
            _write_json(self.root / "aliases.json", aliases)
            self._active = collection

    def drop_collection(self, collection: str) -> None:
        with self._guard:
            if collection == self._active:
                return
            opened = self._open.pop(collection, None)
            if opened is not None:
                opened.close()
            shutil.rmtree(self._dir(collection), ignore_errors=True)

    # ---- writes ------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[ChunkPoint], collection: str | None = None) -> None:
        coll = self._collection(collection)
        for start in range(0, len(chunks), WRITE_BATCH):
            points = [self._point(c) for c in chunks[start : start + WRITE_BATCH]]
            coll.update(qe.UpdateOperation.upsert_points(points))
        coll.writes_since_optimize += len(chunks)
        self._maybe_optimize(coll)

    def _maybe_optimize(self, coll: _Collection, *, opened_now: bool = False) -> None:
        """Start a background optimization after enough writes (also those of an earlier process that
        exited before its optimization finished)."""
        threshold = self._auto_optimize
        if threshold is None:
            threshold = self.layout.indexing_threshold_kb * 1024 // (4 * int(coll.meta["dim"]))
        if threshold <= 0 or coll.optimizing:
            return
        pending = coll.writes_since_optimize
        if opened_now:
            if "optimized_points" not in coll.meta:  # written by an older kms: unknown, leave it
                return
            with coll.shard() as shard:
                pending = int(shard.count(qe.CountRequest(exact=True))) - int(
                    coll.meta.get("optimized_points", 0)
                )
        if pending >= threshold:
            coll.optimize(wait=False)

    def _point(self, chunk: ChunkPoint) -> qe.Point:
        vector: dict[str, Any] = {self.layout.dense_name: [float(x) for x in chunk.dense]}
        for name, sparse in chunk.sparse.items():
            if sparse.indices:
                vector[name] = qe.SparseVector(list(sparse.indices), [float(v) for v in sparse.values])
        return qe.Point(chunk_point_id(chunk.doc_id, chunk.version, chunk.chunk_no), vector, chunk.payload)

    def delete_document(
        self, doc_id: str, *, except_version: int | None = None, collection: str | None = None
    ) -> None:
        must_not: list[models.Condition] | None = None
        if except_version is not None:
            must_not = [version_condition(except_version)]
        selector = edge_filter(models.Filter(must=[doc_condition(doc_id)], must_not=must_not))
        assert selector is not None
        self._collection(collection).update(qe.UpdateOperation.delete_points_by_filter(selector))

    def set_payload(self, doc_id: str, payload: dict[str, Any], collection: str | None = None) -> None:
        selector = edge_filter(models.Filter(must=[doc_condition(doc_id)]))
        assert selector is not None
        self._collection(collection).update(qe.UpdateOperation.set_payload_by_filter(selector, payload))

    def delete_payload_keys(self, doc_id: str, keys: list[str], collection: str | None = None) -> None:
        selector = edge_filter(models.Filter(must=[doc_condition(doc_id)]))
        assert selector is not None
        self._collection(collection).update(qe.UpdateOperation.delete_payload_by_filter(selector, keys))

    def optimize(self, *, wait: bool = True, collection: str | None = None) -> bool:
        return self._collection(collection).optimize(wait=wait)

    def optimizing(self, collection: str | None = None) -> bool:
        return self._collection(collection).optimizing

    # ---- reads -------------------------------------------------------------------------------
    def _params(self) -> qe.SearchParams:
        return qe.SearchParams(
            hnsw_ef=self.layout.hnsw_ef,
            quantization=qe.QuantizationSearchParams(
                rescore=self.layout.rescore, oversampling=self.layout.oversampling
            ),
        )

    def _run(self, request: qe.QueryRequest) -> list[ScoredChunk]:
        with self._collection().shard() as shard:
            points = shard.query(request)
        return scored_chunks(points)

    def _prefetch(self, prefetch: models.Prefetch) -> qe.Prefetch:
        if prefetch.query is None:
            raise InvalidInput("a prefetch needs a query vector")
        nested = [self._prefetch(p) for p in _as_list(prefetch.prefetch)]
        return qe.Prefetch(
            limit=prefetch.limit or 10,
            query=qe.Query.Nearest(_vector(prefetch.query), using=prefetch.using),
            prefetches=nested or None,
            params=self._params(),
            filter=edge_filter(prefetch.filter),
            score_threshold=prefetch.score_threshold,
        )

    def count(self, query_filter: models.Filter | None) -> int:
        with self._collection().shard() as shard:
            return int(shard.count(qe.CountRequest(exact=True, filter=edge_filter(query_filter))))

    def query(
        self,
        *,
        query: Any,
        using: str,
        query_filter: models.Filter | None,
        limit: int,
        prefetch: list[models.Prefetch] | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[ScoredChunk]:
        return self._run(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(_vector(query), using=using),
                prefetches=[self._prefetch(p) for p in prefetch] if prefetch else None,
                filter=edge_filter(query_filter),
                params=self._params(),
                with_payload=payload_selector(fields),
            )
        )

    def fused_query(
        self,
        *,
        prefetch: list[models.Prefetch],
        weights: list[float],
        k_rrf: int,
        query_filter: models.Filter | None,
        limit: int,
        fusion: str = "rrf",
        fields: Sequence[str] | None = None,
    ) -> list[ScoredChunk]:
        method = qe.Fusion.Dbsf() if fusion == "dbsf" else qe.Fusion.Rrf(k=k_rrf, weights=list(weights))
        return self._run(
            qe.QueryRequest(
                limit=limit,
                query=cast(Any, method),  # the stub omits Rrf
                prefetches=[self._prefetch(p) for p in prefetch],
                filter=edge_filter(query_filter),
                with_payload=payload_selector(fields),
            )
        )

    def recommend(
        self, *, positive: list[str], query_filter: models.Filter | None, limit: int
    ) -> list[ScoredChunk]:
        """Qdrant's default `average_vector` strategy: nearest to the mean of the examples' vectors."""
        if not positive:
            return []
        dense = self.layout.dense_name
        with self._collection().shard() as shard:
            records = shard.retrieve(
                [_point_id(p) for p in positive], with_payload=False, with_vector=[dense]
            )
        vectors = [r.vector[dense] for r in records if isinstance(r.vector, dict) and dense in r.vector]
        if not vectors:
            return []
        mean = [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]
        examples = models.HasIdCondition(has_id=list(positive))
        combined = models.Filter(must=[query_filter] if query_filter else None, must_not=[examples])
        return self.query(query=mean, using=dense, query_filter=combined, limit=limit)

    def scroll(
        self,
        query_filter: models.Filter | None,
        *,
        with_vectors: bool = False,
        collection: str | None = None,
        batch: int = 256,
    ) -> Iterator[models.Record]:
        coll = self._collection(collection)
        translated = edge_filter(query_filter)
        offset: Any = None
        while True:
            with coll.shard() as shard:
                records, offset = shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=batch,
                        filter=translated,
                        with_payload=True,
                        with_vector=with_vectors,
                    )
                )
            for record in records:
                yield _record(record)
            if offset is None:
                return

    def close(self) -> None:
        with self._guard:
            for opened in self._open.values():
                opened.close()
            self._open.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _index_schema(kind: str) -> Any:
    if kind == "keyword":
        return qe.PayloadSchemaType.Keyword
    if kind == "integer":
        return qe.IntegerIndexParams(lookup=True, range=True)
    if kind == "datetime":
        return qe.PayloadSchemaType.Datetime
    if kind == "text":
        return qe.PayloadSchemaType.Text
    raise KmsError(f"unknown payload index type {kind!r} in collection.yaml")
