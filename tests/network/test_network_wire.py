"""Framing, bundles and the change log, without a network."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from kms.db.models import DocumentRow
from kms.db.session import make_engine, make_session_factory
from kms.errors import InvalidInput
from kms.network import bundle, changes, wire


def test_frames_round_trip_and_truncation_is_refused() -> None:
    body = wire.pack({"shas": ["a", "b"]}, [b"x" * 10, b""])
    assert wire.unpack(body) == ({"shas": ["a", "b"]}, [b"x" * 10, b""])
    for broken in (body[:-3], b"nope" + body, wire.MAGIC):
        with pytest.raises(InvalidInput):
            wire.unpack(broken)


def test_bundles_are_checked_against_the_signed_digest_before_anything_is_decoded() -> None:
    raw = bundle.canonical(
        {
            "format": 1,
            "doc_id": "d",
            "version": 1,
            "model": "m",
            "dim": 2,
            "meta": {},
            "chunks": [],
            "original": None,
        }
    )
    parsed = bundle.parse(raw, expected_sha256=bundle.sha256_hex(raw), sparse_names=set())
    assert (parsed.doc_id, parsed.version, parsed.chunks) == ("d", 1, [])
    with pytest.raises(bundle.BadBundle, match="digest"):
        bundle.parse(raw + b" ", expected_sha256=bundle.sha256_hex(raw), sparse_names=set())
    lying = bundle.canonical(
        {
            "format": 1,
            "doc_id": "d",
            "version": 1,
            "model": "m",
            "dim": 2,
            "meta": {"original_sha256": "00" * 32},
            "chunks": [],
            "original": {"sha256": "00" * 32, "data": "aGVsbG8="},
        }
    )
    with pytest.raises(bundle.BadBundle, match="original"):
        bundle.parse(lying, expected_sha256=bundle.sha256_hex(lying), sparse_names=set())


def test_decompression_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * 2_000_000)
    assert len(bundle.decompress(bomb)) == 2_000_000
    with pytest.raises(bundle.BadBundle):
        bundle.decompress(bomb, limit=1_000_000)
    with pytest.raises(bundle.BadBundle):
        bundle.decompress(b"not gzip")


def test_bundle_files_accept_only_digests(tmp_path: Path) -> None:
    files = bundle.BundleFiles(tmp_path)
    with pytest.raises(bundle.BadBundle):
        files.path("../../etc/passwd")
    sha = "ab" * 32
    files.put(sha, b"data")
    assert files.get(sha) == b"data" and files.path(sha).stat().st_mode & 0o777 == 0o600


def test_the_change_log_is_gap_free_and_compacts_to_each_documents_latest_change(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    sessions = make_session_factory(engine)
    plan = [
        ("a", "upsert"),
        ("b", "upsert"),
        ("a", "access"),
        ("c", "upsert"),
        ("b", "delete"),
        ("a", "upsert"),
    ]
    with sessions() as session:
        for doc_id in "abc":
            session.add(DocumentRow(doc_id=doc_id, allow=["all-staff"], origin_node="hq"))
        session.commit()
        seqs = []
        for doc_id, kind in plan:
            row = session.get(DocumentRow, doc_id)
            assert row is not None
            seqs.append(changes.record_change(session, row, kind))
            session.commit()
    assert seqs == [1, 2, 3, 4, 5, 6]
    with sessions() as session:
        page = changes.compacted(session, 0, limit=10)
        assert [(p.doc_id, p.seq) for p in page] == [("c", 4), ("b", 5), ("a", 6)]
        assert page[2].kinds == {"upsert", "access"}
        first = changes.compacted(session, 0, limit=1)
        assert [(p.doc_id, p.seq) for p in first] == [("c", 4)]  # safe to advance to 4: a and b come later
        assert [(p.doc_id, p.seq) for p in changes.compacted(session, 4, limit=10)] == [("b", 5), ("a", 6)]
        assert changes.backlog(session, 4)[0] == 2
        assert changes.head(session).seq == 6 and changes.head(session).log_id
    engine.dispose()
