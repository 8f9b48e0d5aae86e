"""Training end to end on small real data: round trips, determinism, tasks, bad input, CLI, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import require_data
from pymatgen.core import Structure

from crystalgnn import cli
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.io import load_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.predict import load_model
from crystalgnn.training.run import train

TINY_MODEL = ModelConfig(arch=CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16))


def tiny(epochs: int = 2, **model) -> RunConfig:
    return RunConfig(
        data=DataConfig(transform="log10"),
        model=ModelConfig(**{**TINY_MODEL.__dict__, **model}),
        train=TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, threads=1),
    )


def test_train_save_load_predict_gives_identical_numbers(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[0, 1], transform="log10")
    result = train(data, tmp_path / "run", tiny(), progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "model.safetensors.json", "metrics.json", "predictions_train.csv",
                 "predictions_val.csv", "predictions_test.csv", "parity_target0.png", "parity_target1.png", "learning_curve.png"):
        assert (run / name).exists(), name
    assert set(result.metrics["test"]) == {"target0", "target1"}
    assert not list(run.rglob("*.ckpt")) and list((run / "checkpoints").glob("*.safetensors"))  # no pickle anywhere

    saved = pd.read_csv(run / "predictions_test.csv")
    model = load_model(run)
    # Input order is kept, even when it is not the order of the training files.
    cifs = [elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)][::-1]
    fresh = model.predict(cifs)
    assert fresh["id"].tolist() == [p.stem for p in cifs]
    np.testing.assert_array_equal(fresh["log10_target0"].to_numpy()[::-1], saved["pred_log10_target0"].to_numpy().astype(np.float32))
    np.testing.assert_array_equal(fresh["log10_target1"].to_numpy()[::-1], saved["pred_log10_target1"].to_numpy().astype(np.float32))
    # In the units of the data (GPa) too, where the model learned log10.
    np.testing.assert_allclose(fresh["target1"].to_numpy()[::-1], saved["pred_target1"].to_numpy(), rtol=1e-12)
    # In-memory structures give the same numbers as files.
    structures = [Structure.from_file(p) for p in cifs[:5]]
    np.testing.assert_allclose(model.predict(structures)["target0"], fresh["target0"][:5], rtol=1e-6)
    # Saved settings are restored: a config round trip is exact.
    assert RunConfig.load(run / "config.json") == model.cfg
    assert model.cfg.data.transform == "log10"


def test_same_seed_same_numbers(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    a = train(data, tmp_path / "a", tiny(), progress=False)
    b = train(data, tmp_path / "b", tiny(), progress=False)
    assert a.metrics["test"] == b.metrics["test"]
    pa, pb = (pd.read_csv(tmp_path / r / "predictions_test.csv") for r in "ab")
    pd.testing.assert_frame_equal(pa, pb)


def test_multiclass_classification(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[0], transform="log10")
    data.targets = np.digitize(data.targets, np.quantile(data.targets, [1 / 3, 2 / 3])).astype(float)
    cfg = tiny(task="classification")
    result = train(data, tmp_path / "cls", cfg, progress=False)
    test = result.metrics["test"]["target0"]
    assert set(test) >= {"accuracy", "roc_auc"}
    assert (tmp_path / "cls" / "roc.png").exists()
    model = load_model(tmp_path / "cls")
    assert model.cfg.model.n_classes == 3 and model.cfg.model.dropout == 0.5
    frame = model.predict([elasticity_slice / "0.cif", elasticity_slice / "1.cif"])
    probs = frame[["prob_0", "prob_1", "prob_2"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert frame["predicted_class"].tolist() == probs.argmax(1).tolist()


def test_binary_classification_on_cgcnn_sample(tmp_path):
    folder = require_data("cgcnn_sample", "sample-classification")
    cfg = RunConfig(model=ModelConfig(**{**TINY_MODEL.__dict__, "task": "classification"}), train=TrainConfig(epochs=1, batch_size=4, threads=1))
    result = train(folder, tmp_path / "bin", cfg, progress=False)
    assert "accuracy" in result.metrics["test"]["target"]


def test_cli_end_to_end_on_mp_elasticity(elasticity_slice, tmp_path, capsys):
    run = tmp_path / "cli-run"
    code = cli.main(["train", str(elasticity_slice), "--target", "0", "--transform", "log10", "--run-dir", str(run),
                     "--epochs", "2", "--batch-size", "16", "--atom-fea-len", "16", "--n-conv", "1", "--h-fea-len", "16",
                     "--pooling", "site", "--threads", "1", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test log10_target0: MAE" in out and "R²" in out  # the summary names what was learned

    preds, sites, emb = tmp_path / "p.csv", tmp_path / "sites.csv", tmp_path / "emb.csv"
    inputs = [str(elasticity_slice / "3.cif"), str(elasticity_slice / "1.cif"), str(elasticity_slice / "2.cif")]
    assert cli.main(["predict", str(run), *inputs, "-o", str(preds), "--site-contributions", str(sites), "--embeddings", str(emb)]) == 0
    frame = pd.read_csv(preds)
    assert frame["id"].astype(str).tolist() == ["3", "1", "2"]
    site_frame = pd.read_csv(sites)
    per_crystal = site_frame.groupby(site_frame["id"].astype(str))["log10_target0"].mean()  # contributions as learned
    np.testing.assert_allclose(per_crystal.loc[["3", "1", "2"]].to_numpy(), frame["log10_target0"].to_numpy(), rtol=1e-5)
    assert set(site_frame["element"]) == {str(e) for p in inputs for e in Structure.from_file(p).composition.elements}
    assert len(site_frame) == sum(len(Structure.from_file(p)) for p in inputs)
    assert pd.read_csv(emb).shape == (3, 1 + 16)

    assert cli.main(["evaluate", str(run), str(elasticity_slice), "--target", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["target0"]["n"] == 80


def test_cli_help_explains():
    out = subprocess.run([sys.executable, "-m", "crystalgnn.cli", "train", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--pooling" in out and "per-site contributions" in out and "--on-error" in out


def test_ddp_two_processes_on_cpu(elasticity_slice, tmp_path):
    """Lightning DDP with the gloo backend: two processes train on halves of each epoch."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "crystalgnn.cli", "train", str(elasticity_slice), "--target", "1", "--transform", "log10",
           "--run-dir", str(run), "--epochs", "2", "--batch-size", "8", "--atom-fea-len", "16", "--n-conv", "1",
           "--h-fea-len", "16", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--threads", "1", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert np.isfinite(metrics["test"]["target1"]["mae"])
    assert load_model(run).predict([elasticity_slice / "5.cif"]).columns.tolist() == ["id", "target1", "log10_target1"]


def test_loader_workers_are_reproducible(elasticity_slice, tmp_path):
    """DataLoader worker processes share the cached graphs (nothing is rebuilt per epoch), and a
    seeded run with workers repeats exactly. (The shuffle order differs from a run without
    workers: the loader draws its worker seed from the same generator.)"""
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    base = tiny()
    with_workers = RunConfig(data=base.data, model=base.model, train=TrainConfig(**{**base.train.__dict__, "num_workers": 2}))
    a = train(data, tmp_path / "a", with_workers, progress=False)
    b = train(data, tmp_path / "b", with_workers, progress=False)
    assert a.metrics["test"] == b.metrics["test"]
    assert np.isfinite(a.metrics["test"]["target1"]["mae"])


def test_benchmark_epoch_timer_counts_training_crystals_only(elasticity_slice, tmp_path):
    """The benchmarks' rate is crystals trained on per training second: the timer counts each
    epoch's training crystals (not the validation ones Lightning runs before the epoch-end hook)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _common import epoch_timer, training_rate

    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    timer = epoch_timer()
    result = train(data, tmp_path / "run", tiny(epochs=3), progress=False, callbacks=[timer])
    n_train = next(iter(result.metrics["train"].values()))["n"]
    assert timer.crystals == [n_train] * 3
    assert all(s > 0 for s in timer.seconds)
    assert training_rate(timer) == sum(timer.crystals[1:]) / sum(timer.seconds[1:])
