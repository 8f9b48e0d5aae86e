"""``crystalgnn predict``: predict structures with a trained run, in input order."""

from __future__ import annotations

import argparse
import sys

HELP = "predict structures with a trained run"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    pr = sub.add_parser("predict", help=HELP,
                        description="Predict structures with the graph and feature settings of training. Output order = input order.")
    pr.add_argument("run_dir", help="run directory written by 'crystalgnn train', or zoo:NAME (a shipped model: crystalgnn zoo list)")
    pr.add_argument("inputs", nargs="+", help="structure files (CIF, POSCAR, ...) and/or folders of them")
    pr.add_argument("-o", "--output", help="CSV to write (default: print to stdout)")
    pr.add_argument("--site-contributions", metavar="CSV", help="also write per-site contributions (needs a model trained with --pooling site)")
    pr.add_argument("--embeddings", metavar="CSV", help="also write the crystal embeddings (pooled vectors)")
    pr.add_argument("--on-error", choices=["raise", "skip"], default="raise", help="unusable inputs: stop (default) or skip and report them")
    pr.add_argument("--device", default="cpu", help="cpu or cuda")
    pr.set_defaults(func=run)
    return pr


def run(args: argparse.Namespace) -> int:
    from crystalgnn import transforms
    from crystalgnn.predict import load_model
    from crystalgnn.reports.outputs import embeddings_frame, site_contributions_frame

    predictor = load_model(args.run_dir, args.device)
    if args.site_contributions and predictor.cfg.model.pooling != "site":  # before any work
        raise ValueError(f"--site-contributions needs a model trained with --pooling site; {args.run_dir} pools by "
                         f"{predictor.cfg.model.pooling}")
    data = predictor.prepare(args.inputs, on_error=args.on_error)
    pred = predictor.predict_store(data)
    frame = predictor.to_frame(pred, data)
    if args.output:
        frame.to_csv(args.output, index=False)
        print(f"wrote {len(frame)} predictions to {args.output}", file=sys.stderr)
    else:
        frame.to_csv(sys.stdout, index=False)
    if data.problems:
        print(f"skipped {len(data.problems)} input(s) (empty rows with the reason in the 'problem' column):", file=sys.stderr)
        for p in data.problems:
            print(f"  - {p}", file=sys.stderr)
    if args.site_contributions:
        # per-site contributions are in the units the model learned (their mean is the learned prediction)
        learned = [transforms.learned_name(n, predictor.cfg.data.transform) for n in predictor.target_names]
        site_contributions_frame(pred.ids, data, pred.sites or [], learned).to_csv(args.site_contributions, index=False)
    if args.embeddings:
        embeddings_frame(pred.ids, pred.embeddings).to_csv(args.embeddings, index=False)
    return 0
