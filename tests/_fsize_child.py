"""Child process for the real write-failure test: RLIMIT_FSIZE makes the kernel refuse writes
beyond a file size (EFBIG, "File too large"), exactly where a full disk refuses them (ENOSPC).

Usage: python _fsize_child.py LOG_DIR LIMIT_BYTES. Prints one JSON line with the warnings seen.
"""

import json
import resource
import signal
import sys
import warnings

from streamtopo.io import RunWriter
from tests.journal_rows import layer_row


def main() -> None:
    log_dir, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    w = RunWriter(log_dir, run_id="fs", flush_rows=8, roll_rows=10**6)
    out = {}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        for s in range(200):
            w(layer_row(s))
        out["pending_while_limited"] = w.pending_rows_
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        for s in range(200, 208):
            w(layer_row(s))
        out["pending_after"] = w.pending_rows_
        w.close()
    out["warnings"] = [f"{r.category.__name__}: {r.message}" for r in rec]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
