"""Signing key files on disk: generate, write (0600, atomically), parse and validate, delete, fingerprint.

Layout of the keys directory (default ``keys/``), one pair of files per key::

    <kid>.pem    PKCS#8 PEM private key, unencrypted, mode 0600
    <kid>.json   {"kid": "<kid>", "alg": "ES256", "created_at": "2027-01-15T08:00:00Z",
                  "activate_at": "2027-01-15T08:05:00Z"}

``kid`` is the RFC 7638 thumbprint (SHA-256, base64url) of the public key; the file name and the optional
``kid`` member must both equal it. ``alg`` is ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA, 2048 bits or
more) and must match the key type. Instants are ISO-8601 with an explicit UTC offset (``Z`` is written) or
numbers of seconds since the Unix epoch; ``created_at`` is informational and optional, ``activate_at`` is
required. Hidden files, README.md, .gitignore and other names are ignored, as is a ``.json`` file whose name
is not shaped like a kid. Every problem is reported, each naming its file, in one ``ConfigError``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker.errors import ConfigError
from broker.signing.jwks import PublicKey, public_jwk, thumbprint

log = logging.getLogger(__name__)

ALGORITHMS = ("ES256", "EdDSA", "RS256")
MIN_RSA_BITS = 2048
NEW_RSA_BITS = 3072
_KID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True, eq=False)
class SigningKey:
    """One parsed key pair with its schedule; the key objects never appear in a repr."""

    kid: str
    alg: str
    activate_at: float
    created_at: float | None
    path: Path
    private_key: PrivateKey = field(repr=False)
    public_key: PublicKey = field(repr=False)
    jwk: dict[str, str] = field(repr=False)  # public JWK with kid, alg and use, as published


def format_instant(instant: float) -> str:
    return datetime.fromtimestamp(math.floor(instant), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 UTC time or epoch seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number of epoch seconds")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 time") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (write it with Z)")
        return moment.timestamp()
    raise ValueError("must be an ISO-8601 UTC time or epoch seconds")


def _check_key(key: object) -> tuple[str, PrivateKey]:
    """The only algorithm a key type may be used with; a key never signs under two algorithms."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC curve {key.curve.name} is not supported (use P-256 for ES256)")
        return "ES256", key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA", key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return "RS256", key
    raise ValueError(f"unsupported key type {type(key).__name__} (use ES256, EdDSA or RS256 keys)")


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=NEW_RSA_BITS)
    raise ValueError(f"unsupported algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")


def _published_jwk(public_key: PublicKey, alg: str) -> tuple[str, dict[str, str]]:
    jwk = public_jwk(public_key)
    kid = thumbprint(jwk)
    return kid, {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass(frozen=True, eq=False)
class _Parsed:
    alg: str
    kid: str
    private_key: PrivateKey = field(repr=False)
    public_key: PublicKey = field(repr=False)
    jwk: dict[str, str] = field(repr=False)


# Parsed PEMs by SHA-256 of the file's bytes. Parsing validates RSA keys, which costs ~0.1 s per key; a
# reload after `broker keys new` must not pay that again for every unchanged key.
ParseCache = dict[bytes, _Parsed]


def _parse_pem(data: bytes, known: ParseCache, used: ParseCache) -> _Parsed:
    digest = hashlib.sha256(data).digest()
    parsed = known.get(digest)
    if parsed is not None:
        used[digest] = parsed
        return parsed
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message may quote file contents; ours does not.
        raise ValueError("not an unencrypted PEM private key") from None
    alg, private_key = _check_key(loaded)
    public_key = private_key.public_key()
    kid, jwk = _published_jwk(public_key, alg)
    parsed = used[digest] = _Parsed(alg=alg, kid=kid, private_key=private_key, public_key=public_key, jwk=jwk)
    return parsed


def _read_key(pem_path: Path, meta_path: Path, known: ParseCache, used: ParseCache) -> SigningKey:
    """Parse one key pair; ValueError carries a message that names no secret."""
    try:
        data = pem_path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read key file ({exc.strerror})") from None
    parsed = _parse_pem(data, known, used)
    alg, kid = parsed.alg, parsed.kid
    if pem_path.stem != kid:
        raise ValueError(f"file name does not match the key's thumbprint {kid}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"metadata file {meta_path.name} is missing") from None
    except OSError as exc:
        raise ValueError(f"cannot read metadata file {meta_path.name} ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"metadata file {meta_path.name} is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ValueError(f"metadata file {meta_path.name} must hold a JSON object")
    if "kid" in meta and meta["kid"] != kid:
        raise ValueError(f"kid in {meta_path.name} does not match the key's thumbprint {kid}")
    if meta.get("alg") != alg:
        raise ValueError(f"alg in {meta_path.name} is {meta.get('alg')!r} but the key is an {alg} key")
    if "activate_at" not in meta:
        raise ValueError(f"{meta_path.name} has no activate_at")
    try:
        activate_at = parse_instant(meta["activate_at"])
        created_at = parse_instant(meta["created_at"]) if meta.get("created_at") is not None else None
    except ValueError as exc:
        raise ValueError(f"{meta_path.name}: {exc}") from None
    try:
        mode = os.stat(pem_path).st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("signing key file %s is readable by others (mode %o); use 0600", pem_path, mode & 0o777)
    return SigningKey(kid=kid, alg=alg, activate_at=activate_at, created_at=created_at, path=pem_path,
                      private_key=parsed.private_key, public_key=parsed.public_key, jwk=parsed.jwk)


def _relevant(name: str) -> bool:
    return not name.startswith(".") and (name.endswith(".pem") or name.endswith(".json"))


def load_keys(keys_dir: Path, cache: ParseCache | None = None) -> list[SigningKey]:
    """Every key pair in the directory (none if it does not exist); ConfigError lists every bad file.

    With a cache, PEMs seen before are not parsed again, and entries for vanished files are dropped.
    """
    if not keys_dir.exists():
        return []
    if not keys_dir.is_dir():
        raise ConfigError([f"{keys_dir}: the keys directory is not a directory"])
    try:
        names = sorted(entry.name for entry in os.scandir(keys_dir) if _relevant(entry.name))
    except OSError as exc:
        raise ConfigError([f"{keys_dir}: cannot list the keys directory ({exc.strerror})"]) from None
    keys: list[SigningKey] = []
    problems: list[str] = []
    used: ParseCache = {}
    for name in names:
        path = keys_dir / name
        if name.endswith(".json"):
            stem = name.removesuffix(".json")
            if _KID_SHAPE.match(stem) and stem + ".pem" not in names:
                problems.append(f"{path}: metadata without its key file {stem}.pem")
            continue
        try:
            keys.append(_read_key(path, path.with_suffix(".json"), cache or {}, used))
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
    if cache is not None:  # keep exactly the PEMs still present
        cache.clear()
        cache.update(used)
    if problems:
        raise ConfigError(problems)
    return keys


def fingerprint(keys_dir: Path) -> Fingerprint:
    """Names, sizes, inodes and mtimes of the key files: cheap to take, changes whenever a file does."""
    try:
        entries = [entry for entry in os.scandir(keys_dir) if _relevant(entry.name)]
    except OSError:
        return ()
    rows: list[tuple[str, int, int, int]] = []
    for entry in entries:
        try:
            st = entry.stat()  # follows symlinks, so a swapped Kubernetes secret mount shows up
            rows.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            rows.append((entry.name, -1, -1, -1))
    return tuple(sorted(rows))


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # Write beside the target under a hidden name (ignored by loaders) and rename, so readers never see
    # half a file; O_EXCL plus fchmod make the mode exact whatever the umask.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_key(keys_dir: Path, *, alg: str, activate_at: float, created_at: float) -> SigningKey:
    """Generate a key and write its pair of files; the directory is created (0700) when missing."""
    private_key = generate_private_key(alg)
    public_key = private_key.public_key()
    kid, jwk = _published_jwk(public_key, alg)
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem_path = keys_dir / f"{kid}.pem"
    if pem_path.exists():
        raise ConfigError([f"{pem_path}: already exists"])
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    meta = {"kid": kid, "alg": alg, "created_at": format_instant(created_at),
            "activate_at": format_instant(activate_at)}
    # Key first, metadata last: the metadata file completes the pair.
    _write_atomically(pem_path, pem, 0o600)
    _write_atomically(pem_path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode(), 0o644)
    return SigningKey(kid=kid, alg=alg, activate_at=parse_instant(meta["activate_at"]),
                      created_at=parse_instant(meta["created_at"]), path=pem_path,
                      private_key=private_key, public_key=public_key, jwk=jwk)


def delete_key(key: SigningKey) -> None:
    key.path.unlink(missing_ok=True)
    key.path.with_suffix(".json").unlink(missing_ok=True)
