"""The network's certificate authority, node certificates, TLS contexts and signatures.

One HQ CA (ECDSA P-256) issues a certificate per node. A node certificate names its node id three
ways, which must agree: the subject CN (`mission/jp-tokyo`), a URI SAN `urn:kms:node:<id>`, and a
DNS SAN `<hash>.nodes.kms` (node ids contain `/`, which a DNS name cannot). A client connecting to
HQ asks for HQ's DNS name through SNI with hostname checking on, so the handshake itself fails
unless the server holds HQ's certificate. The same node key signs replication changes.

Layout under the network dir (`<data>/network` unless `KMS_NETWORK_DIR` says otherwise):
    ca/ca.key (0600), ca/ca.crt          the CA: only where `kms network init-ca` ran (HQ, or offline)
    node/node.key (0600), node/node.crt  this node's identity
    node/ca.crt                          the CA certificate every peer is checked against
Nothing secret is ever written with wider permissions than 0600, and nothing here reads a header.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kms.errors import ConfigError, KmsError

URI_PREFIX = "urn:kms:node:"
DNS_SUFFIX = ".nodes.kms"
CA_DAYS = 3650
NODE_DAYS = 730


class PeerRejected(KmsError):
    """A peer certificate or a signature did not check out."""


def dns_name(node_id: str) -> str:
    """The DNS SAN standing for a node id (ids contain `/`): a fixed-length digest label."""
    return hashlib.sha256(node_id.encode("utf-8")).hexdigest()[:32] + DNS_SUFFIX


@dataclass(frozen=True)
class NodePaths:
    """Where a node keeps its identity and, at HQ, the CA."""

    root: Path

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def node_dir(self) -> Path:
        return self.root / "node"

    @property
    def node_key(self) -> Path:
        return self.node_dir / "node.key"

    @property
    def node_cert(self) -> Path:
        return self.node_dir / "node.crt"

    @property
    def trust(self) -> Path:
        """The CA certificate peers are verified against."""
        return self.node_dir / "ca.crt"

    def has_identity(self) -> bool:
        return self.node_key.is_file() and self.node_cert.is_file() and self.trust.is_file()


# ---- files -----------------------------------------------------------------------------------
def _write_private(path: Path, data: bytes) -> None:
    """Write a secret 0600 from the start (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an EC private key")
    return key


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(f"missing certificate {path}: see `kms network issue-cert`") from exc


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# ---- the CA and node certificates --------------------------------------------------------------
def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_ca(paths: NodePaths, *, name: str = "kms network CA", force: bool = False) -> x509.Certificate:
    """Create the CA key (0600) and self-signed certificate; refuses to replace an existing CA."""
    if paths.ca_key.exists() and not force:
        raise ConfigError(f"a CA already exists at {paths.ca_key.parent} (replacing it orphans every node)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(paths.ca_key, _key_pem(key))
    _write_public(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def issue_node_cert(paths: NodePaths, node_id: str, out_dir: Path, *, days: int = NODE_DAYS) -> Path:
    """Issue `node_id` a fresh key and certificate into `out_dir` (node.key 0600, node.crt, ca.crt)."""
    from kms.network.nodes import check_node_id

    check_node_id(node_id)
    ca_key = load_private_key(paths.ca_key)
    ca_cert = load_cert(paths.ca_cert)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(URI_PREFIX + node_id),
                    x509.DNSName(dns_name(node_id)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(out_dir / "node.key", _key_pem(key))
    _write_public(out_dir / "node.crt", cert.public_bytes(serialization.Encoding.PEM))
    _write_public(out_dir / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    return out_dir


def cert_node_id(cert: x509.Certificate) -> str:
    """The node id a certificate names; its CN, URI SAN and DNS SAN must all agree."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise PeerRejected("certificate has no single common name")
    node_id = str(names[0].value)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise PeerRejected("certificate has no subject alternative names") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    dns = san.get_values_for_type(x509.DNSName)
    if uris != [URI_PREFIX + node_id] or dns != [dns_name(node_id)]:
        raise PeerRejected(f"certificate names disagree for {node_id!r}")
    return node_id


def peer_node_id(peercert: dict[str, Any] | None) -> str | None:
    """The node id of a TLS peer from `SSLObject.getpeercert()` (only set once the CA verified it)."""
    if not peercert:
        return None
    common = [value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"]
    if len(common) != 1:
        return None
    node_id = str(common[0])
    alt = peercert.get("subjectAltName", ())
    uris = [value for kind, value in alt if kind == "URI"]
    dns = [value for kind, value in alt if kind == "DNS"]
    if uris != [URI_PREFIX + node_id] or dns != [dns_name(node_id)]:
        return None
    return node_id


def verify_issued_by(cert: x509.Certificate, ca: x509.Certificate, *, node_id: str) -> None:
    """Raise unless `cert` is a valid, current node certificate for `node_id` signed by `ca`."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PeerRejected(f"certificate of {node_id!r} is not issued by the network CA") from exc
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise PeerRejected(f"certificate of {node_id!r} is not valid now")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if constraints.ca:
        raise PeerRejected("a CA certificate cannot act as a node")
    if cert_node_id(cert) != node_id:
        raise PeerRejected(f"certificate names {cert_node_id(cert)!r}, expected {node_id!r}")


# ---- signatures ------------------------------------------------------------------------------
def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def verify(cert: x509.Certificate, data: bytes, signature: str) -> None:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PeerRejected("signer key is not an EC key")
    try:
        public.verify(base64.b64decode(signature, validate=True), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as exc:
        raise PeerRejected("bad signature") from exc


# ---- TLS ---------------------------------------------------------------------------------------
def _base_context(purpose: int, paths: NodePaths) -> ssl.SSLContext:
    if not paths.has_identity():
        raise ConfigError(
            f"no node certificate in {paths.node_dir}: run `kms network issue-cert NODE_ID --out DIR` "
            "at HQ and copy node.key, node.crt and ca.crt there"
        )
    load_private_key(paths.node_key)  # refuses a key readable by others
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(paths.node_cert, paths.node_key)
    context.load_verify_locations(cafile=paths.trust)  # only the network CA: never the system store
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def server_context(paths: NodePaths) -> ssl.SSLContext:
    """TLS for the replication listener: a client certificate from the network CA is required."""
    return _base_context(ssl.PROTOCOL_TLS_SERVER, paths)


def client_context(paths: NodePaths) -> ssl.SSLContext:
    """TLS for talking to a peer: present our certificate, accept only the CA's, check the name."""
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, paths)
    context.check_hostname = True
    return context
