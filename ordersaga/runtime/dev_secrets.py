"""Secrets that dev mode makes up once and keeps in its data folder.

Outside dev mode every secret comes from settings and a missing one stops
start-up; in dev mode (`make dev`, or any component run with
ORDERSAGA_DEV_MODE=true and the same data folder) each is created on first use,
owner-readable only, and read back by every process and every restart, so the
components agree without anyone copying secrets around.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRETS_FOLDER = "secrets"


def secret_path(data_dir: Path, name: str) -> Path:
    return data_dir / SECRETS_FOLDER / name


def read_or_create(data_dir: Path, name: str, make: bytes | None = None) -> bytes:
    """The secret `name`, created with `make` (default: 32 random bytes, hex) if absent.

    Safe against concurrent first use by several processes: the file is
    created exclusively, and a loser of that race reads the winner's.
    """
    path = secret_path(data_dir, name)
    with contextlib.suppress(FileNotFoundError):
        return _read_complete(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    content = make if make is not None else secrets.token_hex(32).encode()
    temporary = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        # link() fails if another process got there first: theirs wins.
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_complete(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return content


def _read_complete(path: Path) -> bytes:
    content = path.read_bytes()
    if not content:
        raise RuntimeError(f"{path} is empty; delete it to let dev mode make a new one")
    return content


def read_or_create_text(data_dir: Path, name: str) -> str:
    return read_or_create(data_dir, name).decode("ascii").strip()
