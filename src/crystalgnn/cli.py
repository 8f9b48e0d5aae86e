"""Command line: ``crystalgnn train | predict | evaluate | featurize | baseline | probe | periodicity |
importance``. ``crystalgnn COMMAND --help`` explains each."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

DESCRIPTION = """\
crystalgnn: graph neural networks for crystal properties (CGCNN on a cached, fast core).

  crystalgnn train DATA --target NAME --run-dir runs/x     train, write a run directory
  crystalgnn predict runs/x new_cifs/ -o predictions.csv   predict new structures
  crystalgnn evaluate runs/x labelled_data/                metrics of a run on labelled data

Gong et al. (descriptors, learnability, periodicity):
  crystalgnn featurize DATA -o descriptors.csv              structural descriptor bank
  crystalgnn train DATA -t NAME --run-dir d --descriptors   de-CGCNN (Eq. 14); --hybrid frozen: Eq. S5
  crystalgnn baseline DATA -t NAME --run-dir rf             random forest on descriptors / composition
  crystalgnn probe DATA --out probe/                        R² of the model on each descriptor (Fig. 2)
  crystalgnn periodicity --out periodicity/                 1D chain study (Fig. 3e-h, S3)
  crystalgnn importance runs/de --plain runs/plain          feature importance, representation R² (Fig. 4c, S6a)

DATA is a CGCNN folder (id_prop.csv + <id>.cif), an ALIGNN folder (POSCAR files), a CSV(.gz)
with a CIF column, a MatBench-style JSON(.gz), an extxyz file, or a generated dataset
'chains:short' / 'chains:long' (1D carbon chains of Gong et al., target 'a').
"""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", "-t", action="append", dest="targets", metavar="NAME",
                   help="target column name or 0-based index; repeat for several targets (default: all target columns of id_prop.csv)")
    p.add_argument("--transform", choices=["none", "log10"], default=None, help="transform targets before training, e.g. log10 for elastic moduli")
    p.add_argument("--on-error", choices=["raise", "skip"], default=None,
                   help="unusable items (bad CIF, NaN target, partial occupancy, ...): stop before training with the full list (raise, default) or leave them out and list them in skipped.csv (skip)")
    p.add_argument("--cache-dir", default="default", help="graph cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the graph cache")
    p.add_argument("--workers", type=int, default=0, help="processes that build graphs (0: one per core)")


def add_alignn_args(p: argparse.ArgumentParser) -> None:
    """The size of an ALIGNN (used with --model alignn by train, probe and periodicity)."""
    a = p.add_argument_group("ALIGNN (with --model alignn; reference defaults)")
    a.add_argument("--alignn-layers", type=int, help="ALIGNN layers: edge-gated convolution on the atom graph, then on the line graph (4)")
    a.add_argument("--gcn-layers", type=int, help="edge-gated convolutions on the atom graph after them (4)")
    a.add_argument("--hidden", type=int, help="width of atom, bond and angle vectors (256)")
    a.add_argument("--embedding", type=int, help="width of the first bond/angle embedding layer (64)")
    a.add_argument("--norm", choices=["batch", "layer"], help="normalization in convolutions and embeddings: layer (default) or batch (the paper's; breaks down on 1D chains)")


def model_config_from_args(args: argparse.Namespace):
    """``defaults_for(--model)`` with the ALIGNN size flags applied."""
    from crystalgnn.config import defaults_for, replace

    cfg = defaults_for(args.model or "cgcnn")
    alignn = replace(cfg.model.alignn, alignn_layers=args.alignn_layers, gcn_layers=args.gcn_layers,
                     hidden_features=args.hidden, embedding_features=args.embedding, norm=args.norm)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, alignn=alignn))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crystalgnn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model and write a run directory",
                        description="Train a model. The run directory receives config.json, model.safetensors, metrics.json, predictions_<split>.csv, parity.png and learning_curve.png.")
    tr.add_argument("data", nargs="?", help="dataset path or 'chains:short' (see crystalgnn --help)")
    tr.add_argument("--dataset", dest="dataset", help="same as the positional DATA")
    tr.add_argument("--run-dir", required=True, help="output folder of the run")
    tr.add_argument("--config", help="start from the config.json of an earlier run (flags still override)")
    tr.add_argument("--model", choices=["cgcnn", "alignn"],
                    help="cgcnn (default) or alignn; sets that model's reference graph, architecture and training defaults, which the flags below override")
    _add_data_args(tr)
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    g = tr.add_argument_group("graph (CGCNN: radius 8 Å, 12 neighbours; ALIGNN: knn 12 with line graph)")
    g.add_argument("--graph-strategy", choices=["radius", "knn"], help="radius: ≤ max-neighbours within the cutoff; knn: all up to the k-th neighbour distance, growing cutoff")
    g.add_argument("--cutoff", type=float, help="neighbour search radius in Å (8)")
    g.add_argument("--max-neighbors", type=int, help="neighbours per atom (12)")
    g.add_argument("--line-graph", action=argparse.BooleanOptionalAction, default=None, help="also build the line graph with bond angles (on for alignn)")
    f = tr.add_argument_group("features")
    f.add_argument("--atom-features", choices=["cgcnn", "embedding"], help="CGCNN 92-dim one-hot (default) or a learned embedding per element")
    f.add_argument("--gaussian-step", type=float, help="spacing and width of the distance Gaussians in Å (0.2)")
    m = tr.add_argument_group("model (CGCNN defaults)")
    m.add_argument("--task", choices=["regression", "classification"], help="classification expects integer labels 0..C-1")
    m.add_argument("--conv", choices=["gated", "linear"], help="gated residual Eq. 5 (default) or linear Eq. 4")
    m.add_argument("--pooling", choices=["mean", "sum", "site"], help="mean (Eq. S16), sum (extensive properties), site (Eqs. S14-S15, per-site contributions)")
    m.add_argument("--atom-fea-len", type=int, help="atom vector width (64)")
    m.add_argument("--n-conv", type=int, help="convolution layers (3)")
    m.add_argument("--h-fea-len", type=int, help="head hidden width (128)")
    m.add_argument("--n-h", type=int, help="head hidden layers (1)")
    m.add_argument("--dropout", type=float, help="dropout before the output (0; 0.5 for classification)")
    add_alignn_args(tr)
    h = tr.add_argument_group("descriptor hybridization and extensive targets (Gong et al.)")
    h.add_argument("--descriptors", nargs="?", const="default", metavar="NAMES",
                   help="concatenate standardized structural descriptors to the pooled vector before the head (Eq. 14, de-CGCNN). "
                        "Alone: every descriptor of 'crystalgnn featurize' except the space group number; or a comma-separated list of names")
    h.add_argument("--hybrid", choices=["end-to-end", "frozen"],
                   help="end-to-end (Eq. 14, default) or frozen (Eq. S5: train the plain model first, then only a new head on representation + descriptors)")
    h.add_argument("--per-atom", action="store_true", default=None,
                   help="learn target / number of atoms in the cell, report per-cell predictions (Table 2: normalization of extensive targets)")
    h.add_argument("--init-from", metavar="RUN_DIR", help="start from the weights of a finished run (matching tensors are copied)")
    h.add_argument("--freeze-encoder", action="store_true", default=None, help="train only the readout head (with --init-from)")
    o = tr.add_argument_group("training")
    o.add_argument("--epochs", type=int, help="training epochs (CGCNN 100, ALIGNN 300)")
    o.add_argument("--batch-size", type=int, help="crystals per batch (CGCNN 256, ALIGNN 64)")
    o.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], help="(adamw)")
    o.add_argument("--lr", type=float, help="peak learning rate (CGCNN 3e-3, ALIGNN 1e-2)")
    o.add_argument("--weight-decay", type=float, help="(CGCNN 0, ALIGNN 1e-5)")
    o.add_argument("--scheduler", choices=["onecycle", "cosine", "multistep", "none"], help="learning-rate schedule (onecycle)")
    o.add_argument("--patience", type=int, help="early stopping patience in epochs (0: off)")
    o.add_argument("--max-minutes", type=float, help="stop training after this many minutes (0: no limit); the best epoch so far is kept")
    o.add_argument("--seed", type=int, help="seed of the split and the training (123)")
    o.add_argument("--split", help="train,val,test fractions, e.g. 0.6,0.2,0.2 (default)")
    o.add_argument("--split-file", help="CSV of id,split (train/val/test) instead of fractions")
    o.add_argument("--kfold", type=int, help="k-fold cross-validation: number of folds (0: off)")
    o.add_argument("--fold", type=int, help="test fold for --kfold (0)")
    o.add_argument("--kfold-seed", type=int, help="KFold seed (MatBench: 18012019)")
    o.add_argument("--accelerator", help="cpu, gpu or auto (default)")
    o.add_argument("--devices", type=int, help="devices / processes (DDP when > 1)")
    o.add_argument("--strategy", help="Lightning strategy, e.g. ddp (auto)")
    o.add_argument("--num-workers", type=int, help="DataLoader worker processes (0)")
    o.add_argument("--threads", type=int, help="torch CPU threads (0: all cores)")
    o.add_argument("--precision", choices=["32", "bf16-mixed"],
                   help="32 (default) or bf16-mixed: products and activations in bfloat16, weights in float32 (ALIGNN trained 1.3-2.4x faster on a CPU with AVX-512 BF16; also for GPUs with bfloat16)")

    pr = sub.add_parser("predict", help="predict structures with a trained run",
                        description="Predict structures with the graph and feature settings of training. Output order = input order.")
    pr.add_argument("run_dir", help="run directory written by 'crystalgnn train'")
    pr.add_argument("inputs", nargs="+", help="structure files (CIF, POSCAR, ...) and/or folders of them")
    pr.add_argument("-o", "--output", help="CSV to write (default: print to stdout)")
    pr.add_argument("--site-contributions", metavar="CSV", help="also write per-site contributions (needs a model trained with --pooling site)")
    pr.add_argument("--embeddings", metavar="CSV", help="also write the crystal embeddings (pooled vectors)")
    pr.add_argument("--on-error", choices=["raise", "skip"], default="raise", help="unusable inputs: stop (default) or skip and report them")
    pr.add_argument("--device", default="cpu", help="cpu or cuda")

    bl = sub.add_parser("baseline", help="random forest on structural descriptors and/or composition (same split as train)",
                        description="Fit a random forest on hand-made features: the Gong et al. structural descriptors "
                                    "('descriptors + RF'), Magpie composition statistics, or both. The same reader, checks and "
                                    "split as 'crystalgnn train' with the same --seed/--split, so its test metrics compare directly "
                                    "with a network run. Writes metrics.json, predictions_<split>.csv, parity.png, feature_importance.csv.")
    bl.add_argument("data", help="dataset path (same layouts as train)")
    bl.add_argument("--run-dir", required=True, help="output folder")
    _add_data_args(bl)
    bl.add_argument("--features", choices=["descriptors", "composition", "both"], default="descriptors", help="forest inputs (descriptors)")
    bl.add_argument("--descriptors", metavar="NAMES", help="comma-separated descriptor names (default: all but the space group number)")
    bl.add_argument("--trees", type=int, default=300, help="number of trees (300)")
    bl.add_argument("--task", choices=["regression", "classification"], default=None)
    bl.add_argument("--per-atom", action="store_true", default=None, help="fit target / atoms, report per cell")
    bl.add_argument("--seed", type=int, help="split and forest seed (123)")
    bl.add_argument("--split", help="train,val,test fractions (0.6,0.2,0.2)")
    bl.add_argument("--split-file", help="CSV of id,split instead of fractions")
    bl.add_argument("--quiet", action="store_true", help="no progress bars")

    pb = sub.add_parser("probe", help="learnability probe: test R² of the model on each structural descriptor (Gong et al. Fig. 2)",
                        description="Train the model to predict each structural descriptor (80/10/10), classify the crystal system, "
                                    "and compare with a composition-only random forest. Writes probe.csv, probe.json and probe_r2.png "
                                    "(local vs global descriptors). By default the paper's low-symmetry-biased subset is used: each "
                                    "structure is removed with probability sg/(sg+15).")
    pb.add_argument("data", help="structures (any dataset layout; targets are ignored)")
    pb.add_argument("--out", required=True, help="output folder")
    pb.add_argument("--model", default="cgcnn", choices=["cgcnn", "alignn"], help="model to probe (cgcnn)")
    pb.add_argument("--descriptors", metavar="NAMES", help="comma-separated descriptors to probe (default: all but the crystal system)")
    pb.add_argument("--max-structures", type=int, default=0, help="random subset of this size after the low-symmetry filter (0: all)")
    pb.add_argument("--all-symmetries", action="store_true", help="skip the low-symmetry-biased subset")
    pb.add_argument("--separate", action="store_true", help="one model per descriptor (the paper's way; N× the cost) instead of one multi-output model")
    pb.add_argument("--no-crystal-system", action="store_true", help="skip the crystal-system classification")
    pb.add_argument("--no-composition", action="store_true", help="skip the composition-only baseline")
    pb.add_argument("--epochs", type=int, default=None, help="training epochs (100)")
    pb.add_argument("--batch-size", type=int, default=None, help="crystals per batch (256)")
    pb.add_argument("--seed", type=int, default=123, help="seed of the subset, split and training (123)")
    pb.add_argument("--threads", type=int, default=None, help="torch CPU threads (0: all cores)")
    pb.add_argument("--cache-dir", default="default", help="graph and descriptor cache folder")
    pb.add_argument("--workers", type=int, default=0, help="processes for graphs and descriptors (0: one per core)")
    pb.add_argument("--quiet", action="store_true", help="no progress bars")
    add_alignn_args(pb)

    im = sub.add_parser("importance", help="feature importance and representation R² of a trained run (Gong et al. Fig. 4c, S6a)",
                        description="Fit a random forest on [pooled representation + descriptors] of a trained run (its data and split) "
                                    "and report the importance of each input and the share held by the descriptors; and the test R² of "
                                    "linear regressions from the representation to each descriptor, also for a plain run given with --plain.")
    im.add_argument("run_dir", help="trained run (plain or with --descriptors)")
    im.add_argument("--plain", metavar="RUN_DIR", help="a plain run of the same data and seed, for the representation-R² comparison")
    im.add_argument("--data", help="dataset (default: the one the run was trained on)")
    im.add_argument("--out", help="output folder (default: RUN_DIR/analysis)")
    im.add_argument("--trees", type=int, default=300, help="random-forest trees (300)")
    im.add_argument("--cache-dir", default="default", help="graph and descriptor cache folder")
    im.add_argument("--quiet", action="store_true", help="no progress bars")

    from crystalgnn import cli_featurize, cli_periodicity

    cli_featurize.add_parser(sub)
    cli_periodicity.add_parser(sub)

    ev = sub.add_parser("evaluate", help="metrics of a trained run on labelled data",
                        description="Predict a labelled dataset and print metrics; writes a parity plot (regression) beside the output CSV.")
    ev.add_argument("run_dir")
    ev.add_argument("data", help="labelled dataset (same layouts as train)")
    ev.add_argument("--target", "-t", action="append", dest="targets", help="target columns (default: those the model was trained on)")
    ev.add_argument("-o", "--output", default=None, help="prediction CSV (default: RUN_DIR/evaluate_predictions.csv)")
    ev.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    ev.add_argument("--device", default="cpu")
    return parser


def _config_from_args(args: argparse.Namespace):
    from crystalgnn.config import RunConfig, defaults_for, replace

    if args.config:
        cfg = RunConfig.load(args.config)
        if args.model and args.model != cfg.model.name:
            raise SystemExit(f"--config is a {cfg.model.name} run; drop --model {args.model} or the --config")
    else:
        cfg = defaults_for(args.model or "cgcnn")  # the flags, ALIGNN's size included, apply below
    split = tuple(float(x) for x in args.split.split(",")) if args.split else None
    if split is not None and len(split) != 3:
        raise SystemExit("--split takes three fractions: train,val,test (e.g. 0.6,0.2,0.2)")
    targets = tuple(args.targets) if args.targets else None
    gaussian = {"gaussian_step": args.gaussian_step, "gaussian_width": args.gaussian_step} if args.gaussian_step else {}
    descriptors = None
    if args.descriptors is not None:
        from crystalgnn.training.hybrid import resolve_descriptor_names

        descriptors = resolve_descriptor_names(args.descriptors)
    return dataclasses.replace(
        cfg,
        data=replace(cfg.data, targets=targets, transform=args.transform, on_error=args.on_error, per_atom=args.per_atom),
        graph=replace(cfg.graph, strategy=args.graph_strategy, cutoff=args.cutoff, max_neighbors=args.max_neighbors, line_graph=args.line_graph),
        features=replace(cfg.features, atom_features=args.atom_features, **gaussian),
        model=replace(cfg.model, task=args.task, conv=args.conv, pooling=args.pooling, atom_fea_len=args.atom_fea_len,
                      n_conv=args.n_conv, h_fea_len=args.h_fea_len, n_h=args.n_h, dropout=args.dropout,
                      descriptors=descriptors, hybrid=args.hybrid,
                      alignn=replace(cfg.model.alignn, alignn_layers=args.alignn_layers, gcn_layers=args.gcn_layers,
                                     hidden_features=args.hidden, embedding_features=args.embedding, norm=args.norm)),
        train=replace(cfg.train, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, scheduler=args.scheduler, early_stopping_patience=args.patience, max_minutes=args.max_minutes,
                      seed=args.seed, split_fractions=split, split_file=args.split_file, kfold=args.kfold, fold=args.fold,
                      kfold_seed=args.kfold_seed, accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                      num_workers=args.num_workers, threads=args.threads, precision=args.precision, init_from=args.init_from,
                      freeze_encoder=args.freeze_encoder),
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from crystalgnn.training.run import train

    data = args.data or args.dataset
    if not data:
        raise SystemExit("train: give a dataset (positional DATA or --dataset); see 'crystalgnn train --help'")
    cfg = _config_from_args(args)
    cache = None if args.no_cache else args.cache_dir
    result = train(data, args.run_dir, cfg, cache_dir=cache, workers=args.workers, progress=not args.quiet)
    if result.metrics:
        print(result.summary())
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from crystalgnn.baselines import ForestConfig, train_forest
    from crystalgnn.config import RunConfig, replace
    from crystalgnn.training.hybrid import resolve_descriptor_names

    cfg = RunConfig()
    split = tuple(float(x) for x in args.split.split(",")) if args.split else None
    cfg = dataclasses.replace(
        cfg,
        data=replace(cfg.data, targets=tuple(args.targets) if args.targets else None, transform=args.transform,
                     on_error=args.on_error, per_atom=args.per_atom),
        model=replace(cfg.model, task=args.task),
        train=replace(cfg.train, seed=args.seed, split_fractions=split, split_file=args.split_file),
    )
    features = ("descriptors", "composition") if args.features == "both" else (args.features,)
    forest = ForestConfig(features=features, descriptors=resolve_descriptor_names(args.descriptors) if args.descriptors else (), n_estimators=args.trees)
    cache = None if args.no_cache else args.cache_dir
    result = train_forest(args.data, args.run_dir, cfg, forest, cache_dir=cache, workers=args.workers, progress=not args.quiet)
    print(result.summary())
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from crystalgnn.analysis.probe import ProbeSettings, run_probe
    from crystalgnn.config import replace
    from crystalgnn.training.hybrid import resolve_descriptor_names

    cfg = model_config_from_args(args)
    cfg = dataclasses.replace(cfg, train=replace(cfg.train, epochs=args.epochs, batch_size=args.batch_size, threads=args.threads))
    settings = ProbeSettings(
        descriptors=resolve_descriptor_names(args.descriptors) if args.descriptors else (),
        low_symmetry=not args.all_symmetries, max_structures=args.max_structures, seed=args.seed, joint=not args.separate,
        crystal_system=not args.no_crystal_system, composition_baseline=not args.no_composition,
    )
    table = run_probe(args.data, args.out, settings, cfg, cache_dir=args.cache_dir, workers=args.workers, progress=not args.quiet)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print((Path(args.out) / "probe.json").read_text())
    return 0


def _cmd_importance(args: argparse.Namespace) -> int:
    from crystalgnn.analysis.importance import analyse_run

    summary = analyse_run(args.run_dir, args.out, args.plain, args.data, args.trees, args.cache_dir, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_featurize(args: argparse.Namespace) -> int:
    from crystalgnn import cli_featurize

    return cli_featurize.run(args)


def _cmd_periodicity(args: argparse.Namespace) -> int:
    from crystalgnn import cli_periodicity

    return cli_periodicity.run(args)


def _cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from crystalgnn.predict import load_model

    predictor = load_model(args.run_dir, args.device)
    data = predictor.prepare(args.inputs, on_error=args.on_error)
    pred = predictor.predict_store(data)
    frame = predictor.to_frame(pred, data)
    if args.output:
        frame.to_csv(args.output, index=False)
        print(f"wrote {len(frame)} predictions to {args.output}", file=sys.stderr)
    else:
        frame.to_csv(sys.stdout, index=False)
    if data.problems:
        print(f"skipped {len(data.problems)} input(s):", file=sys.stderr)
        for p in data.problems:
            print(f"  - {p}", file=sys.stderr)
    if args.site_contributions:
        if pred.sites is None:
            raise SystemExit("--site-contributions needs a model trained with --pooling site")
        rows = []
        for item, z_sites, contrib in zip(pred.ids, _split_atoms(data), pred.sites):
            for k, (z, c) in enumerate(zip(z_sites, contrib)):
                rows.append({"id": item, "site": k, "element": z, **{n: c[t] for t, n in enumerate(predictor.target_names)}})
        pd.DataFrame(rows).to_csv(args.site_contributions, index=False)
    if args.embeddings:
        emb = pd.DataFrame(pred.embeddings, columns=[f"e{k}" for k in range(pred.embeddings.shape[1])])
        emb.insert(0, "id", pred.ids)
        emb.to_csv(args.embeddings, index=False)
    return 0


def _split_atoms(data) -> list[list[str]]:
    from pymatgen.core import Element

    store = data.store
    return [
        [Element.from_Z(int(z)).symbol for z in store.atomic_numbers[store.node_ptr[i] : store.node_ptr[i + 1]]]
        for i in range(len(store))
    ]


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from crystalgnn.analysis.plots import parity_plot
    from crystalgnn.io import load_dataset
    from crystalgnn.predict import load_model
    from crystalgnn.training.metrics import classification_metrics, regression_metrics

    predictor = load_model(args.run_dir, args.device)
    targets = [int(t) if t.isdigit() else t for t in args.targets] if args.targets else predictor.target_names
    dataset = load_dataset(args.data, list(targets), transform=predictor.cfg.data.transform)
    data = predictor.prepare(dataset, on_error=args.on_error)
    pred = predictor.predict_store(data)
    frame = predictor.to_frame(pred, data)
    output = Path(args.output or Path(args.run_dir) / "evaluate_predictions.csv")
    metrics = {}
    if predictor.module.is_classification:
        metrics[targets[0]] = classification_metrics(data.targets[:, 0], pred.values)
    else:
        for t, name in enumerate(predictor.target_names):
            frame.insert(1, f"true_{name}", data.targets[:, t])
            metrics[name] = regression_metrics(data.targets[:, t], pred.values[:, t])
            parity_plot({"data": data.targets[:, t]}, {"data": pred.values[:, t]}, output.with_suffix(f".{name}.png"), name, metrics[name])
    frame.to_csv(output, index=False)
    print(json.dumps({"metrics": metrics, "n_skipped": len(data.problems)}, indent=2, default=float))
    return 0


COMMANDS = {"train": _cmd_train, "predict": _cmd_predict, "evaluate": _cmd_evaluate, "baseline": _cmd_baseline,
            "probe": _cmd_probe, "importance": _cmd_importance, "featurize": _cmd_featurize, "periodicity": _cmd_periodicity}


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from crystalgnn.errors import CrystalGNNError

    try:
        return COMMANDS[args.command](args)
    except (CrystalGNNError, FileNotFoundError, ValueError) as err:
        print(f"crystalgnn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
