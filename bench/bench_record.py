"""What ``ductaflow.record`` costs in a loop, beside writing the JSON file on every call.

Run: ``python bench/bench_record.py [N]`` (default 5,000 calls). Both write
into a temporary instance directory; ``record`` writes ``metrics.json`` at
once, then at most every 0.2 s (a background timer writes the last values).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(n: int) -> None:
    """Time N record() calls, N atomic writes of the same dict, and N plain dict updates."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DUCTAFLOW_RUN_DIR"] = tmp  # as ductaflow sets it for a flow's kernel
        import ductaflow

        start = time.perf_counter()
        for i in range(n):
            ductaflow.record("loop", i)
        ours = time.perf_counter() - start
        values: dict[str, int] = {}
        start = time.perf_counter()
        for i in range(n):
            values["loop"] = i
            path = Path(tmp) / "by_hand.json"
            path.with_suffix(".tmp").write_text(json.dumps(values))
            os.replace(path.with_suffix(".tmp"), path)
        by_hand = time.perf_counter() - start
        time.sleep(0.5)  # the background write
        assert json.loads((Path(tmp) / "metrics.json").read_text()) == {"loop": n - 1}
        print(f"{n} calls: record {ours:.3f} s ({ours / n * 1e6:.1f} us/call)")
        print(
            f"  atomic write per call {by_hand:.3f} s ({by_hand / n * 1e6:.1f} us/call) x{by_hand / ours:.1f}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
