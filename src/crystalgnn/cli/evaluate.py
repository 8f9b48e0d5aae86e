"""``crystalgnn evaluate``: metrics of a trained run on labelled data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "metrics of a trained run on labelled data"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    ev = sub.add_parser("evaluate", help=HELP,
                        description="Predict a labelled dataset and print metrics; writes a parity plot (regression) beside the output CSV.")
    ev.add_argument("run_dir", help="run directory written by 'crystalgnn train'")
    ev.add_argument("data", help="labelled dataset (same layouts as train); its targets are read with the run's transform")
    ev.add_argument("--target", "-t", action="append", dest="targets", help="target columns (default: those the model was trained on)")
    ev.add_argument("-o", "--output", default=None, help="prediction CSV (default: RUN_DIR/evaluate_predictions.csv)")
    ev.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                    help="unusable items: stop with the full list (raise, default) or leave them out of the metrics (skip)")
    ev.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ev.set_defaults(func=run)
    return ev


def run(args: argparse.Namespace) -> int:
    from crystalgnn.io import load_dataset
    from crystalgnn.predict import load_model
    from crystalgnn.reports.outputs import evaluation_report

    predictor = load_model(args.run_dir, args.device)
    targets = [int(t) if t.isdigit() else t for t in args.targets] if args.targets else predictor.target_names
    dataset = load_dataset(args.data, list(targets), transform=predictor.cfg.data.transform)
    data = predictor.prepare(dataset, on_error=args.on_error)
    pred = predictor.predict_store(data)
    output = Path(args.output or Path(args.run_dir) / "evaluate_predictions.csv")
    names = [str(targets[0])] if predictor.module.is_classification else predictor.target_names
    frame, metrics = evaluation_report(pred.ids, data.targets, pred.values, names, predictor.module.is_classification, output,
                                       predictor.cfg.data.transform)
    frame.to_csv(output, index=False)
    print(json.dumps({"metrics": metrics, "n_skipped": len(data.problems)}, indent=2, default=float))
    return 0
