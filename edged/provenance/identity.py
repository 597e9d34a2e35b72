"""The box's signing identity: a private key and its certificate chain.

Configured (`[provenance] cert_file` / `key_file`), or made on first start in the data dir. c2pa
refuses a self-signed signing certificate, so the box makes a small CA of its own, issues the
signing certificate from it and throws the CA's key away: the chain c2pa sees is the box's
certificate (key usage digitalSignature, extended key usage emailProtection, not a CA) and the
CA's. Nothing trusts that CA, so verifiers report the box's signatures as untrusted; bring a
certificate from a CA the verifiers trust to change that.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edged.config import ProvenanceConfig
from edged.errors import ConfigError, StartupError
from edged.fileio import write_atomically
from edged.paths import PRIVATE_DIR_MODE, read_private_file

logger = logging.getLogger(__name__)

PROVENANCE_DIR = "provenance"  # in the data dir, mode 0700
KEY_FILE = "box.key"  # PKCS#8 PEM, 0600
CERT_FILE = "box.crt"  # the box's certificate, then its CA's; 0600
SELF_MADE_ORGANIZATION = "edged self-made (untrusted)"
VALID_DAYS = 3650
CLOCK_SLACK = datetime.timedelta(days=2)  # a box whose clock is a little behind still signs

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
Algorithm = Literal["Ed25519", "ES256"]


@dataclass(frozen=True)
class SigningIdentity:
    """A loaded key and its chain (signing certificate first); loaded once, used from threads."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    self_made: bool
    cert_path: Path
    key_path: Path

    @property
    def algorithm(self) -> Algorithm:
        return "Ed25519" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "ES256"

    @property
    def subject(self) -> str:
        return self.chain[0].subject.rfc4514_string()

    def chain_pem(self) -> list[str]:
        return [cert.public_bytes(serialization.Encoding.PEM).decode() for cert in self.chain]

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """True when `signature` over `data` is `key`'s (Ed25519, or ECDSA with SHA-256)."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def signing_key(key: object) -> PublicKey | None:
    """A certificate's public key when it is one edged signs with, else None."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def load_identity(config: ProvenanceConfig, data_dir: Path, node: str) -> SigningIdentity:
    """The configured identity, or the box's own (made on first start); blocking."""
    if bool(config.cert_file) != bool(config.key_file):
        missing = "key_file" if config.cert_file else "cert_file"
        raise ConfigError(
            f"provenance.{missing} is empty: set provenance.cert_file and provenance.key_file "
            "together, or neither for the box's own (untrusted) certificate"
        )
    if config.cert_file:
        cert_path = Path(config.cert_file).expanduser()
        key_path = Path(config.key_file).expanduser()
        return _read_identity(cert_path, key_path, self_made=False)
    folder = data_dir / PROVENANCE_DIR
    try:
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        folder.chmod(PRIVATE_DIR_MODE)
    except OSError as error:
        raise StartupError(f"cannot create {folder}: {error.strerror}") from error
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() != key_path.exists():  # never a new key in place of a lost half
        present, lost = (key_path, cert_path) if key_path.exists() else (cert_path, key_path)
        raise StartupError(
            f"{lost} is missing beside {present}: restore it, or remove both for a new key "
            "(clips and recordings signed so far then no longer verify against this box)"
        )
    if not cert_path.exists():
        _write_self_made(cert_path, key_path, node, datetime.datetime.now(datetime.UTC))
        logger.info("provenance: made the box's signing key and certificate in %s", folder)
    return _read_identity(cert_path, key_path, self_made=True)


def read_identity(cert_path: Path, key_path: Path) -> SigningIdentity:
    """An identity already on disk (the clip worker loads the daemon's); blocking."""
    return _read_identity(cert_path, key_path, self_made=False)


def _read_identity(cert_path: Path, key_path: Path, *, self_made: bool) -> SigningIdentity:
    key_text = read_private_file(key_path, "provenance key file")
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_path.read_bytes()))
    except OSError as error:
        raise StartupError(f"cannot read certificate file {cert_path}: {error.strerror}") from error
    except ValueError:
        raise StartupError(f"certificate file {cert_path} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_text.encode(), password=None)
    except (ValueError, TypeError):
        raise StartupError(f"key file {key_path} holds no unencrypted PEM private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) or (
        signing_key(key.public_key()) is None
    ):
        raise StartupError(f"key file {key_path}: edged signs with Ed25519 or ECDSA P-256 keys")
    leaf_key = chain[0].public_key()
    if leaf_key.public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise StartupError(
            f"key file {key_path} is not the key of the first certificate in {cert_path}"
        )
    return SigningIdentity(key, chain, self_made, cert_path, key_path)


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_self_made(cert_path: Path, key_path: Path, node: str, now: datetime.datetime) -> None:
    """A fresh Ed25519 key, its certificate and the CA that issued it; the CA's key is dropped."""
    authority_key = ed25519.Ed25519PrivateKey.generate()
    key = ed25519.Ed25519PrivateKey.generate()
    authority_name = _name(f"edged CA {node}")
    authority = (
        _builder(authority_name, authority_name, authority_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificates=True), critical=True)
        .sign(authority_key, None)
    )
    certificate = (
        _builder(_name(f"edged {node}"), authority_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificates=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, None)
    )
    pem = serialization.Encoding.PEM
    key_bytes = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomically(key_path, key_bytes, mode=0o600)
    write_atomically(
        cert_path, certificate.public_bytes(pem) + authority.public_bytes(pem), mode=0o600
    )
    os.chmod(key_path, 0o600)  # a temporary file left by a crash kept its own mode: be sure
    os.chmod(cert_path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SELF_MADE_ORGANIZATION),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: PublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SLACK)
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _key_usage(*, certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificates,
        crl_sign=certificates,
        encipher_only=False,
        decipher_only=False,
    )
