"""Replication throughput: a mission catching up 10,000 chunks from HQ, access changes, pushes.

    python benchmarks/sync.py [--docs 1000] [--chunks-per-doc 10] [--access 200] [--push 200]

HQ runs as a real `kms serve` process with its mutual-TLS replication listener on loopback; the
missions run in this process and call the same `sync_once` their sync loop calls. Vectors are
SYNTHETIC (random unit vectors of the real model's dimension; the sparse vectors are the real
encoding of synthetic Vietnamese text), written straight into HQ's index and registry in the
crash-safe order, so the run measures replication, not embedding. Prints one JSON object:

- catch-up of the whole corpus by a first mission (HQ builds each content bundle on first request)
  and by a second one (bundles cached: what every further mission of 150 costs HQ);
- bytes on the wire per change and per chunk (TLS payload, vectors + text + original, gzipped);
- access-only changes (re-classifications: no content travels) and mission -> HQ pushes, per second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from benchmarks.common import emit, free_port
from ingest.components.chunk_writer import chunk_payload
from kms.config import Settings
from kms.db.models import DocumentRow
from kms.db.registry import set_allow
from kms.index.sparse import encode_passage
from kms.index.store import ChunkPoint
from kms.network import pki
from kms.network.changes import record_change
from kms.network.client import SyncReport, sync_once
from kms.network.node import NodeContext
from kms.services import Services

TOKYO, PARIS = "mission/jp-tokyo", "mission/fr-paris"
WORDS = [
    "hợp",
    "tác",
    "kinh",
    "tế",
    "đầu",
    "tư",
    "thương",
    "mại",
    "xuất",
    "khẩu",
    "nông",
    "sản",
    "du",
    "lịch",
    "giáo",
    "dục",
    "lao",
    "động",
    "cảng",
    "biển",
    "logistics",
    "năng",
    "lượng",
    "chuyển",
    "đổi",
    "số",
    "ngoại",
    "giao",
    "đại",
    "sứ",
    "quán",
    "bảo",
    "hộ",
    "công",
    "dân",
    "hiệp",
    "định",
    "hội",
    "nghị",
    "song",
    "phương",
    "đa",
    "phương",
    "phát",
    "triển",
    "bền",
    "vững",
    "khoa",
    "học",
    "công",
    "nghệ",
    "văn",
    "hóa",
    "thị",
    "thực",
    "lãnh",
    "sự",
]


def synthetic_write(services: Services, docs: int, chunks_per_doc: int, *, prefix: str, origin: str) -> int:
    """Documents with random unit vectors, written like ChunkWriter (index first, then registry + change)."""
    rng = random.Random(8)
    vectors = np.random.default_rng(8)
    model, dim = services.store.info().model, services.store.info().dim  # type: ignore[union-attr]
    written = 0
    for number in range(docs):
        doc_id = f"{prefix}-{number:06d}"
        texts = [" ".join(rng.choices(WORDS, k=60)).capitalize() + "." for _ in range(chunks_per_doc)]
        full = "\n\n".join(texts)
        digest = services.originals.put(full.encode("utf-8"))
        meta: dict[str, Any] = {
            "doc_id": doc_id,
            "title": f"Báo cáo {doc_id}",
            "doc_type": "report",
            "issued_date": "2025-03-14",
            "language": "vi",
            "owner_unit": "hq/economic",
            "origin_node": origin,
            "classification": "internal",
            "allow": ["all-staff"],
        }
        points = []
        start = 0
        for chunk_no, text in enumerate(texts):
            dense = vectors.standard_normal(dim).astype("float32")
            dense /= np.linalg.norm(dense)
            chunk_meta = {**meta, "chunk_no": chunk_no, "start": start, "end": start + len(text)}
            start += len(text) + 2
            points.append(
                ChunkPoint(
                    doc_id=doc_id,
                    version=1,
                    chunk_no=chunk_no,
                    dense=[float(x) for x in dense],
                    sparse=encode_passage(text),
                    payload=chunk_payload(chunk_meta, text, 1, services.classification),
                )
            )
        services.store.upsert(points)
        with services.sessions() as session:
            row = DocumentRow(
                doc_id=doc_id,
                version=1,
                status="indexed",
                sha256=digest,
                title=meta["title"],
                doc_type="report",
                issued_date=dt.date(2025, 3, 14),
                language="vi",
                classification="internal",
                classification_rank=services.classification.rank("internal"),
                owner_unit="hq/economic",
                original_sha256=digest,
                file_name=f"{doc_id}.txt",
                origin_node=origin,
                chunk_count=chunks_per_doc,
                text=full,
            )
            session.add(row)
            set_allow(session, row, ["all-staff"])
            record_change(session, row, "upsert")
            session.commit()
        written += chunks_per_doc
    del model
    return written


def mission(root: Path, node_id: str, hq_port: int) -> Services:
    return Services.open(
        Settings(  # type: ignore[call-arg]
            data_dir=root / node_id.replace("/", "_"),
            node_role="mission",
            node_id=node_id,
            hq_url=f"https://127.0.0.1:{hq_port}",
        )
    )


def timed_sync(services: Services) -> tuple[SyncReport, float]:
    started = time.perf_counter()
    report = sync_once(NodeContext(services))
    seconds = time.perf_counter() - started
    if report.error:
        raise SystemExit(f"sync failed: {report.error}")
    return report, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--chunks-per-doc", type=int, default=10)
    parser.add_argument("--access", type=int, default=200, help="access-only changes to replicate")
    parser.add_argument("--push", type=int, default=200, help="mission documents to push to HQ")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kms-bench-sync-") as tmp:
        root = Path(tmp)
        hq_net = pki.NodePaths(root / "hq" / "network")
        pki.init_ca(hq_net)
        pki.issue_node_cert(hq_net, "hq", hq_net.node_dir)
        for node_id in (TOKYO, PARIS):
            pki.issue_node_cert(hq_net, node_id, root / node_id.replace("/", "_") / "network" / "node")

        hq = Services.open(Settings(data_dir=root / "hq"))  # type: ignore[call-arg]
        started = time.perf_counter()
        chunks = synthetic_write(hq, args.docs, args.chunks_per_doc, prefix="hq", origin="hq")
        write_s = time.perf_counter() - started
        hq.close()

        port, api_port = free_port(), free_port()
        env = {
            **os.environ,
            "KMS_DATA_DIR": str(root / "hq"),
            "KMS_REPLICATION_PORT": str(port),
            "KMS_WORKER_IN_SERVE": "false",
            "KMS_LOG_LEVEL": "WARNING",
        }
        log = (root / "hq.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "kms.cli.main", "serve", "--port", str(api_port)],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"HQ did not start: {(root / 'hq.log').read_text()[-2000:]}")
                time.sleep(0.3)
            token = (root / "hq" / "serve.token").read_text().strip()

            tokyo = mission(root, TOKYO, port)
            cold, cold_s = timed_sync(tokyo)
            held = tokyo.store.count(None)
            paris = mission(root, PARIS, port)
            warm, warm_s = timed_sync(paris)

            headers = {"authorization": f"Bearer {token}"}
            for number in range(args.access):  # re-classify: no content needs to travel
                response = httpx.put(
                    f"http://127.0.0.1:{api_port}/api/v1/admin/documents/hq-{number:06d}/access",
                    json={"classification": "public", "allow": ["all-staff"]},
                    headers=headers,
                    timeout=60,
                )
                response.raise_for_status()
            access, access_s = timed_sync(tokyo)

            synthetic_write(tokyo, args.push, 2, prefix="tokyo-report", origin=TOKYO)
            push, push_s = timed_sync(tokyo)
            tokyo.close()
            paris.close()
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()
    emit(
        {
            "bench": "sync",
            "vectors": "synthetic (random unit vectors); real sparse encoding; real TLS 1.3 over loopback",
            "docs": args.docs,
            "chunks": chunks,
            "chunks_at_mission": held,
            "hq_synthetic_write_s": round(write_s, 2),
            "catchup_first_mission_s": round(cold_s, 2),
            "catchup_next_mission_s": round(warm_s, 2),
            "changes_per_s_first": round(cold.pulled / cold_s, 1),
            "changes_per_s_next": round(warm.pulled / warm_s, 1),
            "chunks_per_s_next": round(chunks / warm_s, 1),
            "bytes_per_change": round(warm.bytes_in / max(1, warm.pulled)),
            "bytes_per_chunk": round(warm.bytes_in / max(1, chunks)),
            "access_changes": access.pulled,
            "access_changes_per_s": round(access.pulled / access_s, 1),
            "access_bytes_per_change": round(access.bytes_in / max(1, access.pulled)),
            "pushed": push.pushed,
            "push_changes_per_s": round(push.pushed / push_s, 1),
            "push_bytes_per_change": round(push.bytes_out / max(1, push.pushed)),
            "ratio_next_to_first": round(warm_s / cold_s, 2),
        }
    )


if __name__ == "__main__":
    main()
