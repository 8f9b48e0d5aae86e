"""CGCNN training-step variants of the gated convolution, alternating on the same batches in one process.

The speed-ups of ``cgcnn_peer.py`` measured one at a time: each variant has its own copy of the same
initial model and SGD optimizer, and every batch is stepped by every variant in turn (forward,
MSE, backward, step), so contention from other jobs falls on all of them alike. Reported: the
median process CPU time per step (``time.process_time``: less disturbed by other jobs than wall
time; page faults count as system time) and the first losses (equal up to float rounding when a
variant is exact).

Variants: ``concat`` (the earlier forward: ``z = [v_i | v_j | u_ij]`` concatenated per edge, one
Linear over the E edges), ``fused`` (per-atom products gathered to the edges + the distance product,
out-of-place adds), ``fused_inplace`` (the current ``GatedConv.forward``), ``fused_index_add``
(the message sum by ``index_add`` instead of PyG's ``scatter``). The allocator setting of
``train()`` (``keep_freed_memory``) is process-wide, so it is compared by running the script twice
(``--keep-freed-memory``).

Usage::

    python benchmarks/cgcnn_step_ab.py --n 500                        # glibc defaults
    python benchmarks/cgcnn_step_ab.py --n 500 --keep-freed-memory

Results: ``benchmarks/results/cgcnn-step-ab[-keep-freed-memory].json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA_CACHE, machine_info, mp37k_subset, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="random mp37k crystals to draw batches from")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the batches (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep-freed-memory", action="store_true", help="apply train()'s allocator setting first")
    parser.add_argument("--data-cache", type=Path, default=DEFAULT_DATA_CACHE)
    parser.add_argument("--graph-cache", type=Path, default=Path.home() / ".cache" / "crystalgnn" / "cgcnn-step-ab-graphs")
    args = parser.parse_args()

    import numpy as np
    import torch
    from torch_geometric.utils import scatter

    from crystalgnn.config import defaults_for
    from crystalgnn.data.prepared import prepare
    from crystalgnn.models import cgcnn
    from crystalgnn.training.module import build_module
    from crystalgnn.training.trainer import keep_freed_memory

    applied = keep_freed_memory() if args.keep_freed_memory else False
    torch.set_num_threads(args.threads)
    cfg = defaults_for("cgcnn")
    data = mp37k_subset(args.data_cache, args.n, "random", seed=0)
    prepared = prepare(data, cfg.graph_inputs(), cfg.features, args.graph_cache, workers=1, progress=False)
    store, y = prepared.store, prepared.targets
    rng = np.random.default_rng(0)
    size = min(256, len(store))
    batches = [store.collate(np.sort(rng.choice(len(store), size, replace=False)), y[:size]) for _ in range(args.batches)]

    def gate_and_sum(self, x, pre, target, index_add=False):
        gate, core = self.bn_edges(pre).chunk(2, dim=-1)
        messages = torch.sigmoid(gate) * self.softplus(core)
        if index_add:
            summed = torch.zeros(x.shape[0], messages.shape[1], dtype=messages.dtype).index_add(0, target, messages)
        else:
            summed = scatter(messages, target, dim=0, dim_size=x.shape[0], reduce="sum")
        return self.softplus(x + self.bn_sum(summed))

    def concat(self, x, edge_index, edge_attr):
        source, target = edge_index
        z = torch.cat([x[target], x[source], edge_attr], dim=-1)
        return gate_and_sum(self, x, self.linear(z), target)

    def fused(self, x, edge_index, edge_attr):
        source, target = edge_index
        f, w = x.shape[1], self.linear.weight
        per_atom = x @ torch.cat([w[:, :f], w[:, f : 2 * f]], dim=0).t()
        pre = torch.addmm(self.linear.bias, edge_attr, w[:, 2 * f :].t())
        pre = pre + per_atom[:, : 2 * f].index_select(0, target) + per_atom[:, 2 * f :].index_select(0, source)
        return gate_and_sum(self, x, pre, target)

    def fused_index_add(self, x, edge_index, edge_attr):
        source, target = edge_index
        return gate_and_sum(self, x, self.edge_linear(x, source, target, edge_attr), target, index_add=True)

    variants = {"concat": concat, "fused": fused, "fused_inplace": cgcnn.GatedConv.forward,
                "fused_index_add": fused_index_add}
    modules, optimizers = {}, {}
    for name in variants:
        torch.manual_seed(0)
        modules[name] = build_module(cfg, y.mean(0), y.std(0))
        modules[name].train()
        optimizers[name] = torch.optim.SGD(modules[name].parameters(), lr=0.01, momentum=0.9)
    original = cgcnn.GatedConv.forward
    cpu = {k: [] for k in variants}
    wall = {k: [] for k in variants}
    losses = {k: [] for k in variants}
    try:
        for _ in range(args.rounds):
            for batch in batches:
                for name, forward in variants.items():
                    cgcnn.GatedConv.forward = forward
                    c, t = time.process_time(), time.perf_counter()
                    loss = torch.nn.functional.mse_loss(modules[name].model(batch).prediction, batch.y)
                    optimizers[name].zero_grad()
                    loss.backward()
                    optimizers[name].step()
                    cpu[name].append(time.process_time() - c)
                    wall[name].append(time.perf_counter() - t)
                    losses[name].append(float(loss))
    finally:
        cgcnn.GatedConv.forward = original
    skip = len(batches)
    results = {"settings": vars(args) | {"data_cache": str(args.data_cache), "graph_cache": str(args.graph_cache)},
               "keep_freed_memory_applied": applied, "machine": machine_info(),
               "batch": {"crystals": size, "atoms": [int(b.num_nodes) for b in batches],
                         "edges": [int(b.edge_index.shape[1]) for b in batches]},
               "variants": {}}
    base = float(np.median(cpu["concat"][skip:]))
    for name in variants:
        med = float(np.median(cpu[name][skip:]))
        results["variants"][name] = {"median_cpu_ms": 1e3 * med, "median_wall_ms": 1e3 * float(np.median(wall[name][skip:])),
                                     "cpu_speedup_vs_concat": base / med, "first_losses": losses[name][:4]}
        print(f"{name:16s} median CPU {1e3 * med:7.1f} ms/step ({base / med:.2f}x concat), wall "
              f"{1e3 * np.median(wall[name][skip:]):7.1f} ms; losses {np.round(losses[name][:4], 5)}")
    results["machine"]["load_average_1_5_15_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    path = write_results(f"cgcnn-step-ab{'-keep-freed-memory' if args.keep_freed_memory else ''}.json", results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
