"""One journal file: an Arrow IPC stream a table appends one batch per flush to.

Appending never leaves a half batch behind: the position before each batch is kept, and a
failed write (disk full, read-only, fsync error) cuts the file back to it, so the journal ends
after its last complete batch and reads cleanly (a stream without its end-of-stream marker is
read to its end). The writer then opens a new journal for the next flush.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

__all__ = ["Journal"]


class Journal:
    """An open journal of one table (``rows`` counts its complete batches' rows)."""

    def __init__(self, path: Path, schema: pa.Schema, *, fsync: bool) -> None:
        self.path, self.schema, self.fsync = path, schema, fsync
        self._sink = pa.OSFile(str(path), "wb")
        self._ipc = pa.ipc.new_stream(self._sink, schema)  # writes nothing before a batch
        self.rows = 0

    def append(self, batch: pa.RecordBatch) -> None:
        """Write one batch; on failure the file is cut back and closed, and this raises."""
        good = self._sink.tell()
        try:
            self._ipc.write_batch(batch)
            if self.fsync:
                os.fsync(self._sink.fileno())
        except BaseException:
            self._abandon(good)
            raise
        self.rows += batch.num_rows

    def _abandon(self, good: int) -> None:
        try:
            self._sink.close()
        except Exception:
            pass
        try:
            if good == 0:
                self.path.unlink(missing_ok=True)  # not even the schema is complete
            else:
                os.truncate(self.path, good)
        except OSError:
            pass  # what was cut short reads as a torn batch: readers stop before it
        self.abandoned = good

    abandoned: int | None = None  # file size kept after a failed append (0: file removed)

    def close(self) -> tuple[Path, pa.Schema]:
        """Write the end-of-stream marker and close; ``(path, schema)`` for the roll."""
        good = self._sink.tell()
        try:
            self._ipc.close()
            if self.fsync:
                os.fsync(self._sink.fileno())
        except Exception:
            try:  # a journal without its marker reads the same; half a marker reads as torn
                os.truncate(self.path, good)
            except OSError:
                pass
        try:
            self._sink.close()
        except Exception:
            pass
        return self.path, self.schema
