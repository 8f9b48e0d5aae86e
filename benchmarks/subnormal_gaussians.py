"""CGCNN training steps with the distance Gaussians as the plain formula (``torch.exp``, which
leaves subnormal float32 values, < 1.2e-38, for distances about 9–10 widths from a centre)
against ours (:func:`crystalgnn.models.blocks.exp_without_subnormals`: those values are 0), on
the same batches in the same process, alternating, so machine load hits both alike.

CPU matrix products run many times slower on subnormal operands; the weight gradient of each
gated convolution multiplies the 41 Gaussians of every bond in the batch, so the loss grows with
the bonds per batch. The batches here are the largest cells of ``mp_elasticity3k`` (the real data
of the other benchmarks), ``--batch-size`` crystals each.

    python benchmarks/subnormal_gaussians.py          # writes benchmarks/results/subnormal_gaussians.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, RESULTS, machine_info  # noqa: E402


def timed_step(module, optimizer, batch) -> float:
    """Seconds of one training step (forward, backward, AdamW update)."""
    start = time.perf_counter()
    loss = module.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16, 64], help="crystals per batch (16 64)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per size (4)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch

    import crystalgnn.models.blocks as blocks
    from crystalgnn.config import defaults_for
    from crystalgnn.data.prepared import make_loader, prepare
    from crystalgnn.io import load_dataset
    from crystalgnn.training.module import build_module
    from crystalgnn.training.run import finalize_config

    warnings.filterwarnings("ignore", ".*self.trainer.* reference is not registered.*")  # steps outside a Trainer
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = blocks.exp_without_subnormals
    data = load_dataset(DATA / "mp_elasticity3k", targets=[1], transform="log10")
    cfg = defaults_for("cgcnn")
    prepared = prepare(data, cfg.graph_inputs(), cfg.features, progress=False)
    cfg = finalize_config(cfg, data, prepared)
    largest = np.argsort(-prepared.store.num_atoms, kind="stable")
    rows = []
    for batch_size in args.batch_size:
        chosen = largest[: batch_size * (args.batches + 1)]
        targets = prepared.targets[chosen]
        module = build_module(cfg, targets.mean(0), targets.std(0))
        optimizer = torch.optim.AdamW(module.parameters(), 1e-3)
        batches = list(make_loader(prepared, chosen, batch_size))

        blocks.exp_without_subnormals = ours
        timed_step(module, optimizer, batches[0])  # warm-up
        seconds = {"plain torch.exp": 0.0, "no subnormals (ours)": 0.0}
        for batch in batches[1:]:
            for name, basis in (("plain torch.exp", torch.exp), ("no subnormals (ours)", ours)):
                blocks.exp_without_subnormals = basis
                seconds[name] += timed_step(module, optimizer, batch) / (len(batches) - 1)
        blocks.exp_without_subnormals = ours
        bonds = int(np.mean([b.edge_index.shape[1] for b in batches[1:]]))
        ratio = seconds["plain torch.exp"] / seconds["no subnormals (ours)"]
        rows.append({"batch_size": batch_size, "bonds_per_batch": bonds, "atoms_per_crystal": float(prepared.store.num_atoms[chosen].mean()),
                     **{f"{k} s/step": round(v, 4) for k, v in seconds.items()}, "ratio": round(ratio, 2)})
        print(f"batch {batch_size:4d} ({bonds} bonds): plain {seconds['plain torch.exp']:.3f} s/step, "
              f"ours {seconds['no subnormals (ours)']:.3f} s/step: {ratio:.2f}x", flush=True)
    out = RESULTS / "subnormal_gaussians.json"
    out.write_text(json.dumps({"rows": rows, "threads": args.threads, "machine": machine_info()}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
