"""``crystalgnn train``: train a model and write a run directory (or resume a killed one)."""

from __future__ import annotations

import argparse
import dataclasses

from crystalgnn.cli.common import add_data_args, add_model_args, add_model_choice, arch_from_args, split_fractions

HELP = "train a model and write a run directory"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    tr = sub.add_parser("train", help=HELP,
                        description="Train a model. The run directory receives config.json, model.safetensors, metrics.json, "
                                    "predictions_<split>.csv, parity.png and learning_curve.png, and checkpoints/ (last and best, "
                                    "without pickle) from which --resume continues a killed run. With --ensemble N it holds N such "
                                    "runs in members/<k>/ and their mean, spread and calibration.")
    tr.add_argument("data", nargs="?", help="dataset path or 'chains:short' (see crystalgnn --help)")
    tr.add_argument("--dataset", dest="dataset", help="same as the positional DATA")
    tr.add_argument("--run-dir", help="output folder of the run")
    tr.add_argument("--resume", metavar="RUN_DIR",
                    help="continue the run in RUN_DIR from its last checkpoint (weights, optimizer, schedule, epoch, early stopping, "
                         "random state) with its saved settings; other flags must be left out or equal to them")
    tr.add_argument("--config", help="start from the config.json of an earlier run (flags still override)")
    if full:  # the registry imports the model files (torch): only for the command being run
        add_model_choice(tr, help_tail="; sets that model's reference graph, architecture and training defaults, which the flags below override")
    add_data_args(tr)
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument("--no-data-check", action="store_true",
                    help="do not print the short data check (target distribution, extensive target, cells beyond the cutoff) before training")
    g = tr.add_argument_group("graph (CGCNN: radius 8 Å, 12 neighbours; ALIGNN: knn 12 with line graph)")
    g.add_argument("--graph-strategy", choices=["radius", "knn", "nearest"],
                   help="radius: ≤ max-neighbours within the cutoff; knn: all up to the k-th neighbour distance, growing cutoff, "
                        "both directions; nearest: exactly the k nearest per atom, directed (CrysToGraph)")
    g.add_argument("--cutoff", type=float, help="neighbour search radius in Å (8)")
    g.add_argument("--max-neighbors", type=int, help="neighbours per atom (12)")
    g.add_argument("--line-graph", action=argparse.BooleanOptionalAction, default=None, help="also build the line graph with bond angles (on for alignn)")
    f = tr.add_argument_group("features")
    f.add_argument("--atom-features", metavar="FEATURES",
                   help="atom inputs: cgcnn (92-dim one-hot, default), embedding (learned per element), ofm (orbital field matrix "
                        "per site, 1056), cfid (438 JARVIS element features, standardized on the training atoms), or parts joined "
                        "by '+': ofm+cfid (OCrystalNet's 1494), cgcnn+ofm (OGCNN-style), cgcnn+pretrained:RUN (CrysToGraph's 156: "
                        "CGCNN's 92 and the 64-dim element embedding of `crystalgnn pretrain --run-dir RUN`, frozen)")
    f.add_argument("--ofm-period-tag", action="store_true", default=None,
                   help="OFM with matminer's period tag: 39-dim orbital vectors, 39*39+39 = 1560 per site")
    m = tr.add_argument_group("model (every model)")
    m.add_argument("--task", choices=["regression", "classification"], help="classification expects integer labels 0..C-1")
    m.add_argument("--pooling", choices=["mean", "sum", "site"], help="mean (Eq. S16), sum (extensive properties), site (Eqs. S14-S15, per-site contributions)")
    m.add_argument("--dropout", type=float, help="dropout before the output (0; 0.5 for classification)")
    if full:
        add_model_args(tr)
    h = tr.add_argument_group("descriptor hybridization and extensive targets (Gong et al.)")
    h.add_argument("--descriptors", nargs="?", const="default", metavar="NAMES",
                   help="concatenate standardized structural descriptors to the pooled vector before the head (Eq. 14, de-CGCNN). "
                        "Alone: every descriptor of 'crystalgnn featurize' except the space group number; or a comma-separated list of names")
    h.add_argument("--hybrid", choices=["end-to-end", "frozen", "residual", "stacked", "blend", "blend-plain"],
                   help="end-to-end (Eq. 14, default); frozen (Eq. S5: train the plain model first, then only a new head on representation + descriptors); "
                        "stacked (a random forest on the descriptors first; its cross-fitted prediction is one more input of the head: "
                        "use it where the forest alone beats the plain network, see README); residual (as stacked, and the network learns "
                        "y minus the forest; measured worse); blend (the Eq. 14 network and the forest, trained apart, predict "
                        "w * network + (1 - w) * forest with w in 0..1 chosen on the validation split); blend-plain (the same with the plain "
                        "network, the descriptors feeding only the forest: at least as good as the better part on every task measured, see README)")
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
    o.add_argument("--scheduler", choices=["onecycle", "cosine", "multistep", "none", "noam"],
                   help="learning-rate schedule (onecycle); noam: chemprop's NoamLR (CMPNN, OCrystalNet), linear warm-up to --lr, then exponential decay")
    o.add_argument("--noam-warmup-epochs", type=float, help="noam: epochs of linear warm-up (2.0)")
    o.add_argument("--noam-initial-lr", type=float, help="noam: learning rate at the first step (1e-4)")
    o.add_argument("--noam-final-lr", type=float, help="noam: learning rate at the last step (1e-5)")
    o.add_argument("--patience", type=int, help="early stopping patience in epochs (0: off)")
    o.add_argument("--max-minutes", type=float,
                   help="stop training after this many minutes (0: no limit); the best epoch so far is kept. The learning-rate "
                        "schedule is fitted to the budget: it advances with the clock when the epochs would not fit, so the "
                        "rate has annealed when time runs out")
    o.add_argument("--schedule-by-epochs", dest="schedule_to_budget", action="store_const", const=False, default=None,
                   help="with --max-minutes: keep the schedule on the --epochs count alone (it may be stopped before it decays)")
    o.add_argument("--seed", type=int, help="seed of the split and the training (123)")
    o.add_argument("--split", help="train,val,test fractions, e.g. 0.6,0.2,0.2 (default)")
    o.add_argument("--split-file", help="CSV of id,split (train/val/test) instead of fractions")
    o.add_argument("--kfold", type=int, help="k-fold cross-validation: number of folds (0: off)")
    o.add_argument("--fold", type=int, help="test fold for --kfold (0)")
    o.add_argument("--kfold-seed", type=int, help="KFold seed (MatBench: 18012019)")
    o.add_argument("--accelerator", help="cpu, gpu or auto (default)")
    o.add_argument("--devices", type=int, help="devices / processes per node (DDP when > 1)")
    o.add_argument("--num-nodes", type=int,
                   help="machines of a multi-node DDP run, each started by torchrun or srun with --devices processes (1); see README")
    o.add_argument("--strategy", help="Lightning strategy, e.g. ddp (auto)")
    o.add_argument("--num-workers", type=int, help="DataLoader worker processes (0)")
    o.add_argument("--graph-store", choices=["auto", "memory", "mmap"],
                   help="hold the graphs in memory, or read them memory-mapped from the cache shards (datasets larger than memory; "
                        "resident memory stays a few shards); auto: mmap when they exceed a quarter of the memory available (auto)")
    o.add_argument("--threads", type=int, help="torch CPU threads (0, default: the cores other processes are not busy on)")
    o.add_argument("--logger", choices=["csv", "tensorboard", "mlflow"],
                   help="a logger beside the CSV log: tensorboard (RUN/tensorboard) or mlflow (local store RUN/mlruns, or --mlflow-uri)")
    o.add_argument("--mlflow-uri", help="MLflow tracking URI (default: the local file store RUN/mlruns; a server's address reaches the network)")
    o.add_argument("--deterministic", action="store_true", default=None,
                   help="bit-identical numbers from run to run on this machine: one CPU thread and deterministic algorithms "
                        "(costs the other threads' speed; see README, Reproducibility)")
    o.add_argument("--precision", choices=["32", "bf16-mixed"],
                   help="32 (default) or bf16-mixed: products and activations in bfloat16, weights in float32 (ALIGNN trained 1.3-2.4x faster on a CPU with AVX-512 BF16; also for GPUs with bfloat16)")
    e = tr.add_argument_group("ensembles and uncertainty (any model)")
    e.add_argument("--ensemble", type=int, metavar="N",
                   help="train N members (seeds seed, seed+1, ...; every member on the split of --seed) into RUN/members/<k>/; "
                        "the run directory gets their mean, its spread (std over members) as <target>_std columns, calibration.png "
                        "and calibration figures in metrics.json; training again in the same directory keeps finished members (1)")
    e.add_argument("--bootstrap", action="store_true", default=None,
                   help="train on a bootstrap resample of the training split, drawn with the run's (each member's) seed, so members "
                        "also differ by their data (off)")
    tr.set_defaults(func=run)
    return tr


def config_from_args(args: argparse.Namespace, base=None, origin: str = "--config"):
    """The run configuration the flags describe: ``base`` (a saved run's), ``--config`` or
    ``defaults_for(--model)``, then every flag given on top."""
    from crystalgnn.config import RunConfig, defaults_for, replace

    if base is None and args.config:
        base = RunConfig.load(args.config)
    if base is not None:
        cfg = base
        if args.model and args.model != cfg.model.name:
            raise ValueError(f"{origin} is a {cfg.model.name} run; drop --model {args.model} or the {origin}")
    else:
        cfg = defaults_for(args.model or "cgcnn")
    targets = tuple(args.targets) if args.targets else None
    descriptors = None
    if args.descriptors is not None:
        from crystalgnn.training.hybrid import resolve_descriptor_names

        descriptors = resolve_descriptor_names(args.descriptors)
    arch = arch_from_args(args, cfg.model.name, cfg.model.arch)
    return dataclasses.replace(
        cfg,
        data=replace(cfg.data, targets=targets, transform=args.transform, on_error=args.on_error, per_atom=args.per_atom),
        graph=replace(cfg.graph, strategy=args.graph_strategy, cutoff=args.cutoff, max_neighbors=args.max_neighbors, line_graph=args.line_graph),
        features=replace(cfg.features, atom_features=args.atom_features, ofm_period_tag=args.ofm_period_tag),
        model=replace(cfg.model, task=args.task, pooling=args.pooling, dropout=args.dropout, descriptors=descriptors, hybrid=args.hybrid, arch=arch),
        train=replace(cfg.train, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, scheduler=args.scheduler,
                      noam_warmup_epochs=args.noam_warmup_epochs, noam_initial_lr=args.noam_initial_lr, noam_final_lr=args.noam_final_lr,
                      early_stopping_patience=args.patience, max_minutes=args.max_minutes, schedule_to_budget=args.schedule_to_budget,
                      seed=args.seed, split_fractions=split_fractions(args.split), split_file=args.split_file, kfold=args.kfold, fold=args.fold,
                      kfold_seed=args.kfold_seed, accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
                      strategy=args.strategy, num_workers=args.num_workers, graph_store=args.graph_store, threads=args.threads,
                      precision=args.precision, init_from=args.init_from,
                      freeze_encoder=args.freeze_encoder, deterministic=args.deterministic, logger=args.logger,
                      mlflow_uri=args.mlflow_uri, ensemble=args.ensemble, bootstrap=args.bootstrap),
    )


def run(args: argparse.Namespace) -> int:
    from crystalgnn.training.run import train

    data = args.data or args.dataset
    cache = None if args.no_cache else args.cache_dir
    if args.resume:
        from crystalgnn.config import RunConfig
        from crystalgnn.training.ensemble import ensemble_size
        from crystalgnn.training.resume import check_same_settings, saved_config

        if args.run_dir and args.run_dir != args.resume:
            raise ValueError(f"--resume {args.resume} continues that run directory; drop --run-dir {args.run_dir}")
        if args.config:
            raise ValueError("--resume takes the settings saved in its run directory; drop --config")
        # an ensemble resumes member by member; its own directory holds no checkpoint
        saved = RunConfig.load(f"{args.resume}/config.json") if ensemble_size(args.resume) > 1 else saved_config(args.resume)
        cfg = config_from_args(args, base=saved, origin=f"--resume {args.resume}")
        check_same_settings(saved, cfg, args.resume)
        result = train(data or saved.data.source, args.resume, cfg, cache_dir=cache, workers=args.workers,
                       progress=not args.quiet, resume=True)
    else:
        if not data:
            raise ValueError("train: give a dataset (positional DATA or --dataset); see 'crystalgnn train --help'")
        if not args.run_dir:
            raise ValueError("train: give --run-dir (the output folder), or --resume RUN_DIR to continue a run")
        result = train(data, args.run_dir, config_from_args(args), cache_dir=cache, workers=args.workers, progress=not args.quiet,
                       data_check=not args.no_data_check)
    if result.metrics:
        print(result.summary())
    return 0
