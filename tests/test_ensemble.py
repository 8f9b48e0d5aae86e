"""Ensembles of any model: members in RUN/members/<k>, the mean and spread written at training time
and given back by load_model, calibration figures, bootstrap resamples, re-runs and the CLI."""

from __future__ import annotations

import dataclasses
import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from crystalgnn import cli
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.io import load_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.predict import load_model
from crystalgnn.reports.metrics import calibration_metrics, regression_metrics
from crystalgnn.training import run as run_module
from crystalgnn.training.ensemble import bootstrap_rows, member_config
from crystalgnn.training.predictor import EnsemblePredictor
from crystalgnn.training.run import train

N_MEMBERS = 2


def _csv(path) -> pd.DataFrame:
    """A predictions CSV with its floats as written (pandas' default parser can be 1 ulp off)."""
    return pd.read_csv(path, float_precision="round_trip")


def _ensemble_config(**train) -> RunConfig:
    return RunConfig(
        data=DataConfig(transform="log10"),
        model=ModelConfig(arch=CGCNNConfig(atom_fea_len=16, n_conv=1, h_fea_len=16)),
        train=TrainConfig(epochs=2, batch_size=16, threads=1, ensemble=N_MEMBERS, **train),
    )


@pytest.fixture(scope="module")
def ensemble_run(elasticity_slice, tmp_path_factory):
    """A 2-member ensemble (2 epochs each) on 80 crystals, trained once for the tests of this module."""
    run = tmp_path_factory.mktemp("ensemble") / "run"
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    result = train(data, run, _ensemble_config(), cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return run, result


def test_calibration_metrics_equal_scipy_and_a_hand_count():
    y_true = np.zeros(6)
    y_pred = np.array([0.1, -0.5, 1.0, 0.2, -2.5, 3.0])  # |error| 0.1 0.5 1.0 0.2 2.5 3.0
    sigma = np.array([0.2, 0.3, 0.6, 0.1, 2.0, 1.0])
    # within 1σ: only the first; within 2σ: all but the last (0.2 ≤ 2·0.1 counts: the bound is inclusive)
    c = calibration_metrics(y_true, y_pred, sigma)
    assert c["coverage_1sigma"] == pytest.approx(1 / 6) and c["coverage_2sigma"] == pytest.approx(5 / 6)
    assert c["spearman"] == pytest.approx(spearmanr(sigma, np.abs(y_pred)).statistic, abs=1e-12)
    assert c["spearman"] == pytest.approx(1 - 6 * 4 / (6 * 35))  # ranks of σ 2 3 4 1 6 5, of |error| 1 3 4 2 5 6: Σd² = 4
    assert c["n"] == 6 and c["mean_sigma"] == pytest.approx(sigma.mean())
    constant = calibration_metrics(y_true, y_pred, np.ones(6))  # no ranking to correlate: NaN, not a warning
    assert np.isnan(constant["spearman"]) and constant["coverage_1sigma"] == pytest.approx(4 / 6)


def test_bootstrap_rows_are_a_seeded_resample():
    rows = np.arange(10, 60)
    a, again, other = bootstrap_rows(rows, 123), bootstrap_rows(rows, 123), bootstrap_rows(rows, 124)
    np.testing.assert_array_equal(a, again)
    assert len(a) == len(rows) and set(a) <= set(rows) and len(set(a)) < len(rows)  # drawn with replacement
    assert not np.array_equal(a, other)


def test_members_keep_the_ensemble_split_and_old_configs_load():
    cfg = _ensemble_config(seed=7, bootstrap=True)
    members = [member_config(cfg, k).train for k in range(3)]
    assert [(t.seed, t.split_seed, t.ensemble, t.bootstrap) for t in members] == [(7, 7, 1, True), (8, 7, 1, True), (9, 7, 1, True)]
    # a single run's config.json is what it was before ensembles: the new settings are left out at
    # their defaults, and a file without them loads with the defaults
    single = json.loads(RunConfig().to_json())
    assert not {"ensemble", "bootstrap", "split_seed"} & set(single["train"])
    assert RunConfig.from_json_dict(single) == RunConfig()
    assert json.loads(cfg.to_json())["train"]["ensemble"] == N_MEMBERS
    assert RunConfig.from_json_dict(json.loads(member_config(cfg, 1).to_json())) == member_config(cfg, 1)
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        TrainConfig(ensemble=0)


def test_ensemble_round_trip_gives_the_numbers_written_at_training(ensemble_run, elasticity_slice):
    run, result = ensemble_run
    for name in ("config.json", "metrics.json", "predictions_test.csv", "calibration.png", "parity.png"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ensemble"]["members"] == N_MEMBERS and metrics["ensemble"]["seeds"] == [123, 124]
    saved = _csv(run / "predictions_test.csv")
    assert list(saved.columns) == ["id", "true_target1", "pred_target1", "true_log10_target1", "pred_log10_target1",
                                   "pred_log10_target1_std"]  # the mean in the columns of a single run, σ beside it

    # every member is an ordinary run, on the same split, and they differ
    member_frames = [pd.read_csv(run / "members" / str(k) / "predictions_test.csv") for k in range(N_MEMBERS)]
    for frame in member_frames:
        assert frame["id"].tolist() == saved["id"].tolist()
    assert not np.allclose(member_frames[0]["pred_log10_target1"], member_frames[1]["pred_log10_target1"])

    cifs = [elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)]
    model = load_model(run)
    assert isinstance(model, EnsemblePredictor) and len(model.members) == N_MEMBERS
    fresh = model.predict(cifs)
    np.testing.assert_array_equal(fresh["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy())
    np.testing.assert_array_equal(fresh["log10_target1_std"].to_numpy(), saved["pred_log10_target1_std"].to_numpy())
    np.testing.assert_allclose(fresh["target1"].to_numpy(), saved["pred_target1"].to_numpy(), rtol=1e-12)

    # ... and the mean / std of the members loaded one by one, as (members, n, targets) in float64
    alone = np.stack([load_model(run / "members" / str(k)).predict(cifs)[["log10_target1"]].to_numpy().astype(np.float64)
                      for k in range(N_MEMBERS)])
    np.testing.assert_array_equal(alone.mean(axis=0)[:, 0], fresh["log10_target1"].to_numpy())
    np.testing.assert_array_equal(alone.std(axis=0)[:, 0], fresh["log10_target1_std"].to_numpy())
    assert (alone.std(axis=0) > 0).all()

    # metrics and calibration are those of the written mean and spread
    y, mean, sigma = saved["true_log10_target1"], saved["pred_log10_target1"], saved["pred_log10_target1_std"]
    assert metrics["test"]["target1"] == pytest.approx(regression_metrics(y, mean))
    assert metrics["calibration"]["target1"] == pytest.approx(calibration_metrics(y, mean, sigma), nan_ok=True)
    assert "Spearman" in result.summary()


def test_training_again_keeps_finished_members(ensemble_run, elasticity_slice, tmp_path):
    run, _ = ensemble_run
    weights = [run / "members" / str(k) / "model.safetensors" for k in range(N_MEMBERS)]
    stamps = [w.stat().st_mtime_ns for w in weights]
    before = (run / "predictions_test.csv").read_text()
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    train(data, run, _ensemble_config(), cache_dir=tmp_path / "cache", progress=False)
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # not retrained
    assert (run / "predictions_test.csv").read_text() == before
    # ... but not when the settings changed: that would mix members of two ensembles
    with pytest.raises(ValueError, match="other settings than this ensemble's"):
        train(data, run, _ensemble_config(lr=1e-2), cache_dir=tmp_path / "cache", progress=False)


def test_members_trained_apart_make_the_same_ensemble(ensemble_run, elasticity_slice, tmp_path):
    """Members trained as ordinary runs into ``members/<k>`` (by parallel processes, as
    ``benchmarks/zoo.py --member K`` does), in any order, are kept by the ensemble's training,
    which then gives the numbers of the ensemble trained in one go."""
    reference, _ = ensemble_run
    run = tmp_path / "run"
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    for k in reversed(range(N_MEMBERS)):
        train(data, run / "members" / str(k), member_config(_ensemble_config(), k), cache_dir=tmp_path / "cache", progress=False)
    weights = [run / "members" / str(k) / "model.safetensors" for k in range(N_MEMBERS)]
    stamps = [w.stat().st_mtime_ns for w in weights]
    train(data, run, _ensemble_config(), cache_dir=tmp_path / "cache", progress=False)
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # kept, not retrained
    pd.testing.assert_frame_equal(_csv(run / "predictions_test.csv"), _csv(reference / "predictions_test.csv"))


class _Crash(L.Callback):
    """Stands for a kill: the second member dies entering its second epoch, after the checkpoint of its first."""

    def __init__(self) -> None:
        self.fits = 0

    def on_fit_start(self, trainer, module):
        self.fits += 1

    def on_train_epoch_start(self, trainer, module):
        if self.fits == 2 and trainer.current_epoch == 1:
            raise RuntimeError("killed")


def test_a_killed_member_continues_from_its_checkpoint(ensemble_run, elasticity_slice, tmp_path):
    reference, _ = ensemble_run
    run = tmp_path / "run"
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    with pytest.raises(RuntimeError, match="killed"):
        train(data, run, _ensemble_config(), cache_dir=tmp_path / "cache", progress=False, callbacks=[_Crash()])
    assert (run / "members" / "0" / "metrics.json").exists() and not (run / "members" / "1" / "metrics.json").exists()
    assert (run / "members" / "1" / "checkpoints" / "last.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="run the same training again"):
        load_model(run)
    train(data, run, None, cache_dir=tmp_path / "cache", progress=False, resume=True)  # as `crystalgnn train --resume RUN`
    # the member continued (its log holds both epochs) and ends with the numbers of the uninterrupted ensemble
    assert json.loads((run / "members" / "1" / "metrics.json").read_text())["epochs_run"] == 2
    for name in ("predictions_test.csv", "members/1/predictions_test.csv"):
        pd.testing.assert_frame_equal(_csv(run / name), _csv(reference / name))


def test_cli_ensemble_with_bootstrap_then_predict(elasticity_slice, tmp_path, monkeypatch, capsys):
    loaders: list[np.ndarray] = []
    make_loader = run_module.make_loader

    def recording(prepared, indices, batch_size, shuffle=False, num_workers=0):
        if shuffle:  # the training loader
            loaders.append(np.asarray(indices).copy())
        return make_loader(prepared, indices, batch_size, shuffle=shuffle, num_workers=num_workers)

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--ensemble N" in (help_text := capsys.readouterr().out) and "bootstrap resample" in help_text

    monkeypatch.setattr(run_module, "make_loader", recording)
    run = tmp_path / "cli-ensemble"
    args = ["train", str(elasticity_slice), "--target", "1", "--transform", "log10", "--run-dir", str(run), "--epochs", "1",
            "--batch-size", "16", "--atom-fea-len", "16", "--n-conv", "1", "--h-fea-len", "16", "--threads", "1", "--quiet",
            "--ensemble", "2", "--bootstrap", "--seed", "5"]
    assert cli.main(args) == 0
    assert "σ (spread of 2 members)" in capsys.readouterr().out
    cfg = RunConfig.load(run / "config.json")
    assert (cfg.train.ensemble, cfg.train.bootstrap, cfg.train.seed) == (2, True, 5)

    # each member trained on its own seeded resample of the one training split
    train_ids = pd.read_csv(run / "predictions_train.csv")["id"].astype(str).tolist()
    ids = load_dataset(elasticity_slice, targets=[1], transform="log10").ids
    train_rows = np.sort([ids.index(i) for i in train_ids])
    assert len(loaders) == 2
    for k, rows in enumerate(loaders):
        np.testing.assert_array_equal(rows, bootstrap_rows(train_rows, 5 + k))
        assert len(rows) == len(train_rows) and len(set(rows)) < len(train_rows)
    assert not np.array_equal(loaders[0], loaders[1])

    out = tmp_path / "out.csv"
    written = _csv(run / "predictions_test.csv")
    # the test split in its order: the batches of training time, so the numbers are the same to the bit
    inputs = [str(elasticity_slice / f"{i}.cif") for i in written["id"]]
    assert cli.main(["predict", str(run), *inputs, "-o", str(out)]) == 0
    frame = _csv(out)
    assert list(frame.columns) == ["id", "target1", "log10_target1", "log10_target1_std"]
    assert frame["id"].tolist() == written["id"].tolist() and (frame["log10_target1_std"] > 0).all()
    np.testing.assert_array_equal(frame["log10_target1"], written["pred_log10_target1"])
    np.testing.assert_array_equal(frame["log10_target1_std"], written["pred_log10_target1_std"])


def test_ensemble_refuses_several_devices(elasticity_slice, tmp_path):
    cfg = _ensemble_config()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, devices=2))
    with pytest.raises(ValueError, match="one after the other on one device"):
        train(elasticity_slice, tmp_path / "run", cfg, progress=False)
