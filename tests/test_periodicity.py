"""The periodicity study (Gong et al. Fig. 3e–h, S3): cells, variant settings, outputs, resume, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pandas as pd
import pytest

from crystalgnn.analysis import periodicity as P
from crystalgnn.cli import periodicity as cli_periodicity
from crystalgnn.config import GraphConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.models.cgcnn import CGCNNConfig

# A small model keeps every cell to a second or two; the variants still change what they should.
SMALL = RunConfig(model=ModelConfig(arch=CGCNNConfig(atom_fea_len=16, h_fea_len=16)))


def tiny_study(**changes) -> P.PeriodicityStudy:
    settings = {"datasets": ("short-single", "long-mixed"), "variants": ("default", "conv8", "nbr18", "sum"),
                "n_structures": 40, "epochs": 2, "batch_size": 16, "threads": 1}
    return P.PeriodicityStudy(**{**settings, **changes})


def test_variants_change_only_their_settings():
    study = P.PeriodicityStudy()
    default = P.cell_config("default", study)
    # default = CGCNN: 12 neighbours within 8 Å, 3 convolutions, mean pooling; paper's split and batch.
    assert default.graph == GraphConfig() and (default.graph.cutoff, default.graph.max_neighbors) == (8.0, 12)
    assert (default.model.arch.n_conv, default.model.pooling, default.model.name) == (3, "mean", "cgcnn")
    assert default.train.split_fractions == (0.8, 0.1, 0.1) and default.train.batch_size == 64
    assert default.train.epochs == study.epochs and default.model.arch.gaussian_stop == 8.0

    def diff(a: RunConfig, b: RunConfig) -> dict:
        da, db = dataclasses.asdict(a), dataclasses.asdict(b)
        for d in (da, db):  # the model's own settings sit beside the shared ones
            d["model"].update(d["model"].pop("arch"))
        return {(s, k): db[s][k] for s in da if isinstance(da[s], dict) for k in da[s] if da[s][k] != db[s][k]}

    assert diff(default, P.cell_config("conv8", study)) == {("model", "n_conv"): 8}
    assert diff(default, P.cell_config("nbr18", study)) == {
        ("graph", "cutoff"): 12.0, ("graph", "max_neighbors"): 18, ("model", "gaussian_stop"): 12.0}
    assert diff(default, P.cell_config("sum", study)) == {("model", "pooling"): "sum"}
    # site-sum (Eq. 13 literally): per-site outputs on per-atom targets, i.e. ŷ = Σ_i FCN(a_i).
    assert diff(default, P.cell_config("site-sum", study)) == {("model", "pooling"): "site", ("data", "per_atom"): True}
    assert "site-sum" not in study.variants
    # The study's training settings override a base config; the rest of the base is kept.
    base = RunConfig(model=ModelConfig(arch=CGCNNConfig(atom_fea_len=16)), train=TrainConfig(lr=1e-3, epochs=999, batch_size=7))
    cfg = P.cell_config("sum", P.PeriodicityStudy(epochs=5, model="cgcnn"), base)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.model.arch.atom_fea_len, cfg.model.pooling) == (5, 64, 1e-3, 16, "sum")


def test_study_validates_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        P.PeriodicityStudy(datasets=("short",))
    with pytest.raises(ValueError, match="unknown variant"):
        P.PeriodicityStudy(variants=("conv7",))
    assert P.dataset_spec("long-mixed", P.PeriodicityStudy(n_structures=50, data_seed=3)) == "chains:long:mixed:seed=3:n=50"


def test_study_trains_every_cell_writes_outputs_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "study"
    study = tiny_study()
    table = P.run_periodicity(out, study, progress=False, base_config=SMALL)

    assert len(table) == 8 and set(zip(table.dataset, table.variant)) == set(study.cells)
    assert (table.n_train == 32).all() and (table.n_test == 4).all() and (table.epochs == 2).all()
    assert table.test_r2.notna().all() and (table.seconds > 0).all()
    for dataset, variant in study.cells:
        cell = out / dataset / variant
        cfg = json.loads((cell / "config.json").read_text())
        expected = {"default": (3, 8.0, 12, "mean"), "conv8": (8, 8.0, 12, "mean"),
                    "nbr18": (3, 12.0, 18, "mean"), "sum": (3, 8.0, 12, "sum")}[variant]
        assert (cfg["model"]["arch"]["n_conv"], cfg["graph"]["cutoff"], cfg["graph"]["max_neighbors"], cfg["model"]["pooling"]) == expected
        assert cfg["train"]["split_fractions"] == [0.8, 0.1, 0.1] and cfg["data"]["source"] == P.dataset_spec(dataset, study)
        assert (cell / "metrics.json").exists() and (cell / "predictions_test.csv").exists()
    for name in ("periodicity.csv", "periodicity.md", "parity_grid.png", "r2_bars.png", "study.json", "periodicity.log"):
        assert (out / name).stat().st_size > 0, name
    csv = pd.read_csv(out / "periodicity.csv")
    assert {"dataset", "variant", "n_train", "n_test", "test_r2", "test_mae", "test_mae_over_mad", "epochs", "seconds"} <= set(csv.columns)
    md = (out / "periodicity.md").read_text()
    assert "| dataset | default | conv8 | nbr18 | sum |" in md
    for dataset in study.datasets:
        row = next(line for line in md.splitlines() if line.startswith(f"| {dataset} |"))
        assert row.count("|") == 6 and "—" not in row
    assert json.loads((out / "study.json").read_text())["n_structures"] == 40

    # Resume: every cell is finished, so nothing trains and the table comes back the same.
    import crystalgnn.training.run as run_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(run_module, "train", no_training)
    again = P.run_periodicity(out, study, progress=False, base_config=SMALL)
    pd.testing.assert_frame_equal(again, table)
    assert (out / "periodicity.log").read_text().count("already done") == 8
    # A finished cell trained with other settings is not silently reused.
    with pytest.raises(ValueError, match="other settings"):
        P.run_periodicity(out, tiny_study(epochs=3), progress=False, base_config=SMALL)
    with pytest.raises(ValueError, match="chains:short:single:seed=0:n=41"):
        P.run_periodicity(out, tiny_study(n_structures=41), progress=False, base_config=SMALL)


def test_cli_runs_end_to_end_and_resumes(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="crystalgnn")
    cli_periodicity.add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli"
    argv = ["periodicity", "--out", str(out), "--datasets", "short-single", "--variants", "default", "site-sum",
            "--n-structures", "30", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--quiet"]
    args = parser.parse_args(argv)
    assert args.func is cli_periodicity.run
    assert cli_periodicity.run(args) == 0
    captured = capsys.readouterr()
    assert "| short-single |" in captured.out and "| dataset | default | site-sum |" in captured.out
    assert "[2/2] short-single/site-sum" in captured.err
    site = json.loads((out / "short-single" / "site-sum" / "config.json").read_text())
    assert site["model"]["pooling"] == "site" and site["data"]["per_atom"] is True
    # The same command again resumes: both cells are skipped.
    assert cli_periodicity.run(parser.parse_args(argv)) == 0
    assert capsys.readouterr().err.count("already done") == 2
    # Bad names are argparse errors; an unknown model is reported before any training.
    with pytest.raises(SystemExit):
        parser.parse_args(["periodicity", "--out", str(out), "--variants", "conv7"])
    bad = parser.parse_args(["periodicity", "--out", str(tmp_path / "bad"), "--model", "nosuchmodel", "--quiet"])
    assert cli_periodicity.run(bad) == 2
    assert "nosuchmodel" in capsys.readouterr().err
    assert "nbr18" in parser.format_help() or "nbr18" in _subparser_help(parser)


def _subparser_help(parser: argparse.ArgumentParser) -> str:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices["periodicity"].format_help()


def test_paper_findings_on_a_made_up_table():
    rows = {("short-single", "default"): 0.85, ("short-single", "nbr18"): 0.9, ("long-single", "default"): 0.3,
            ("long-single", "sum"): 0.9, ("long-mixed", "default"): 0.3, ("long-mixed", "sum"): 0.5}
    table = pd.DataFrame([{"dataset": d, "variant": v, "test_r2": r} for (d, v), r in rows.items()])
    findings = {f.name: f for f in P.paper_findings(table)}
    assert all(f.holds for f in findings.values()), findings
    worse = table.assign(test_r2=[0.85, 0.9, 0.8, 0.9, 0.3, 0.9])
    findings = {f.name: f.holds for f in P.paper_findings(worse)}
    assert findings["long-mean-worse"] is False and findings["mixed-sum-gain-smaller"] is False
    site = table.assign(variant=table.variant.replace({"sum": "site-sum"}))
    findings = {f.name: f.holds for f in P.paper_findings(site, sum_variant="site-sum")}
    assert findings["[site-sum]long-sum-beats-mean"] is True and findings["long-mean-worse"] is True
    assert {f.holds for f in P.paper_findings(table[table.dataset == "short-single"]) if f.name != "short-mean-learnable"
            and f.name != "short-more-neighbours"} == {None}
