"""``crystalgnn evaluate``: metrics of a trained run on labelled data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "metrics of a trained run on labelled data"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    ev = sub.add_parser("evaluate", help=HELP,
                        description="Predict a labelled dataset and print metrics; writes a parity plot (regression) beside the output CSV.")
    ev.add_argument("run_dir", help="run directory written by 'crystalgnn train', or zoo:NAME (crystalgnn zoo list)")
    ev.add_argument("data", help="labelled dataset (same layouts as train); its targets are read with the run's transform")
    ev.add_argument("--target", "-t", action="append", dest="targets", help="target columns (default: those the model was trained on)")
    ev.add_argument("-o", "--output", default=None, help="prediction CSV (default: RUN_DIR/evaluate_predictions.csv)")
    ev.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                    help="unusable items: stop with the full list (raise, default) or leave them out of the metrics (skip)")
    ev.add_argument("--test-split", action="store_true",
                    help="evaluate only the model's own held-out test items (the ids of RUN_DIR/predictions_test.csv, or of a zoo "
                         "model's card), e.g. to reproduce a zoo card's metrics on the data it names")
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
    if args.test_split:
        dataset = dataset.subset(_test_rows(args.run_dir, dataset.ids, args.data))
    data = predictor.prepare(dataset, on_error=args.on_error)
    pred = predictor.predict_store(data)
    from crystalgnn import zoo

    default = f"evaluate_{args.run_dir[len(zoo.PREFIX):]}.csv" if zoo.is_zoo_name(args.run_dir) else Path(args.run_dir) / "evaluate_predictions.csv"
    output = Path(args.output or default)
    names = [str(targets[0])] if predictor.module.is_classification else predictor.target_names
    frame, metrics = evaluation_report(pred.ids, data.targets, pred.values, names, predictor.module.is_classification, output,
                                       predictor.cfg.data.transform)
    frame.to_csv(output, index=False)
    print(json.dumps({"metrics": metrics, "n_skipped": len(data.problems)}, indent=2, default=float))
    return 0


def _test_rows(run_dir: str, ids: list[str], data: str) -> list[int]:
    """Positions in ``ids`` of the model's own test items; all of them must be in the data."""
    import pandas as pd

    from crystalgnn import zoo

    if zoo.is_zoo_name(run_dir):
        wanted = zoo.test_ids(run_dir)
    else:
        path = Path(run_dir) / "predictions_test.csv"
        if not path.exists():
            raise FileNotFoundError(f"--test-split: {path} not found (a run without a test split?)")
        wanted = pd.read_csv(path, dtype={"id": str})["id"].tolist()
    position = {i: k for k, i in enumerate(ids)}
    missing = [i for i in wanted if i not in position]
    if missing:
        raise ValueError(f"--test-split: {len(missing)} of the model's {len(wanted)} test items are not in {data} (e.g. {missing[:3]}); "
                         "pass the dataset the model was trained on (its card names it)")
    return [position[i] for i in wanted]
