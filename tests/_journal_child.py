"""Child process for the crash tests: logs synthetic layer rows at full speed.

Usage: python _journal_child.py LOG_DIR RUN_ID FLUSH_ROWS ROLL_ROWS N_LAYERS PROGRESS_FILE [chain]

With ``chain`` the child installs its own SIGTERM handler (raising ``SystemExit(7)``) before
opening the writer, which must flush and then call it.

Prints ``ready`` once the writer is open, then ``flushed <step>`` each time the writer reports a
completed flush (the line is printed after the flush returned, so the parent may rely on every
step up to it). Before each call it stores the step in PROGRESS_FILE[0] and after it in
PROGRESS_FILE[1] (a shared memory map that survives the process).
"""

import signal
import sys

import numpy as np

from streamtopo.io import RunWriter
from tests.journal_rows import layer_row


def main() -> None:
    log_dir, run_id = sys.argv[1], sys.argv[2]
    flush_rows, roll_rows, n_layers = (int(a) for a in sys.argv[3:6])
    if sys.argv[7:] == ["chain"]:

        def handler(signum, frame):
            raise SystemExit(7)

        signal.signal(signal.SIGTERM, handler)
    progress = np.memmap(sys.argv[6], dtype=np.int64, mode="r+", shape=(2,))
    writer = RunWriter(
        log_dir, run_id=run_id, flush_rows=flush_rows, roll_rows=roll_rows, resume="allow"
    )
    start = writer.next_step_
    print("ready", start, flush=True)
    seen = -1
    step = start
    while True:
        row = layer_row(step, n_layers)
        progress[0] = step
        writer(row)
        progress[1] = step
        if writer.flushed_step_ != seen:
            seen = writer.flushed_step_
            print("flushed", seen, flush=True)
        step += 1


if __name__ == "__main__":
    main()
