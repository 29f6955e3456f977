"""Warm the search path when `kms serve` opens the index, before it accepts requests.

A freshly opened index answers its first queries slowly: memory-mapped vectors and posting lists are
read from disk on first touch, and the embedder, the engine and the allocator start cold (at 1M chunks
the first hundred queries had p95 116 ms, later ones 51 ms). Within a time budget, `warm_up` first
waits for the store to read its files in (the edge backend's preload, kms/index/preload.py), then
runs a few searches of each mode, so users pay neither. The searches' results go nowhere and nothing
is audited: no one asked. They run as a reader with the highest clearance and no groups, so they take
the same filtered path as users' searches.
"""

from __future__ import annotations

import itertools
import logging
import time

from kms.domain import Principal, SearchMode, SearchQuery
from kms.search import SearchService

log = logging.getLogger(__name__)

QUERIES = (
    "nghị quyết của chính phủ về chuyển đổi số",
    "bảo hộ công dân việt nam ở nước ngoài",
    "hợp tác kinh tế với các nước asean",
    "quy dinh ve xuat nhap canh",  # typed without diacritics
    "báo cáo tình hình khu vực",
    "consular protection of citizens abroad",
    "thông tư hướng dẫn thi hành nghị định",
    "chính sách đối ngoại đa phương",
)
MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "sparse")


def warm_up(service: SearchService, budget_s: float) -> int:
    """Run searches until every query ran in every mode or `budget_s` is spent (checked after each
    search); the number run."""
    started = time.monotonic()
    # Starts the store's read-in even without a budget to wait for it (it goes on in the background).
    if not service.services.store.wait_warm(budget_s) and budget_s > 0:
        log.info("warm-up: the index was still being read in after %.1f s", budget_s)
    if budget_s <= 0:
        return 0
    levels = service.services.classification.levels
    principal = Principal(user_id="kms:warm-up", clearance=levels[-1].id, unit="")
    done = 0
    for text, mode in itertools.product(QUERIES, MODES):
        service.search(principal, SearchQuery(query=text, mode=mode, k=10))
        done += 1
        if time.monotonic() - started >= budget_s:
            break
    log.info("warm-up: %d searches in %.1f s", done, time.monotonic() - started)
    return done
