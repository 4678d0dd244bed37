"""Signing keys for test deployments: the broker's ES256 key and an RS256 key for ID tokens.

Generating an RSA key takes up to a second, so one RS256 key pair is made per test run and its files are copied
into every keys directory that needs one (a key's files are named by its thumbprint, so copies are identical).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from broker.clock import SystemClock
from broker.signing.keyring import create_key

_rsa: list[Path] = []


def _rsa_files() -> Path:
    if not _rsa:
        directory = Path(tempfile.mkdtemp(prefix="broker-test-rsa-"))
        create_key(directory, alg="RS256", activate_at=SystemClock().now() - 3600, clock=SystemClock(),
                   jwks_max_age=300)
        _rsa.append(directory)
    return _rsa[0]


def write_test_keys(directory: Path, *, alg: str = "ES256") -> Path:
    """An active `alg` key (new) and the run's RS256 key, both active now."""
    clock = SystemClock()
    create_key(directory, alg=alg, activate_at=clock.now() - 1, clock=clock, jwks_max_age=300)
    if alg != "RS256":
        for path in _rsa_files().iterdir():
            if path.suffix in (".pem", ".json"):
                shutil.copy2(path, directory / path.name)
    return directory
