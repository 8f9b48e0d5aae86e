"""``crystalgnn zoo``: the models shipped in the package (``zoo list``, ``zoo show NAME``)."""

from __future__ import annotations

import argparse

HELP = "models trained here and shipped in the package: list, show NAME"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser("zoo", help=HELP, description="Models trained on the whole of a task's data except a held-out test split, "
                       "shipped in the package. Predict with `crystalgnn predict zoo:NAME my.cif`; reproduce a card's test metrics "
                       "with `crystalgnn evaluate zoo:NAME DATA --test-split`.")
    p.add_argument("action", choices=["list", "show"], help="list: one line per model; show: a model's card")
    p.add_argument("name", nargs="?", help="the model, for show")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from crystalgnn import zoo

    if args.action == "show":
        if not args.name:
            raise ValueError("crystalgnn zoo show NAME (crystalgnn zoo list shows the names)")
        print((zoo.model_dir(args.name) / "card.md").read_text())
        return 0
    names = zoo.names()
    if not names:
        print("the zoo is empty")
        return 0
    for name in names:
        c = zoo.card(name)
        m = c["test_metrics"]
        model = f"{c['model']} ×{c['ensemble']['members']}" if c.get("ensemble") else c["model"]  # a deep ensemble's size
        print(f"zoo:{name:22s} {model:12s} {c['target']} ({c['unit']}): test MAE {m['mae']:.4g}, R² {m['r2']:.3f} "
              f"on {c['n_test']} held-out crystals of task {c['task']}")
    return 0
