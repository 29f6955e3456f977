"""The kill loop: a real `kms worker` process, SIGKILLed at random moments while jobs keep arriving,
restarted each time; then the invariants, checked from the registry, the index and the originals.

Used by tests/ingest/test_crash.py (≥ 20 kills in `make test`) and benchmarks/ingest.py
(`--kill-loop N`, more kills). Each round, before the worker starts again, what an operator or a
mission might submit arrives: new documents, new versions of earlier ones, access changes that
tighten, and a source folder whose files are added, edited and deleted (a `sync` job).

Afterwards every document must be indexed exactly once, as last submitted:
- lost:       a submitted document that is not indexed, or not in its last submitted version;
- duplicated: a document with chunks of two versions, or more chunks than its registry row says;
- stale:      a chunk whose access differs from what was last submitted, or a chunk of a deleted
              document;
and `kms check` must report the registry and the index in agreement.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest import jobs, metadata, sources
from ingest.files import prepare_paths
from kms.config import Settings
from kms.db.job_models import JobRow
from kms.db.models import DocumentRow
from kms.domain import Principal
from kms.services import Services

KMS = [sys.executable, "-m", "kms.cli.main"]
WORDS = [
    "hợp",
    "tác",
    "kinh",
    "tế",
    "thương",
    "mại",
    "đầu",
    "tư",
    "bảo",
    "hộ",
    "công",
    "dân",
    "lãnh",
    "sự",
    "đại",
    "sứ",
    "quán",
    "hội",
    "nghị",
    "đối",
    "ngoại",
    "chuyển",
    "đổi",
    "số",
    "văn",
    "bản",
    "nghị",
    "quyết",
    "chỉ",
    "thị",
    "báo",
    "cáo",
    "tình",
    "hình",
    "khu",
    "vực",
    "an",
    "ninh",
    "biển",
    "đảo",
    "văn",
    "hóa",
    "giáo",
    "dục",
    "du",
    "lịch",
    "lao",
    "động",
    "xuất",
    "khẩu",
    "nông",
    "sản",
    "cà",
    "phê",
    "hồ",
    "tiêu",
    "thủy",
    "sản",
    "năng",
    "lượng",
    "khí",
    "hậu",
]
LEVELS = ("public", "internal", "confidential", "secret")


@dataclass
class Expected:
    sha256: str
    classification: str
    allow: list[str]


@dataclass
class LoopResult:
    kills: int = 0
    kills_during_a_job: int = 0
    documents: int = 0  # expected indexed at the end
    deleted: int = 0  # removed from the source and expected gone
    jobs: int = 0
    lost: int = 0
    duplicated: int = 0
    stale: int = 0
    check_clean: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = self.problems[:20]
        return data


def _text(rng: random.Random, label: str, words: int) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"{label}\n\nĐiều 1. Nội dung\n{body}.\n\nĐiều 2. Hiệu lực\n{label} có hiệu lực từ ngày ký.\n"


class KillLoop:
    def __init__(
        self, root: Path, *, seed: int, max_delay_s: float, delay_cap_s: float = 12.0, log: Any = None
    ) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.max_delay_s = max_delay_s
        self.delay_cap_s = delay_cap_s
        self.data = root / "data"
        self.inbox = root / "inbox"
        self.share = root / "share"
        self.share.mkdir(parents=True)
        self.env = {
            **os.environ,
            "KMS_DATA_DIR": str(self.data),
            "KMS_WORKER_POLL_S": "0.1",
            "KMS_JOB_MAX_ATTEMPTS": "1000",  # the kills are not the jobs' fault
            "KMS_LOG_FORMAT": "json",
            "KMS_LOG_LEVEL": "INFO",
            "HAYSTACK_TELEMETRY_ENABLED": "False",
        }
        for key in ("KMS_QDRANT_URL", "KMS_DATABASE_URL", "KMS_STORE"):
            self.env.pop(key, None)
        self.settings = Settings(data_dir=self.data)  # type: ignore[call-arg]
        self.direct: dict[str, Expected] = {}
        self.log = log or (lambda message: None)
        self.result = LoopResult()
        self.round = 0

    # ---- what arrives between two kills -----------------------------------------------------------
    def submit_round(self, ctx: jobs.QueueContext) -> None:
        self.round += 1
        folder = self.inbox / f"r{self.round:03d}"
        folder.mkdir(parents=True)
        names = [f"d{self.round:03d}-{n}" for n in range(3)]
        known = sorted(self.direct)
        names += self.rng.sample(known, min(2, len(known)))  # new versions of earlier documents
        for doc_id in names:
            previous = self.direct.get(doc_id)
            if previous is not None and self.rng.random() < 0.5:  # same text, tighter access
                level = LEVELS[min(len(LEVELS) - 1, LEVELS.index(previous.classification) + 1)]
                allow = previous.allow[:1]
                text = (self.inbox / "texts" / f"{doc_id}.txt").read_text(encoding="utf-8")
            else:
                level, allow = self.rng.choice(LEVELS[:2]), ["all-staff", f"unit:hq/r{self.round}"]
                text = _text(self.rng, f"Văn bản {doc_id} phiên bản {self.round}", self.rng.randint(60, 320))
            (self.inbox / "texts").mkdir(exist_ok=True)
            (self.inbox / "texts" / f"{doc_id}.txt").write_text(text, encoding="utf-8")
            path = folder / f"{doc_id}.txt"
            path.write_text(text, encoding="utf-8")
            meta = {"doc_id": doc_id, "classification": level, "allow": allow}
            path.with_name(path.name + ".meta.json").write_text(json.dumps(meta), encoding="utf-8")
            self.direct[doc_id] = Expected(hashlib.sha256(text.encode()).hexdigest(), level, allow)
        specs = prepare_paths(ctx, [folder])
        assert not [s.error for s in specs if s.error], [s.error for s in specs]
        jobs.submit(ctx.sessions, specs, submitter=Principal.operator("crash-test"), max_attempts=1000)
        self._change_share()
        sources.sync(ctx, "share", submitter=Principal.operator("crash-test"))

    def _change_share(self) -> None:
        files = sorted(p for p in self.share.glob("*.txt"))
        for n in range(2):
            name = self.share / f"s{self.round:03d}-{n}.txt"
            name.write_text(
                _text(self.rng, f"Tài liệu {name.stem}", self.rng.randint(40, 200)), encoding="utf-8"
            )
        if files:
            edited = self.rng.choice(files)
            edited.write_text(_text(self.rng, f"Sửa {edited.stem} {self.round}", 80), encoding="utf-8")
            sidecar = edited.with_name(edited.name + ".meta.yaml")
            if self.rng.random() < 0.5:  # tighten through a sidecar
                sidecar.write_text("classification: secret\nallow: [group:leadership]\n", encoding="utf-8")
        if len(files) > 3:
            gone = self.rng.choice(files)
            gone.unlink()
            gone.with_name(gone.name + ".meta.yaml").unlink(missing_ok=True)

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self, kills: int) -> LoopResult:
        started = time.monotonic()
        ctx = jobs.QueueContext.open(self.settings)
        try:
            sources.add_source(
                ctx,
                name="share",
                path=self.share,
                defaults={"classification": "internal", "allow": ["all-staff"]},
                schedule_minutes=None,
                created_by="crash-test",
            )
            while self.result.kills < kills:
                self.submit_round(ctx)
                self._start_and_kill()
            self._drain(ctx)
            self.result.jobs = len(jobs.list_jobs(ctx.sessions, Principal.operator(), limit=100000)[0])
        finally:
            ctx.close()
        self._verify()
        self.result.seconds = round(time.monotonic() - started, 1)
        return self.result

    def _start_and_kill(self) -> None:
        log_path = self.root / f"worker-{self.result.kills:03d}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([*KMS, "worker"], env=self.env, stdout=log, stderr=log, cwd="/")
        try:
            self._wait_for(log_path, process, '"msg": "worker ')
            time.sleep(self.rng.uniform(0.0, self.max_delay_s))
            if process.poll() is not None:
                raise AssertionError(f"the worker exited on its own: {log_path.read_text()[-3000:]}")
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.result.kills += 1
        events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        claimed = {e.get("job_id") for e in events if e.get("msg", "").endswith(" claimed")}
        ended = {e.get("job_id") for e in events if e.get("state") in ("succeeded", "failed", "dead")}
        if claimed - ended:
            self.result.kills_during_a_job += 1
        # Keep the kills useful on a fast or a busy machine: a life that finished nothing was too
        # short for progress, one that finished all it claimed was idle when it was killed.
        if not ended:
            self.max_delay_s = min(self.delay_cap_s, self.max_delay_s * 1.5)
        elif not claimed - ended:
            self.max_delay_s = max(1.0, self.max_delay_s * 0.7)
        self.log(
            f"kill {self.result.kills}: round {self.round}, jobs claimed {sorted(claimed)}, finished "
            f"{sorted(ended)}, next delay up to {self.max_delay_s:.1f} s"
        )

    @staticmethod
    def _wait_for(log_path: Path, process: subprocess.Popen[bytes], marker: str) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if marker in log_path.read_text(errors="replace"):
                return
            if process.poll() is not None:
                raise AssertionError(f"the worker did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"the worker did not start in time: {log_path.read_text()[-3000:]}")

    def _drain(self, ctx: jobs.QueueContext) -> None:
        """Restart once more and let everything finish, syncing the share until it has no changes."""
        for _ in range(10):
            out = subprocess.run(
                [*KMS, "worker", "--drain"], env=self.env, capture_output=True, timeout=900, cwd="/"
            )
            assert out.returncode == 0, out.stderr[-3000:]
            job_id, _ = sources.sync(ctx, "share", submitter=Principal.operator("crash-test"))
            with ctx.sessions() as session:
                active = session.query(JobRow).filter(JobRow.state.in_(jobs.ACTIVE_STATES)).count()
            if job_id is None and not active:
                return
        raise AssertionError("the queue did not drain")

    # ---- the invariants ----------------------------------------------------------------------------
    def _expected(self, services: Services) -> dict[str, Expected]:
        expected = dict(self.direct)
        for path in sorted(self.share.glob("*.txt")):
            meta = metadata.resolve(path, self.share, {}, services.classification)
            expected[meta["doc_id"]] = Expected(
                hashlib.sha256(path.read_bytes()).hexdigest(),
                meta.get("classification", "internal"),
                meta.get("allow", ["all-staff"]),
            )
        return expected

    def _verify(self) -> None:
        result = self.result
        services = Services.open(self.settings)
        try:
            expected = self._expected(services)
            result.documents = len(expected)
            with services.sessions() as session:
                rows = {r.doc_id: r for r in session.query(DocumentRow)}
                states = Counter(s for (s,) in session.query(JobRow.state))
                session.expunge_all()
            if set(states) - {"succeeded"}:
                result.problems.append(f"jobs not all succeeded: {dict(states)}")
            chunks: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in services.store.scroll(None):
                payload = record.payload or {}
                chunks[str(payload.get("doc_id"))].append(payload)
            for doc_id, want in expected.items():
                row = rows.get(doc_id)
                if row is None or row.status != "indexed" or row.sha256 != want.sha256:
                    result.lost += 1
                    result.problems.append(f"lost {doc_id}: {row.status if row else 'no row'}")
                    continue
                have = chunks.get(doc_id, [])
                versions = {c["version"] for c in have}
                numbers = Counter(c["chunk_no"] for c in have)
                if versions != {row.version} or len(have) != row.chunk_count or set(numbers.values()) != {1}:
                    result.duplicated += 1
                    result.problems.append(f"duplicated {doc_id}: versions {versions}, {len(have)} chunks")
                rank = services.classification.rank(want.classification)
                for chunk in have:
                    if (
                        chunk.get("classification"),
                        chunk.get("classification_rank"),
                        chunk.get("allow"),
                    ) != (
                        want.classification,
                        rank,
                        want.allow,
                    ):
                        result.stale += 1
                        result.problems.append(f"stale access on {doc_id}: {chunk.get('allow')}")
            gone = [d for d in chunks if d not in expected]
            result.deleted = sum(1 for r in rows.values() if r.status == "deleted")
            for doc_id in gone:
                result.stale += len(chunks[doc_id])
                result.problems.append(f"chunks of removed document {doc_id}")
        finally:
            services.close()
        out = subprocess.run([*KMS, "check", "--json"], env=self.env, capture_output=True, text=True, cwd="/")
        report = json.loads(out.stdout) if out.stdout.strip() else {}
        result.check_clean = out.returncode == 0 and bool(report.get("clean"))
        if not result.check_clean:
            result.problems.append(f"kms check: {out.stdout[-1500:]} {out.stderr[-1500:]}")
