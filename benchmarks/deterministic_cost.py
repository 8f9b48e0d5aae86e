"""What ``--deterministic`` costs: the same training command with the default threads and with
``--deterministic`` (one thread, deterministic algorithms), alternating, whole-command wall time.

Default data: the first 800 crystals of ``../shared/data/mp_elasticity3k`` (log10 G), 5 epochs of
the default CGCNN; the graph cache is warmed first so both sides only train.

    python benchmarks/deterministic_cost.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_elasticity3k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=800, help="crystals (800)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crystalgnn-det-"))
    folder = work / "data"
    folder.mkdir()
    rows = (DATA / "id_prop.csv").read_text().splitlines()[: args.n]
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        (folder / f"{row.split(',')[0]}.cif").symlink_to(DATA / f"{row.split(',')[0]}.cif")
    env = {**os.environ, "CRYSTALGNN_CACHE": str(work / "cache")}
    base = [sys.executable, "-m", "crystalgnn", "train", str(folder), "-t", "1", "--transform", "log10", "--quiet"]

    def run(extra: list[str], name: str) -> float:
        start = time.perf_counter()
        subprocess.run([*base, "--run-dir", str(work / name), "--epochs", str(args.epochs), *extra], env=env, check=True,
                       capture_output=True)
        return time.perf_counter() - start

    run(["--epochs", "1"], "warm")  # builds the graph cache
    times: dict[str, list[float]] = {"default threads": [], "--deterministic": []}
    for k in range(args.repeats):
        times["default threads"].append(run([], f"d{k}"))
        times["--deterministic"].append(run(["--deterministic"], f"x{k}"))
    for name, values in times.items():
        print(f"{name:16s} min {min(values):.2f} s  median {statistics.median(values):.2f} s")
    ratio = statistics.median(times["--deterministic"]) / statistics.median(times["default threads"])
    print(f"--deterministic / default: {ratio:.2f}x  (load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
