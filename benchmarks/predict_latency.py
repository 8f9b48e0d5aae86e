"""Wall time of ``crystalgnn predict RUN one.cif``: what a user waits for one prediction.

Times the whole command (interpreter start, imports, loading the run, reading the CIF, building its
graph, predicting) over several runs and prints min / median. With ``--baseline-src DIR`` the same
command runs, alternating, with another checkout's ``src/`` first on ``PYTHONPATH`` (e.g. an older
commit: ``git worktree add /tmp/base <rev>`` then ``--baseline-src /tmp/base/src``) and the ratio
is printed. The run directory is one of ``tests/fixtures/legacy_runs`` by default, which code both
before and after the model registry can load.

    python benchmarks/predict_latency.py --baseline-src /tmp/base/src --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mp_elasticity3k"


def one_run(src: Path, run_dir: Path, cif: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "crystalgnn.cli", "predict", str(run_dir), str(cif)],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"predict failed with {src}:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "tests" / "fixtures" / "legacy_runs" / "cgcnn")
    parser.add_argument("--cif", type=Path, default=DATA / "5.cif")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="src/ of another checkout to time in the same run")
    args = parser.parse_args()
    sides = {"ours": ROOT / "src", **({"baseline": args.baseline_src} if args.baseline_src else {})}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for src in sides.values():
        one_run(src, args.run_dir, args.cif)  # warm the OS file cache once per side
    for _ in range(args.repeats):
        for name, src in sides.items():
            times[name].append(one_run(src, args.run_dir, args.cif))
    for name, values in times.items():
        print(f"{name:9s} min {min(values):.2f} s  median {statistics.median(values):.2f} s  ({len(values)} runs)")
    if "baseline" in times:
        ratio = statistics.median(times["baseline"]) / statistics.median(times["ours"])
        print(f"baseline / ours (medians): {ratio:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
