"""Audit appends with the log's checkpoints in the commits (SQLite's default) and on a thread
(`kms serve`, `kms.db.checkpoint`), interleaved in one run on two SQLite files.

    python benchmarks/audit_append.py [--appends 3000] [--pace-ms 5]

Every search appends one record like the ones written here, so an append's tail is a search's
tail. Appends alternate between the two databases at a search-like pace (`--pace-ms` between
pairs: the background thread checkpoints once a second, as in `kms serve`). Prints one JSON
object: each variant's append latency percentiles in microseconds, how many appends took more than
four times the variant's median, and the ratios background ÷ in-commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import emit  # noqa: E402
from kms.db.checkpoint import start_wal_checkpoints  # noqa: E402
from kms.db.session import make_engine, make_session_factory  # noqa: E402
from kms.security import audit  # noqa: E402

DETAIL: dict[str, Any] = {  # what a search records (kms/api/routes/search.py)
    "query": "nghị quyết về chuyển đổi số trong ngành ngoại giao giai đoạn 2021-2025",
    "mode": "hybrid",
    "k": 10,
    "offset": 0,
    "filters": {},
    "total": 64,
    "results": [f"doc-{n:032x}" for n in range(10)],
}


def figures(samples_us: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples_us)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    median = statistics.median(ordered)
    return {
        "p50_us": pick(0.50),
        "p95_us": pick(0.95),
        "p99_us": pick(0.99),
        "p999_us": pick(0.999),
        "max_us": round(ordered[-1], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
        "over_4x_median": sum(1 for s in ordered if s > 4 * median),
    }


def timed_append(sessions: Any) -> float:
    started = time.perf_counter()
    audit.append(sessions, actor="bench", action="search", detail=DETAIL)
    return (time.perf_counter() - started) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000, help="appends per variant")
    parser.add_argument("--pace-ms", type=float, default=5.0, help="pause between two pairs of appends")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kms-audit-bench-") as work:
        files = {"in_commit": Path(work) / "in_commit.db", "background": Path(work) / "background.db"}
        engines = {name: make_engine(f"sqlite:///{path}") for name, path in files.items()}
        checkpointer = start_wal_checkpoints(engines["background"], writers=audit.APPEND_LOCK)  # as kms serve
        variants = {name: make_session_factory(engine) for name, engine in engines.items()}
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(50):  # connections opened, statements compiled
            for sessions in variants.values():
                timed_append(sessions)
        for number in range(args.appends):
            for name in list(variants)[:: 1 if number % 2 else -1]:  # neither always goes first
                samples[name].append(timed_append(variants[name]))
            time.sleep(args.pace_ms / 1000)
        if checkpointer is not None:
            checkpointer.stop()
        wal_bytes = {name: os.path.getsize(f"{path}-wal") for name, path in files.items()}
        for engine in engines.values():
            engine.dispose()
    result: dict[str, Any] = {"benchmark": "audit_append", "appends": args.appends, "pace_ms": args.pace_ms}
    for name, values in samples.items():
        result[name] = figures(values)
    result["wal_file_bytes"] = wal_bytes
    result["background_checkpoints"] = checkpointer.checkpoints if checkpointer is not None else 0
    for key in ("p50", "p99", "p999", "mean"):
        ratio = float(result["background"][f"{key}_us"]) / float(result["in_commit"][f"{key}_us"])
        result[f"background_over_in_commit_{key}"] = round(ratio, 3)
    emit(result)


if __name__ == "__main__":
    main()
