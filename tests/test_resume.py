"""Resume: a run killed after epoch k and resumed ends with the numbers of an uninterrupted run;
``--resume`` on a missing, finished or mismatched run directory says what is wrong."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from crystalgnn import cli
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.io import load_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.training.checkpoint import load_checkpoint_file
from crystalgnn.training.run import train

EPOCHS, KILL_AT = 4, 2  # the killed process finishes epochs 0 and 1, then dies entering epoch 2

KILLER = textwrap.dedent("""
    import os, signal, sys
    import lightning as L
    from crystalgnn.config import RunConfig
    from crystalgnn.io import load_dataset
    from crystalgnn.training.run import train

    class Kill(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == int(sys.argv[4]):
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no final checkpoint: a real crash

    cfg = RunConfig.from_json_dict(__import__("json").loads(open(sys.argv[3]).read()))
    data = load_dataset(sys.argv[1], targets=[1], transform=cfg.data.transform)
    if cfg.model.task == "classification":
        import numpy as np
        data.targets = (data.targets > np.median(data.targets)).astype(float)
    train(data, sys.argv[2], cfg, progress=False, workers=1, callbacks=[Kill()])
""")


def _config(task: str) -> RunConfig:
    return RunConfig(
        data=DataConfig(transform="log10"),
        model=ModelConfig(arch=CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16), task=task),  # classification: dropout 0.5
        train=TrainConfig(epochs=EPOCHS, batch_size=16, threads=1, early_stopping_patience=50),
    )


def _data(folder, task: str):
    data = load_dataset(folder, targets=[1], transform="log10")
    if task == "classification":
        data.targets = (data.targets > np.median(data.targets)).astype(float)
    return data


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_killed_run_resumes_to_the_uninterrupted_numbers(elasticity_slice, tmp_path, task):
    cfg = _config(task)
    whole = train(_data(elasticity_slice, task), tmp_path / "whole", cfg, progress=False, workers=1)

    killed = tmp_path / "killed"
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    (tmp_path / "kill.py").write_text(KILLER)
    proc = subprocess.run([sys.executable, str(tmp_path / "kill.py"), str(elasticity_slice), str(killed), str(tmp_path / "cfg.json"),
                           str(KILL_AT)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL
    assert not (killed / "metrics.json").exists()
    last = load_checkpoint_file(killed / "checkpoints" / "last.safetensors")
    assert last["epoch"] == KILL_AT - 1 and last["optimizer_states"] and last["lr_schedulers"]
    assert "ResumeState" in last["callbacks"] and any(k.startswith("EarlyStopping") for k in last["callbacks"])

    resumed = train(_data(elasticity_slice, task), killed, None, progress=False, workers=1, resume=True)
    assert resumed.metrics["test"] == whole.metrics["test"] and resumed.metrics["best_epoch"] == whole.metrics["best_epoch"]
    pd.testing.assert_frame_equal(pd.read_csv(killed / "predictions_test.csv"), pd.read_csv(tmp_path / "whole" / "predictions_test.csv"))
    log = pd.read_csv(killed / "logs" / "metrics.csv")
    assert sorted(log["epoch"].dropna().astype(int).unique()) == list(range(EPOCHS))  # the killed process's epochs are kept
    assert not list(killed.rglob("*.ckpt"))


def _copy_slice(source, folder, n: int):
    folder.mkdir()
    rows = (source / "id_prop.csv").read_text().splitlines()[:n]
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        (folder / f"{row.split(',')[0]}.cif").symlink_to(source / f"{row.split(',')[0]}.cif")
    return folder


def test_resume_through_the_cli_and_its_errors(elasticity_slice, tmp_path, capsys):
    run = tmp_path / "run"
    mine = _copy_slice(elasticity_slice, tmp_path / "mine", 80)
    flags = ["--target", "1", "--transform", "log10", "--atom-fea-len", "16", "--n-conv", "1",
             "--h-fea-len", "16", "--batch-size", "16", "--threads", "1", "--workers", "1", "--quiet"]
    base = ["train", str(mine), *flags]

    def error(argv) -> str:
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    assert "no such run directory" in error(base + ["--resume", str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    assert "no config.json" in error(base + ["--resume", str(tmp_path / "empty")])

    assert cli.main(base + ["--epochs", "2", "--run-dir", str(run)]) == 0
    assert "has finished" in error(base + ["--resume", str(run)])
    (run / "metrics.json").unlink()  # as if killed after its last epoch: the last checkpoint is there
    err = error(base + ["--epochs", "3", "--resume", str(run)])
    assert "other settings" in err and "train.epochs: saved 2, now 3" in err
    assert "data.transform: saved 'log10', now 'none'" in error(base + ["--epochs", "2", "--transform", "none", "--resume", str(run)])
    assert "not of cgcnn" in error(base + ["--epochs", "2", "--hidden", "8", "--resume", str(run)])
    other = _copy_slice(elasticity_slice, tmp_path / "other", 80)
    assert "data.source: saved" in error(["train", str(other), *flags, "--epochs", "2", "--resume", str(run)])
    rows = (mine / "id_prop.csv").read_text().splitlines()
    (mine / "id_prop.csv").write_text("\n".join(rows[:70]) + "\n")  # the same folder, fewer items
    assert "data or split differ" in error(base + ["--epochs", "2", "--resume", str(run)])
    (run / "checkpoints" / "last.safetensors").unlink()
    assert "no checkpoints/last.safetensors" in error(base + ["--epochs", "2", "--resume", str(run)])

    # The same command with --resume (and the data read from the saved config) finishes the run.
    shutil_run = tmp_path / "run2"
    assert cli.main(["train", str(elasticity_slice), *flags, "--epochs", "2", "--run-dir", str(shutil_run)]) == 0
    (shutil_run / "metrics.json").unlink()
    before = json.loads((shutil_run / "config.json").read_text())
    assert cli.main(["train", "--resume", str(shutil_run), "--quiet", "--threads", "1"]) == 0
    assert json.loads((shutil_run / "metrics.json").read_text())["test"]["target1"]["n"] > 0
    assert json.loads((shutil_run / "config.json").read_text())["model"] == before["model"]
    capsys.readouterr()


def test_a_resumed_config_keeps_hardware_free(elasticity_slice, tmp_path):
    from crystalgnn.training.resume import check_same_settings

    cfg = _config("regression")
    check_same_settings(cfg, dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=2, num_workers=2)), tmp_path)
    with pytest.raises(ValueError, match="train.lr"):
        check_same_settings(cfg, dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1.0)), tmp_path)
