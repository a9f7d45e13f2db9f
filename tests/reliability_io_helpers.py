"""Shared helpers of the I/O reliability tests (issue 16): runs with several parts, file hashes,
and a file object that runs out of space after a byte budget."""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path

import pyarrow as pa

from streamtopo.io import RunWriter
from tests.journal_rows import layer_row


def run_with_parts(log_dir: Path, run_id: str = "r", steps: int = 30, roll: int = 10) -> Path:
    """A closed run of ``steps`` layer rows in parts of ``roll`` rows (part-000000 ...)."""
    with RunWriter(log_dir, run_id=run_id, flush_rows=roll, roll_rows=roll) as w:
        for s in range(steps):
            w(layer_row(s))
    return w.run_dir


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (lock files excluded: opening a rank creates one)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.endswith(".lock")
    }


class FullDisk:
    """Stands in for ``pyarrow.OSFile`` in the writer: a real file whose writes fail with
    ``OSError(ENOSPC)`` once ``budget`` bytes (shared by every file) are used up, after writing
    the part that still fits, as a full disk does. ``budget = None``: unlimited."""

    def __init__(self, real: type) -> None:
        self.real = real
        self.budget: int | None = None

    def __call__(self, path: str, mode: str = "rb"):
        if "w" not in mode:
            return self.real(path, mode)
        if self.budget is not None and self.budget <= 0:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return pa.PythonFile(_Limited(self, io.FileIO(path, "w")), mode="w")


class _Limited(io.RawIOBase):
    def __init__(self, disk: FullDisk, raw: io.FileIO) -> None:
        self.disk, self.raw = disk, raw

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        budget = self.disk.budget
        if budget is not None and len(data) > budget:
            if budget > 0:
                self.raw.write(data[:budget])
            self.disk.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        if budget is not None:
            self.disk.budget = budget - len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.raw.tell()

    def fileno(self) -> int:
        return self.raw.fileno()

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()
        super().close()


def rows(writer: RunWriter, steps, **kw) -> None:
    for s in steps:
        writer(layer_row(s, **kw))
