"""``crystalgnn pretrain``: masked-atom pretraining of an element embedding (CrysToGraph)."""

from __future__ import annotations

import argparse

HELP = "pretrain an element embedding by masked-atom prediction (CrysToGraph); use it as --atom-features cgcnn+pretrained:RUN"

DESCRIPTION = """\
Masked-atom pretraining (CrysToGraph, Appendix A.1). Cells of fewer than --min-atoms atoms become
m x m x m supercells (m = ceil((8/n)^(1/3))); in every batch round(0.15 n) atoms of each crystal are
selected (at least 1), of which 80 % get a mask token, 10 % a random element and 10 % stay
unchanged (--mask-split code: the reference code's 80/2/18); an embedding (Z 1-100 + mask token)
-> 3 CGCNN gated convolutions on the cached radius graph (41 distance Gaussians) -> Linear ->
Softplus -> Linear learns to name the original element of the selected atoms. Targets are not read.

RUN receives config.json, embedding.safetensors (the learned element table, row Z = element Z, +
.json metadata), model.safetensors, metrics.json (loss and masked-element accuracy per epoch, the
majority-element baseline) and learning_curve.png. Then:

  crystalgnn train DATA -t NAME --run-dir runs/x --atom-features cgcnn+pretrained:RUN

(CGCNN's 92 features followed by the 64 learned ones, CrysToGraph's 156-dim input; any model).
"""


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser("pretrain", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="dataset: anything `crystalgnn train` reads (see crystalgnn --help); its targets are not read")
    p.add_argument("--run-dir", required=True, help="output folder of the pretraining run (required)")
    p.add_argument("--max-items", type=int, default=None, metavar="N", help="read only the first N crystals (default: all)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="unusable items (bad CIF, partial occupancy, element beyond Z 100, ...): stop with the full list (raise, "
                        "default) or leave them out and list them in RUN/skipped.csv (skip)")
    p.add_argument("--cache-dir", default="default", help="graph cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the graph cache (default: use it)")
    p.add_argument("--workers", type=int, default=0, help="processes that build graphs (default 0: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (default: shown)")
    m = p.add_argument_group("masking (defaults: the paper)")
    m.add_argument("--mask-fraction", type=float, default=0.15, help="fraction of each crystal's atoms selected, round(f n), at least 1 (default 0.15)")
    m.add_argument("--mask-split", choices=["paper", "code"], default="paper",
                   help="what the selected atoms become: paper = 80%% mask token / 10%% random element / 10%% unchanged (default); "
                        "code = the reference code's 80/2/18")
    m.add_argument("--min-atoms", type=int, default=8, help="cells with fewer atoms are expanded to m x m x m supercells, m = ceil((min/n)^(1/3)) (default 8)")
    e = p.add_argument_group("encoder (defaults: the reference code)")
    e.add_argument("--width", type=int, default=64, help="embedding and convolution width; the width of the pretrained:RUN features (default 64)")
    e.add_argument("--n-conv", type=int, default=3, help="CGCNN gated convolutions (default 3)")
    e.add_argument("--cutoff", type=float, default=8.0, help="neighbour search radius in Å (default 8)")
    e.add_argument("--max-neighbors", type=int, default=12, help="nearest neighbours kept per atom (default 12)")
    o = p.add_argument_group("training (defaults: the reference code)")
    o.add_argument("--epochs", type=int, default=60, help="epochs (default 60)")
    o.add_argument("--batch-size", type=int, default=32, help="crystals per batch (default 32)")
    o.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    o.add_argument("--weight-decay", type=float, default=0.0, help="SGD weight decay (default 0)")
    o.add_argument("--step-size", type=int, default=20, help="StepLR: multiply the learning rate by --gamma every this many epochs (default 20)")
    o.add_argument("--gamma", type=float, default=0.1, help="StepLR factor (default 0.1)")
    o.add_argument("--val-fraction", type=float, default=0.1, help="crystals held out to report masked-element accuracy on (default 0.1)")
    o.add_argument("--seed", type=int, default=123, help="seed of the split, the weights, the batch order and the masks (default 123)")
    o.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: the cores other processes are not busy on)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from crystalgnn.config import GraphConfig
    from crystalgnn.training.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        max_items=args.max_items, on_error=args.on_error, graph=GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors),
        min_atoms=args.min_atoms, mask_fraction=args.mask_fraction, mask_split=args.mask_split, width=args.width, n_conv=args.n_conv,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        step_size=args.step_size, gamma=args.gamma, val_fraction=args.val_fraction, seed=args.seed, threads=args.threads,
    )
    result = pretrain(args.data, args.run_dir, cfg, cache_dir=None if args.no_cache else args.cache_dir, workers=args.workers,
                      progress=not args.quiet)
    print(result.summary())
    return 0
