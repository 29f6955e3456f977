"""Load test: mixed search / get / similar traffic from many principals against `kms serve`, over loopback.

    python benchmarks/load.py [--duration 300] [--clients 8] [--max-requests 200000] [--workdir DIR]

Builds (once, cached in the workdir) a data dir with the sample corpus and 12 users across units and
clearances, starts `kms serve` on 127.0.0.1, and runs `--clients` client threads for `--duration`
seconds or `--max-requests` requests, whichever comes first (it always stops by itself). Traffic:
60% search (hybrid/dense/sparse), 25% get document, 15% similar documents; a hidden document answers
404, which is correct (errors are anything else but 200/404, and transport failures). The server's
RSS is sampled every 5 s to show whether memory stays flat. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from benchmarks.common import create_users_with_keys, emit, kms_server, percentiles
from kms.config import Settings

USERS = [  # (user, clearance, unit, groups)
    (f"user{i:02d}", clearance, unit, groups)
    for i, (clearance, unit, groups) in enumerate(
        [
            ("public", "hq", ()),
            ("internal", "hq/digital", ()),
            ("internal", "mission/jp-tokyo", ()),
            ("internal", "mission/fr-paris", ("g7",)),
            ("confidential", "hq/consular", ()),
            ("confidential", "hq/policy", ("asean-desk",)),
            ("confidential", "mission/us-washington", ()),
            ("secret", "hq/economic", ("g7",)),
            ("secret", "mission", ()),
            ("secret", "hq/personnel", ()),
            ("top_secret", "hq", ("g7", "asean-desk")),
            ("top_secret", "hq/digital", ()),
        ]
    )
]
QUERIES = [
    "nghị quyết chuyển đổi số ngành ngoại giao",
    "bảo hộ công dân Việt Nam ở nước ngoài",
    "hộ chiếu ngoại giao và hộ chiếu công vụ",
    "ho chieu ngoai giao",
    "hợp tác kinh tế với Nhật Bản",
    "báo cáo tình hình thương mại",
    "digital transformation guidance",
    "292/NQ-CP",
    "quy chế bảo vệ bí mật nhà nước",
    "lễ tân nhà nước",
]


def log(message: str) -> None:
    sys.stderr.write(f"[load {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def prepare(data_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The sample corpus and API keys for USERS (cached): (keys by user, document ids)."""
    keys_file = data_dir / "load-keys.json"
    if keys_file.exists():
        saved = json.loads(keys_file.read_text())
        return saved["keys"], saved["doc_ids"]
    from ingest.runner import ingest_paths
    from kms.demo import samples_dir
    from kms.services import Services

    services = Services.open(Settings(data_dir=data_dir))
    try:
        log("ingesting the sample corpus")
        results = ingest_paths(services, [samples_dir()])
        doc_ids = sorted({r.doc_id for r in results if r.doc_id})
        keys = create_users_with_keys(services, USERS)
    finally:
        services.close()
    keys_file.write_text(json.dumps({"keys": keys, "doc_ids": doc_ids}))
    return keys, doc_ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (at most 3600)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=Settings().data_dir / "bench" / "load")
    args = parser.parse_args()
    duration = min(max(args.duration, 1.0), 3600.0)
    data_dir = args.workdir.resolve()
    keys, doc_ids = prepare(data_dir)

    samples: dict[str, list[float]] = {"search": [], "get": [], "similar": []}
    statuses: dict[str, int] = {}
    errors = 0
    sent = 0
    lock = threading.Lock()
    memory: list[tuple[float, float]] = []
    with kms_server(data_dir) as (base, pid):
        process = psutil.Process(pid)
        started = time.monotonic()
        deadline = started + duration

        def client(seed: int) -> None:
            nonlocal errors, sent
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=60) as http:
                while time.monotonic() < deadline:  # daemon threads: an interrupted run ends them too
                    with lock:
                        if sent >= args.max_requests:
                            return
                        sent += 1
                    user = rng.choice(USERS)[0]
                    headers = {"authorization": f"Bearer {keys[user]}"}
                    roll = rng.random()
                    begun = time.perf_counter()
                    try:
                        if roll < 0.60:
                            kind = "search"
                            body = {
                                "query": rng.choice(QUERIES),
                                "mode": rng.choice(["hybrid", "dense", "sparse"]),
                            }
                            response = http.post("/api/v1/search", json=body, headers=headers)
                        elif roll < 0.85:
                            kind = "get"
                            response = http.get(f"/api/v1/documents/{rng.choice(doc_ids)}", headers=headers)
                        else:
                            kind = "similar"
                            response = http.get(
                                f"/api/v1/documents/{rng.choice(doc_ids)}/similar", headers=headers
                            )
                        status = response.status_code
                    except httpx.HTTPError:
                        kind, status = "transport", -1
                    elapsed = (time.perf_counter() - begun) * 1000
                    with lock:
                        if kind in samples:
                            samples[kind].append(elapsed)
                        statuses[str(status)] = statuses.get(str(status), 0) + 1
                        if status not in (200, 404):
                            errors += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            memory.append((round(time.monotonic() - started, 1), round(process.memory_info().rss / 2**20, 1)))
            for thread in threads:
                thread.join(timeout=5.0 / len(threads))
        elapsed_s = time.monotonic() - started
    total = sum(len(v) for v in samples.values())
    rss = [m for _t, m in memory]
    settle = rss[len(rss) // 5 :] or rss  # after warm-up
    emit(
        {
            "bench": "load",
            "clients": args.clients,
            "duration_s": round(elapsed_s, 1),
            "requests": total,
            "throughput_rps": round(total / elapsed_s, 2),
            "errors": errors,
            "statuses": statuses,
            "latency": {kind: percentiles(values) for kind, values in samples.items() if values},
            "server_rss_mb": {
                "start": rss[0] if rss else None,
                "after_warmup": settle[0] if settle else None,
                "end": rss[-1] if rss else None,
                "max": max(rss) if rss else None,
                "growth_after_warmup_mb": round(settle[-1] - settle[0], 1) if settle else None,
            },
        }
    )


if __name__ == "__main__":
    main()
