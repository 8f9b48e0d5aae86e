"""Nothing wrong without a word: target transforms have one source of truth, predictions come back
in the units of the data (issue "Nothing wrong, nothing lost", items 1-2)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crystalgnn import cli
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.io import load_dataset
from crystalgnn.io.resolve import resolve_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.predict import load_model
from crystalgnn.training.run import train

TINY = ModelConfig(arch=CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8))


def _cfg(transform: str = "none") -> RunConfig:
    return RunConfig(data=DataConfig(transform=transform), model=TINY, train=TrainConfig(epochs=1, batch_size=16, threads=1))


# ----------------------------------------------------------------- 1. one source of truth for transforms
@pytest.mark.parametrize("read_with,config_says", [("log10", "none"), ("none", "log10")])
def test_a_dataset_read_with_another_transform_than_the_config_is_refused(elasticity_slice, tmp_path, read_with, config_says):
    data = load_dataset(elasticity_slice, targets=[1], transform=read_with)
    with pytest.raises(ValueError, match=f"read with transform='{read_with}'.*say transform='{config_says}'"):
        train(data, tmp_path / "run", _cfg(config_says), progress=False, workers=1)
    assert not (tmp_path / "run" / "config.json").exists()  # refused before anything claims what was learned


def test_generated_chains_take_the_run_s_transform():
    plain = resolve_dataset("chains:short:n=20", ["a"], "none")
    logged = resolve_dataset("chains:short:n=20", ["a"], "log10")
    np.testing.assert_allclose(logged.targets, np.log10(plain.targets))
    assert logged.meta["transform"] == "log10"


# -------------------------------------------------------------- 2. predictions in the units of the data
def test_a_log10_run_predicts_in_the_units_of_the_data(elasticity_slice, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_dataset(elasticity_slice, targets=[1], transform="log10"), run, _cfg("log10"), progress=False, workers=1)
    saved = pd.read_csv(run / "predictions_test.csv", dtype={"id": str})
    assert saved.columns.tolist() == ["id", "true_target1", "pred_target1", "true_log10_target1", "pred_log10_target1"]
    raw = {line.split(",")[0]: float(line.split(",")[2]) for line in (elasticity_slice / "id_prop.csv").read_text().splitlines()}
    np.testing.assert_allclose(saved["true_target1"], [raw[i] for i in saved["id"]], rtol=1e-12)  # GPa, as in the file
    np.testing.assert_allclose(saved["pred_target1"], 10.0 ** saved["pred_log10_target1"], rtol=1e-6)  # float32 as text
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["target_transform"] == "log10"  # the metrics are of log10 G, as learned
    mae_of_log10 = float(np.mean(np.abs(saved["true_log10_target1"] - saved["pred_log10_target1"])))
    assert math.isclose(metrics["test"]["target1"]["mae"], mae_of_log10, rel_tol=1e-6)  # float32 as text

    frame = load_model(run).predict([elasticity_slice / f"{i}.cif" for i in saved["id"]])
    assert frame.columns.tolist() == ["id", "target1", "log10_target1"]
    np.testing.assert_allclose(frame["target1"], saved["pred_target1"], rtol=1e-12)
    assert frame["target1"].min() > 1.0  # GPa, not log10 GPa

    out = tmp_path / "evaluated.csv"
    assert cli.main(["evaluate", str(run), str(elasticity_slice), "--target", "1", "-o", str(out)]) == 0
    evaluated = pd.read_csv(out, dtype={"id": str})
    assert evaluated.columns.tolist() == saved.columns.tolist()  # evaluate writes what train writes
    report = json.loads(capsys.readouterr().out)
    test = evaluated.set_index("id").loc[saved["id"]]
    np.testing.assert_allclose(test["true_target1"], saved["true_target1"], rtol=1e-12)  # labels in GPa, not log10'd twice
    assert report["metrics"]["target1"]["n"] == 80


# ------------------------------------------------------------------ 3. absurd targets, non-finite losses
def _with_targets(source, folder, replacements: dict[str, str]):
    folder.mkdir()
    rows = []
    for line in (source / "id_prop.csv").read_text().splitlines()[:40]:
        cid, k, g, *rest = line.split(",")
        rows.append(",".join([cid, k, replacements.get(cid, g), *rest]))
        (folder / f"{cid}.cif").symlink_to(source / f"{cid}.cif")
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_targets_float32_cannot_hold_are_refused_by_id(elasticity_slice, tmp_path):
    from crystalgnn.errors import DatasetError

    folder = _with_targets(elasticity_slice, tmp_path / "data", {"3": "1e300", "5": "-2e19"})
    with pytest.raises(DatasetError) as info:
        train(str(folder), tmp_path / "run", RunConfig(data=DataConfig(targets=("1",)), model=TINY,
                                                       train=TrainConfig(epochs=1, batch_size=8, threads=1)), progress=False, workers=1)
    reasons = {p.id: p.reason for p in info.value.problems}
    assert set(reasons) == {"3", "5"} and "float32" in reasons["3"] and "1e+300" in reasons["3"]
    skip = RunConfig(data=DataConfig(targets=("1",), on_error="skip"), model=TINY, train=TrainConfig(epochs=1, batch_size=8, threads=1))
    result = train(str(folder), tmp_path / "skip", skip, progress=False, workers=1)
    assert np.isfinite(result.metrics["test"]["target1"]["mae"])
    assert set(pd.read_csv(tmp_path / "skip" / "skipped.csv", dtype={"id": str})["id"]) == {"3", "5"}
    # After log10, 1e300 is 300: nothing overflows, the value trains.
    assert load_dataset(folder, targets=[1], transform="log10").targets.max() == pytest.approx(300.0)


def test_a_non_finite_loss_stops_training_naming_the_batch_and_keeps_the_last_good_epoch(elasticity_slice, tmp_path):
    import lightning as L
    import torch

    from crystalgnn.errors import NonFiniteLossError
    from crystalgnn.training.checkpoint import load_checkpoint_file

    class Poison(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    next(module.model.parameters()).fill_(float("nan"))

    cfg = RunConfig(data=DataConfig(transform="log10"), model=TINY, train=TrainConfig(epochs=3, batch_size=16, threads=1))
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    with pytest.raises(NonFiniteLossError) as info:
        train(data, tmp_path / "run", cfg, progress=False, workers=1, callbacks=[Poison()])
    err = info.value
    assert err.epoch == 1 and err.batch == 0 and len(err.ids) == 16 and set(err.ids) <= set(data.ids)
    assert "epoch 1, batch 0" in str(err) and err.ids[0] in str(err)
    last = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert last["epoch"] == 0 and all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert not (tmp_path / "run" / "metrics.json").exists()


# ----------------------------------------------------------------------------------- 4. determinism
def test_deterministic_runs_repeat_bit_for_bit(elasticity_slice, tmp_path, capsys):
    from safetensors.torch import load_file

    base = ["train", str(elasticity_slice), "--target", "1", "--transform", "log10", "--epochs", "2", "--batch-size", "16",
            "--atom-fea-len", "8", "--n-conv", "1", "--h-fea-len", "8", "--workers", "1", "--quiet", "--deterministic"]
    for name in ("a", "b"):
        assert cli.main([*base, "--run-dir", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in "ab")
    assert a["test"] == b["test"]
    wa, wb = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert all((wa[k] == wb[k]).all() for k in wa)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    assert saved["deterministic"] is True
    capsys.readouterr()
    assert cli.main([*base, "--threads", "2", "--run-dir", str(tmp_path / "c")]) == 2
    assert "deterministic run uses one CPU thread" in capsys.readouterr().err


# ------------------------------------------------------------------------ 5. honest training reports
def test_every_training_crystal_is_seen_every_epoch(elasticity_slice, tmp_path):
    import lightning as L

    seen: dict[int, list[int]] = {}

    class Count(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.setdefault(trainer.current_epoch, []).append(int(batch.num_graphs))

    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = RunConfig(data=DataConfig(transform="log10"), model=TINY, train=TrainConfig(epochs=2, batch_size=47, threads=1))
    result = train(data, tmp_path / "run", cfg, progress=False, workers=1, callbacks=[Count()])
    n_train = result.metrics["train"]["target1"]["n"]
    assert n_train == 48  # 47 + a lone last crystal: one batch of 48, not 47 seen and 1 dropped
    assert seen == {0: [48], 1: [48]}


def test_metrics_and_summary_say_how_training_ended(elasticity_slice, tmp_path, caplog):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = RunConfig(data=DataConfig(transform="log10"), model=TINY, train=TrainConfig(epochs=3, batch_size=16, threads=1))
    done = train(data, tmp_path / "all", cfg, progress=False, workers=1)
    assert (done.metrics["epochs_run"], done.metrics["stop_reason"]) == (3, "max_epochs") and done.metrics["wall_seconds"] > 0
    assert "epochs run 3 of 3 (max epochs), best epoch" in done.summary()

    import dataclasses

    slow = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=500, max_minutes=0.05))
    with caplog.at_level("WARNING", logger="crystalgnn"):
        timed = train(data, tmp_path / "timed", slow, progress=False, workers=1)
    assert timed.metrics["stop_reason"] == "time_limit" and 0 < timed.metrics["epochs_run"] < 500
    assert "time limit" in caplog.text and f"after {timed.metrics['epochs_run']} of 500 epochs" in caplog.text
    assert "(time limit)" in timed.summary()


def test_a_time_budget_fits_the_schedule_to_the_clock(elasticity_slice, tmp_path):
    """With --max-minutes and more epochs than fit, one-cycle still anneals: the schedule follows the
    clock. --schedule-by-epochs keeps the old behaviour: stopped early in the warm-up ramp."""
    import lightning as L

    class FinalRate(L.Callback):  # the rate when training ends, and how far the schedule got
        def on_train_end(self, trainer, module):
            scheduler = trainer.lr_scheduler_configs[0].scheduler
            self.lr = trainer.optimizers[0].param_groups[0]["lr"]
            self.position, self.length = scheduler.last_epoch, scheduler.total_steps

    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    base = TrainConfig(epochs=2000, batch_size=16, threads=1, max_minutes=0.05, lr=3e-3)
    finals = {}
    for fitted in (True, False):
        cfg = RunConfig(data=DataConfig(transform="log10"), model=TINY, train=dataclasses.replace(base, schedule_to_budget=fitted))
        final = FinalRate()
        done = train(data, tmp_path / str(fitted), cfg, progress=False, workers=1, callbacks=[final])
        assert done.metrics["stop_reason"] == "time_limit"
        finals[fitted] = final
    fitted, by_epochs = finals[True], finals[False]
    # one-cycle starts at lr/25, peaks at lr after 30 % of its steps and ends at lr/25/1e4
    assert fitted.position >= 0.95 * fitted.length and fitted.lr < 3e-3 / 25 / 10
    assert by_epochs.position < 0.3 * by_epochs.length and by_epochs.lr > 3e-3 / 25


# ---------------------------------------------------------------------------------------- 6. predict
@pytest.fixture(scope="module")
def mean_run(elasticity_slice, tmp_path_factory):
    run = tmp_path_factory.mktemp("mean-run") / "run"
    train(load_dataset(elasticity_slice, targets=[1], transform="log10"), run, _cfg("log10"), progress=False, workers=1)
    return run


def test_predict_checks_its_options_before_predicting(mean_run, elasticity_slice, tmp_path, capsys, monkeypatch):
    from crystalgnn.training.predictor import Predictor

    monkeypatch.setattr(Predictor, "prepare", lambda *a, **k: pytest.fail("predicted before checking --site-contributions"))
    argv = ["predict", str(mean_run), str(elasticity_slice / "3.cif"), "--site-contributions", str(tmp_path / "s.csv")]
    assert cli.main(argv) == 2
    assert "--pooling site" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()


def test_skipped_inputs_keep_their_rows(mean_run, elasticity_slice, tmp_path, capsys):
    (tmp_path / "broken.cif").write_text("data_broken\nnot a cif\n")
    inputs = [elasticity_slice / "3.cif", tmp_path / "broken.cif", elasticity_slice / "1.cif"]
    model = load_model(mean_run)
    with pytest.raises(Exception) as info:
        model.predict(inputs)
    assert "skipped.csv" not in str(info.value) and "'problem' column" in str(info.value)
    frame = model.predict(inputs, on_error="skip")
    assert frame["id"].tolist() == ["3", "broken", "1"]  # one row per input, in input order
    assert frame["problem"].tolist()[0] == "" and frame["problem"].tolist()[2] == "" and "CIF" in frame["problem"][1]
    assert np.isnan(frame["target1"][1]) and np.isfinite(frame["target1"][[0, 2]]).all()
    out = tmp_path / "p.csv"
    assert cli.main(["predict", str(mean_run), *map(str, inputs), "--on-error", "skip", "-o", str(out)]) == 0
    written = pd.read_csv(out, dtype={"id": str}, keep_default_na=False)
    assert written["id"].tolist() == ["3", "broken", "1"] and written["target1"][1] == "" and written["problem"][1]
    capsys.readouterr()


def test_predict_store_takes_what_predict_takes(mean_run, elasticity_slice):
    model = load_model(mean_run)
    pred = model.predict_store([elasticity_slice / "3.cif", elasticity_slice / "1.cif"])
    assert pred.ids == ["3", "1"] and pred.embeddings.shape == (2, 8)
    np.testing.assert_allclose(pred.values[:, 0], model.predict([elasticity_slice / "3.cif", elasticity_slice / "1.cif"])["log10_target1"])


# ------------------------------------------------------------------------------------------ 7. cache
def test_a_corrupt_shard_is_named_set_aside_and_rebuilt(elasticity_slice, tmp_path, caplog):
    from crystalgnn.config import GraphConfig
    from crystalgnn.graphs.cache import build_graphs

    data = load_dataset(elasticity_slice, targets=[])
    cache = tmp_path / "cache"
    first, ok, _ = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False)
    (shard,) = [p for p in cache.rglob("shard-*") if p.is_dir()]
    (shard / "edge_distances.npy").write_bytes(b"not an array" * 10)
    with caplog.at_level("WARNING", logger="crystalgnn"):
        again, ok2, _ = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False)
    assert ok2.all() and str(shard) in caplog.text and "corrupt" in caplog.text
    assert shard.with_name(shard.name + ".corrupt").exists()
    for name in ("atomic_numbers", "edge_index", "edge_distances", "node_ptr", "edge_ptr"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))


def test_a_run_on_a_corrupt_cache_predicts_as_an_undisturbed_one(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cache = tmp_path / "cache"
    clean = train(data, tmp_path / "clean", _cfg("log10"), cache_dir=cache, progress=False, workers=1)
    for array in cache.rglob("shard-*/*.npy"):
        array.write_bytes(array.read_bytes()[:100])  # truncated, as by a full disk or a killed write
    disturbed = train(data, tmp_path / "disturbed", _cfg("log10"), cache_dir=cache, progress=False, workers=1)
    assert disturbed.metrics["test"] == clean.metrics["test"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "clean" / "predictions_test.csv"),
                                  pd.read_csv(tmp_path / "disturbed" / "predictions_test.csv"))


def _build_into(args) -> int:
    from crystalgnn.config import GraphConfig
    from crystalgnn.graphs.cache import build_graphs

    folder, cache = args
    data = load_dataset(folder, targets=[])
    store, ok, _ = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False)
    return int(ok.sum())


def test_two_processes_on_a_cold_cache_build_each_graph_once(elasticity_slice, tmp_path):
    import multiprocessing

    cache = tmp_path / "cache"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        counts = pool.map(_build_into, [(elasticity_slice, cache), (elasticity_slice, cache)])
    assert counts == [80, 80]
    keys = [k for f in cache.rglob("*.keys.npy") for k in np.load(f)]
    assert len(keys) == 80 == len(set(keys))  # one copy of each graph, not two


def test_cache_list_prune_clear(elasticity_slice, tmp_path, capsys):
    import os
    import time

    from crystalgnn.config import GraphConfig
    from crystalgnn.graphs.cache import build_graphs

    data = load_dataset(elasticity_slice, targets=[])
    cache = tmp_path / "cache"
    build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False)
    build_graphs(data.ids, data.sources, GraphConfig(cutoff=6.0), cache, workers=1, progress=False)
    assert cli.main(["cache", "list", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "2 folder(s)" in out and out.count(" graphs ") == 2 and " 80 " in out
    old = next(f for f in cache.iterdir() if json.loads((f / "settings.json").read_text())["settings"]["graph"]["cutoff"] == 6.0)
    for f in old.rglob("*"):
        os.utime(f, (time.time() - 90 * 86400,) * 2)
    assert cli.main(["cache", "prune", "--cache-dir", str(cache), "--dry-run"]) == 0 and old.exists()
    assert cli.main(["cache", "prune", "--cache-dir", str(cache)]) == 0
    assert not old.exists() and len(list(cache.glob("graphs-*"))) == 1
    assert cli.main(["cache", "clear", "--cache-dir", str(cache)]) == 0 and not list(cache.glob("graphs-*"))
    capsys.readouterr()


@pytest.fixture(scope="module")
def cache_seen_by_a_module_fixture():
    from crystalgnn.paths import default_cache_dir

    return default_cache_dir()  # fixtures wider than a test run outside the per-test cache folder


def test_tests_never_write_into_the_user_cache(cache_seen_by_a_module_fixture):
    import tempfile

    assert cache_seen_by_a_module_fixture.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


# ------------------------------------------------------------------------------- 8. small things
def test_python_dash_m_crystalgnn_works():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "crystalgnn", "--help"], capture_output=True, text=True, check=True).stdout
    assert "crystalgnn train" in out and "cache" in out


def test_a_zero_volume_cif_says_degenerate_cell(tmp_path):
    from crystalgnn.structures.parse import StructureParseError, parse_structure

    cif = ("data_flat\n_cell_length_a 4.0\n_cell_length_b 4.0\n_cell_length_c 4.0\n_cell_angle_alpha 90\n_cell_angle_beta 90\n"
           "_cell_angle_gamma 180\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
           "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa1 Na 0 0 0\n")
    with pytest.raises(StructureParseError, match="degenerate cell"):
        parse_structure(text=cif, fmt="cif")


def test_evaluate_help_explains_every_argument(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "run directory written by" in out and "leave them out of the metrics" in out and "cuda" in out


def test_integer_descriptors_are_written_as_integers(elasticity_slice, tmp_path):
    out = tmp_path / "d.csv"
    assert cli.main(["featurize", str(elasticity_slice / "3.cif"), "-o", str(out), "--workers", "1", "--quiet"]) == 0
    row = out.read_text().splitlines()[1].split(",")
    header = out.read_text().splitlines()[0].split(",")
    for name in ("natoms", "space_group_num", "crys_sys"):
        assert "." not in row[header.index(name)], (name, row[header.index(name)])


def test_run_files_share_one_mode_and_logs_get_lines_not_bars(elasticity_slice, tmp_path):
    import os
    import stat
    import subprocess
    import sys

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "crystalgnn", "train", str(elasticity_slice), "-t", "1", "--transform", "log10", "--run-dir", str(run),
           "--epochs", "2", "--batch-size", "16", "--atom-fea-len", "8", "--n-conv", "1", "--h-fea-len", "8", "--workers", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1/2" in proc.stderr and "epoch 2/2" in proc.stderr and "\r" not in proc.stderr  # stderr is not a terminal
    mode = stat.S_IMODE((run / "config.json").stat().st_mode)
    for name in ("model.safetensors", "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert stat.S_IMODE((run / name).stat().st_mode) == mode, name


def test_the_learning_curve_puts_the_validation_error_on_a_log_axis(tmp_path, monkeypatch):
    from crystalgnn.reports import plots

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train_loss,val_loss,val_mae\n" + "".join(f"{e},{e},{1 / (e + 1)},{1 / (e + 1)},{10 / (e + 1) ** 2}\n"
                                                                        for e in range(20)))
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    plots.learning_curve_plot(log, tmp_path / "curve.png")
    assert [ax.get_yscale() for ax in figures[0].axes] == ["log", "log"]


# --------------------------------------------------------------------------------------- 9. loggers
@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_second_logger_beside_the_csv_log(elasticity_slice, tmp_path, logger):
    run = tmp_path / "run"
    assert cli.main(["train", str(elasticity_slice), "-t", "1", "--transform", "log10", "--run-dir", str(run), "--epochs", "2",
                     "--batch-size", "16", "--atom-fea-len", "8", "--n-conv", "1", "--h-fea-len", "8", "--workers", "1",
                     "--threads", "1", "--quiet", "--logger", logger]) == 0
    assert (run / "logs" / "metrics.csv").exists() and (run / "learning_curve.png").exists()  # the CSV log stays
    if logger == "tensorboard":
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    else:
        (val_mae,) = list((run / "mlruns").glob("*/*/metrics/val_mae"))  # a local file store, no server
        assert len(val_mae.read_text().splitlines()) == 2  # one value per epoch
    assert json.loads((run / "config.json").read_text())["train"]["logger"] == logger


# ---------------------------------------------------------------------------- 10. default threads
@pytest.mark.parametrize("load,expected", [(0.1, 2), (1.2, 1), (3.5, 1)])
def test_the_default_thread_count_leaves_busy_cores_alone(monkeypatch, load, expected):
    import os

    import torch

    from crystalgnn.training import trainer
    from crystalgnn.training.trainer import set_threads

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(trainer, "busy_cores", lambda: load)  # cores other processes keep busy
    try:
        assert set_threads(0) == expected == torch.get_num_threads()
        assert set_threads(2) == 2 and set_threads(0, deterministic=True) == 1
    finally:
        torch.set_num_threads(before)


def test_busy_cores_sees_another_busy_process():
    import subprocess
    import sys

    from crystalgnn.training.trainer import busy_cores

    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        assert busy_cores(0.5) >= 0.6  # one core kept busy by the spinner (more if others run too)
    finally:
        spinner.kill()
