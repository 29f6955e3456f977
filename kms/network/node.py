"""What one node needs to replicate: its identity, the network config, and its bundle files."""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, or_, select

from kms.db.models import DocumentRow
from kms.db.network_models import BundleRow
from kms.network import bundle as bundles
from kms.network.nodes import NetworkConfig, NodeSpec, load_network
from kms.network.pki import NodePaths, load_cert, load_private_key, verify_issued_by
from kms.network.state import network_dir
from kms.services import Services

log = logging.getLogger(__name__)


class NodeContext:
    """This node inside the network. Certificates are read lazily (a node without one still runs)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.node_id = services.settings.node_id
        self.paths = NodePaths(network_dir(services.settings))
        self.bundles = bundles.BundleFiles(self.paths.root / "bundles")
        self.spool = bundles.BundleFiles(self.paths.root / "spool")
        self._build_lock = threading.Lock()
        self._verified: dict[str, x509.Certificate] = {}

    @cached_property
    def key(self) -> ec.EllipticCurvePrivateKey:
        return load_private_key(self.paths.node_key)

    @cached_property
    def cert(self) -> x509.Certificate:
        return load_cert(self.paths.node_cert)

    @cached_property
    def ca(self) -> x509.Certificate:
        return load_cert(self.paths.trust)

    def network(self) -> NetworkConfig:
        return load_network(self.settings.index_config_dir, self.services.classification)

    def own_spec(self) -> NodeSpec | None:
        """This node as nodes.yaml describes it (a mission checks its own ceiling with it)."""
        return self.network().nodes.get(self.node_id)

    def peer_cert(self, pem: str, node_id: str) -> x509.Certificate:
        """A peer's certificate sent in a message, accepted only if the network CA issued it to `node_id`."""
        cached = self._verified.get(pem)
        if cached is not None and cached.not_valid_after_utc.timestamp() > time.time():
            return cached
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        verify_issued_by(cert, self.ca, node_id=node_id)
        self._verified = {pem: cert}  # one signer at a time; a renewed certificate replaces it
        return cert

    def model(self) -> tuple[str, int]:
        info = self.services.store.info()
        if info is None:
            return self.services.settings.embedder, 0
        return info.model, info.dim

    def ensure_bundle(self, row: DocumentRow) -> tuple[str, int]:
        """(sha256, gzipped size) of `row`'s current version's bundle, building it once."""
        model, dim = self.model()
        with self.services.sessions() as session:
            existing = session.scalars(
                select(BundleRow).where(
                    BundleRow.doc_id == row.doc_id, BundleRow.version == row.version, BundleRow.model == model
                )
            ).first()
            if existing is not None and self.bundles.path(existing.sha256).is_file():
                return existing.sha256, existing.stored_bytes
        with self._build_lock:
            raw = bundles.build(self.services, row, model=model, dim=dim, origin=self.node_id)
            sha = bundles.sha256_hex(raw)
            compressed = bundles.compress(raw)
            self.bundles.put(sha, compressed)
            with self.services.sessions() as session:
                stale = session.scalars(
                    select(BundleRow).where(
                        BundleRow.doc_id == row.doc_id,
                        or_(BundleRow.version != row.version, BundleRow.model != model),
                    )
                ).all()
                for old in stale:
                    self.bundles.discard(old.sha256)
                session.execute(delete(BundleRow).where(BundleRow.sha256.in_([old.sha256 for old in stale])))
                session.execute(
                    delete(BundleRow).where(
                        BundleRow.doc_id == row.doc_id,
                        BundleRow.version == row.version,
                        BundleRow.model == model,
                    )
                )
                session.add(
                    BundleRow(
                        sha256=sha,
                        doc_id=row.doc_id,
                        version=row.version,
                        model=model,
                        raw_bytes=len(raw),
                        stored_bytes=len(compressed),
                        chunks=row.chunk_count,
                        created_ts=time.time(),
                    )
                )
                session.commit()
        return sha, len(compressed)

    def bundle_row(self, sha: str) -> BundleRow | None:
        with self.services.sessions() as session:
            return session.get(BundleRow, sha)

    def document(self, doc_id: str) -> DocumentRow | None:
        with self.services.sessions() as session:
            return session.get(DocumentRow, doc_id)
