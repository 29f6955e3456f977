"""`GET /metrics`: Prometheus text format, for role `admin` or `auditor` (401 without a credential).

Counts (documents, chunks, jobs by state, queue depth, job durations) are read from the registry
and the index at scrape time, so they cover every worker process, not just this one; request and
search latencies are measured here, by `MetricsMiddleware`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest import jobs
from kms.api.deps import require_role
from kms.db.job_models import JOB_STATES, JobFileRow, JobRow, SourceRow
from kms.db.registry import count_by_status
from kms.domain import Principal
from kms.services import Services

log = logging.getLogger(__name__)
router = APIRouter(tags=["metrics"])

JOB_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SEARCH_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)
SEARCH_PATH = "/api/v1/search"


class RegistryCollector(Collector):
    """Gauges and the job-duration histogram, from the database and the index at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        sessions = self.services.sessions
        with sessions() as session:
            documents = count_by_status(session)
            pending_files = session.scalar(
                select(func.count())
                .select_from(JobFileRow)
                .join(JobRow, JobRow.id == JobFileRow.job_id)
                .where(JobRow.state.in_(jobs.ACTIVE_STATES), JobFileRow.state == "pending")
            )
            sources = session.scalar(select(func.count()).select_from(SourceRow))
        gauge = GaugeMetricFamily("kms_documents", "Documents in the registry, by status", labels=["status"])
        for status in sorted({"indexed", "deleted", *documents}):
            gauge.add_metric([status], documents.get(status, 0))
        yield gauge
        yield GaugeMetricFamily("kms_chunks", "Chunks in the live collection", value=self._chunks())
        states = jobs.counts_by_state(sessions)
        by_state = GaugeMetricFamily("kms_jobs", "Ingestion jobs, by state", labels=["state"])
        for state in JOB_STATES:
            by_state.add_metric([state], states.get(state, 0))
        yield by_state
        yield GaugeMetricFamily("kms_queue_depth", "Jobs waiting for a worker", value=states.get("queued", 0))
        yield GaugeMetricFamily(
            "kms_queue_pending_files",
            "Files not yet processed in queued or running jobs",
            value=pending_files or 0,
        )
        yield GaugeMetricFamily(
            "kms_queue_oldest_age_seconds",
            "Age of the oldest queued job",
            value=jobs.oldest_queued_age_s(sessions),
        )
        yield GaugeMetricFamily("kms_sources", "Source folders kept in sync", value=sources or 0)
        counts, total, seconds = jobs.durations(sessions, JOB_BUCKETS)
        yield HistogramMetricFamily(
            "kms_job_duration_seconds",
            "Run time of finished ingestion jobs (start of the last run to the end)",
            buckets=[*((str(b), c) for b, c in zip(JOB_BUCKETS, counts, strict=True)), ("+Inf", total)],
            sum_value=seconds,
        )

    def _chunks(self) -> int:
        try:
            return self.services.store.count(None)
        except Exception:  # an index being swapped or unreachable must not break the scrape
            log.warning("cannot count chunks for /metrics", exc_info=True)
            return 0


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RegistryCollector(services))
        self.search_latency = Histogram(
            "kms_search_latency_seconds",
            "Latency of POST /api/v1/search, from request to response",
            buckets=SEARCH_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "kms_http_requests",
            "HTTP requests by route template, method and status class",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "kms_http_request_duration_seconds",
            "Latency of HTTP requests by route template",
            ["route"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


ACCESS_LOG = logging.getLogger("kms.access")


def _access_line(scope: Scope, status: int, elapsed_s: float) -> None:
    """uvicorn's access line (`kms serve` turns uvicorn's own off), with the request's duration."""
    if not ACCESS_LOG.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    query = scope.get("query_string", b"")
    path = scope.get("path", "") + (f"?{query.decode('latin-1')}" if query else "")
    ACCESS_LOG.info(
        '%s - "%s %s HTTP/%s" %d',
        f"{client[0]}:{client[1]}" if client else "-",
        scope.get("method", ""),
        path,
        scope.get("http_version", "1.1"),
        status,
        extra={"duration_ms": round(elapsed_s * 1000, 2)},
    )


class MetricsMiddleware:
    """Times every HTTP request; route templates (not raw paths) keep the label set small."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:  # the response is on its way: nothing here delays it
            elapsed = time.perf_counter() - started
            _access_line(scope, status, elapsed)
            route: Any = scope.get("route")
            template = str(getattr(route, "path", "")) or "unmatched"
            self.metrics.requests.labels(template, scope.get("method", ""), f"{status // 100}xx").inc()
            self.metrics.request_latency.labels(template).observe(elapsed)
            if scope.get("path") == SEARCH_PATH and status < 400:
                self.metrics.search_latency.observe(elapsed)


MetricsReader = Annotated[Principal, Depends(require_role("admin", "auditor"))]


@router.get("/metrics", response_class=Response)
def metrics(request: Request, _reader: MetricsReader) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
