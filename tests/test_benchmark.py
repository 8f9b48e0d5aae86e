"""crystalgnn benchmark: fold protocols against scikit-learn, task files, readers of the published
formats, the runner's resume and shards, and the leaderboard."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_data
from sklearn.model_selection import KFold, StratifiedKFold

from crystalgnn.benchmark import Budget, builtin_tasks, get_task, load_task_file, run_benchmark
from crystalgnn.benchmark.leaderboard import collect, read_cells
from crystalgnn.benchmark.readers import load_jarvis, load_unconvbench
from crystalgnn.benchmark.runner import Cell, cell_config, parse_shard, plan
from crystalgnn.benchmark.sources import atom_counts, load_task_data, select
from crystalgnn.benchmark.tasks import Selection, task_from_dict
from crystalgnn.data.splits import make_split

CHAINS_TASKS = """
[tasks.my_chains]
description = "a user's task: 1D chains, lattice parameter"
source = { kind = "chains", path = "chains:short:n=60" }
target = "a"
unit = "Å"
protocol = { kind = "unconvbench", val_fraction = 0.2 }
"""


class _Prepared:
    """What make_split reads of prepared data."""

    def __init__(self, n: int, labels: np.ndarray | None = None) -> None:
        self.ids = [str(i) for i in range(n)]
        self.targets = (labels if labels is not None else np.zeros(n)).reshape(-1, 1).astype(float)

    def __len__(self) -> int:
        return len(self.ids)


def _sklearn_folds(splitter, n: int, labels=None) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(splitter.split(np.zeros(n), labels))


@pytest.mark.parametrize("task_name,seed", [("mp_elasticity3k_log10_G", 18012019), ("mp37k_bulk_l", 42)])
def test_fold_ids_equal_scikit_learn_kfold_with_the_protocol_seed(task_name, seed):
    task = get_task(task_name)
    n = 537
    expected = _sklearn_folds(KFold(5, shuffle=True, random_state=seed), n)
    for fold in task.folds:
        split = task.split(fold, n)
        np.testing.assert_array_equal(split["test"], np.sort(expected[fold][1]))
        np.testing.assert_array_equal(np.union1d(split["train"], split["val"]), np.sort(expected[fold][0]))
        # the run a cell trains makes the same split (the runner's TrainConfig, make_split)
        run_split = make_split(_Prepared(n), cell_config(Cell(task, "cgcnn", fold), Budget(epochs=1)))
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(run_split[part], split[part])
    if task.protocol.kind == "unconvbench":  # each training fold used whole: it also validates
        split = task.split(0, n)
        np.testing.assert_array_equal(split["train"], split["val"])
    else:
        split = task.split(0, n)
        assert len(np.intersect1d(split["train"], split["val"])) == 0
        assert len(split["val"]) == round(0.1 * (n - len(split["test"])))


def test_classification_folds_are_stratified_as_matbench():
    task = get_task("mp_api3k_is_metal")
    labels = (np.random.default_rng(0).random(400) < 0.3).astype(int)
    expected = _sklearn_folds(StratifiedKFold(5, shuffle=True, random_state=18012019), 400, labels)
    for fold in task.folds:
        split = task.split(fold, 400, labels=labels)
        np.testing.assert_array_equal(split["test"], np.sort(expected[fold][1]))
        run_split = make_split(_Prepared(400, labels), cell_config(Cell(task, "alignn", fold), Budget(epochs=1)))
        np.testing.assert_array_equal(run_split["test"], split["test"])


def test_builtin_registry_reads_and_names_the_published_tasks():
    tasks = builtin_tasks()
    for name in ("mp37k_formation_energy", "mp37k_band_gap", "mp37k_band_gap_nonmetal", "mp_api3k_is_metal", "mp_elasticity3k_log10_K", "mp_elasticity3k_log10_G",
                 "matminer2018_refractive_index", "perov5_partial_heat_of_formation", "mp37k_bulk_s", "mp37k_bulk_m", "mp37k_bulk_l",
                 "qmof20k_band_gap", "qmof20k_band_gap_5106", "chains_short", "chains_long", "matbench_mp_gap", "unconvbench_qmof"):
        assert name in tasks
    builtin = [t for t in tasks.values() if t.group == "builtin"]
    assert all(t.approximates and not t.name.startswith(("matbench_", "unconvbench_")) for t in builtin)
    assert tasks["mp_api3k_is_metal"].metric == "roc_auc" and tasks["mp_elasticity3k_log10_G"].transform == "log10"
    assert tasks["mp37k_band_gap_nonmetal"].select.target_above == 0.0


def test_bad_task_definitions_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="needs at least 'source' and 'target'"):
        task_from_dict("t", {"target": "a"})
    with pytest.raises(ValueError, match="unknown settings.*colour"):
        task_from_dict("t", {"source": "x", "target": "a", "colour": "red"})
    with pytest.raises(ValueError, match="classification task is scored by roc_auc"):
        task_from_dict("t", {"source": "x", "target": "a", "problem": "classification"})
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    missing = get_task("matbench_mp_gap")
    with pytest.raises(FileNotFoundError, match="matbench_mp_gap.json.gz not found.*download"):
        load_task_data(missing, tmp_path)
    assert parse_shard("2/4") == (2, 4)
    with pytest.raises(ValueError, match="need 0 <= i < N"):
        parse_shard("4/4")
    with pytest.raises(ValueError, match="takes i/N"):
        parse_shard("half")


def test_task_files_in_toml_yaml_and_json_define_the_same_task(tmp_path):
    spec = {"tasks": {"mine": {"source": {"kind": "chains", "path": "chains:short:n=30"}, "target": "a", "metric": "rmse"}}}
    (tmp_path / "t.json").write_text(json.dumps(spec))
    import yaml

    (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "t.toml").write_text('[tasks.mine]\nsource = { kind = "chains", path = "chains:short:n=30" }\ntarget = "a"\nmetric = "rmse"\n')
    loaded = [load_task_file(tmp_path / f"t.{ext}")["mine"] for ext in ("json", "yaml", "toml")]
    assert loaded[0] == loaded[1] == loaded[2]
    task = loaded[0]
    dataset = task.load()
    assert len(dataset) == 30
    test = task.get_test_data(0)
    assert len(test) == 6 and len(task.get_train_and_val_data(0)) == 24
    value = task.record(0, test.targets[:, 0] + 0.5)
    assert value == pytest.approx(0.5)


def _structures(n: int = 6):
    from pymatgen.core import Structure

    folder = require_data("cgcnn_sample", "sample-regression")
    return [Structure.from_file(p) for p in sorted(folder.glob("*.cif"))[:n]]


def test_jarvis_reader_rebuilds_structures_and_lists_bad_records(tmp_path):
    structures = _structures()
    records = []
    for k, s in enumerate(structures):
        cartesian = k % 2 == 1
        coords = s.cart_coords if cartesian else s.frac_coords
        records.append({"jid": f"JVASP-{k}", "atoms": {"lattice_mat": s.lattice.matrix.tolist(), "coords": coords.tolist(),
                                                       "elements": [site.specie.symbol for site in s], "cartesian": cartesian},
                        "formation_energy_peratom": -0.1 * k, "optb88vdw_bandgap": "na" if k == 2 else 0.3 * k})
    records.append({"jid": "JVASP-broken", "atoms": {"lattice_mat": [[1, 0, 0]]}, "formation_energy_peratom": 1.0})
    path = tmp_path / "dft_3d.json"
    path.write_text(json.dumps(records))
    data = load_jarvis(path, "optb88vdw_bandgap")
    assert data.ids == ["JVASP-0", "JVASP-1", "JVASP-3", "JVASP-4", "JVASP-5"]
    reasons = {p.id: p.reason for p in data.problems}
    assert set(reasons) == {"JVASP-2", "JVASP-broken"} and "lattice_mat" not in reasons["JVASP-2"]
    np.testing.assert_allclose(data.targets[:, 0], [0.0, 0.3, 0.9, 1.2, 1.5])
    for item_id, source in zip(data.ids, data.sources, strict=True):
        original = structures[int(item_id.split("-")[1])]
        rebuilt = source.load()
        np.testing.assert_allclose(rebuilt.lattice.matrix, original.lattice.matrix, atol=1e-9)
        shift = rebuilt.frac_coords - original.frac_coords
        np.testing.assert_allclose(shift - np.round(shift), 0.0, atol=1e-8)  # the same sites, up to whole lattice vectors
        assert [x.specie.symbol for x in rebuilt] == [x.specie.symbol for x in original]
    with pytest.raises(ValueError, match="no key 'gap'"):
        load_jarvis(path, "gap")


def test_matbench_and_unconvbench_files_run_as_tasks(tmp_path):
    structures = _structures()
    values = [0.1 * k for k in range(len(structures))]
    index = [f"mb-test-{k + 1}" for k in range(len(structures))]
    matbench = {"index": index, "columns": ["structure", "e_form"], "data": [[s.as_dict(), v] for s, v in zip(structures, values, strict=True)]}
    with gzip.open(tmp_path / "matbench_mp_e_form.json.gz", "wt") as handle:
        json.dump(matbench, handle)
    task = get_task("matbench_mp_e_form")
    data = task.load(tmp_path)
    assert data.ids == index
    np.testing.assert_allclose(data.targets[:, 0], values)
    assert data.sources[3].load() == structures[3]
    # UnconvBench: MatBench layout without an index; items named as its reference names them
    ub = {"columns": ["structure", "target"], "data": [[s.as_dict(), v] for s, v in zip(structures, values, strict=True)]}
    ub["data"][1][0] = {"not": "a structure"}
    (tmp_path / "ub_unconvbench_supercon.json").write_text(json.dumps(ub))
    data = load_unconvbench(tmp_path / "ub_unconvbench_supercon.json", "unconvbench_supercon")
    assert data.ids == ["unconvbench_supercon-1", "unconvbench_supercon-3", "unconvbench_supercon-4", "unconvbench_supercon-5",
                        "unconvbench_supercon-6"]
    assert [p.id for p in data.problems] == ["unconvbench_supercon-2"]
    assert len(get_task("unconvbench_supercon").load(tmp_path)) == 5


def test_size_selection_counts_atoms_and_draws_with_its_seed():
    from crystalgnn.io import load_dataset

    data = load_dataset(require_data("cgcnn_sample", "sample-regression"))
    counts = atom_counts(data)
    assert [len(s.load()) for s in data.sources] == list(counts)
    small = select(data, Selection(atoms_max=4))
    assert set(small.ids) == {i for i, c in zip(data.ids, counts, strict=True) if c <= 4} and 0 < len(small) < len(data)
    drawn = select(data, Selection(n=5, seed=7, atoms_min=2))
    assert len(drawn) == 5 and drawn.ids == select(data, Selection(n=5, seed=7, atoms_min=2)).ids
    assert drawn.ids == [i for i in data.ids if i in set(drawn.ids)]  # source order kept
    # a target bound (strictly above, as "a gap > 0" keeps non-metals), with the size bound
    cut = float(np.median(data.targets[:, 0]))
    above = select(data, Selection(target_above=cut, atoms_min=2))
    assert set(above.ids) == {i for i, c, y in zip(data.ids, counts, data.targets[:, 0], strict=True) if y > cut and c >= 2}
    assert 0 < len(above) < len(data) and (above.targets[:, 0] > cut).all()


def test_user_task_file_runs_end_to_end_and_matches_the_task_folds(tmp_path):
    (tmp_path / "tasks.toml").write_text(CHAINS_TASKS)
    out = tmp_path / "study"
    from crystalgnn.cli import main

    assert main(["benchmark", "my_chains", "--tasks-file", str(tmp_path / "tasks.toml"), "--models", "cgcnn", "--fold", "1",
                 "--epochs", "2", "--out", str(out)]) == 0
    cell = json.loads((out / "runs" / "my_chains" / "cgcnn" / "fold1" / "cell.json").read_text())
    task = load_task_file(tmp_path / "tasks.toml")["my_chains"]
    task.load()
    test_ids = pd.read_csv(out / "runs" / "my_chains" / "cgcnn" / "fold1" / "predictions_test.csv", dtype={"id": str})["id"].tolist()
    assert test_ids == task.get_test_data(1).ids
    predictions = pd.read_csv(out / "runs" / "my_chains" / "cgcnn" / "fold1" / "predictions_test.csv")["pred_a"]
    assert cell["value"] == pytest.approx(task.record(1, predictions), rel=1e-9)
    assert cell["protocol"] == {"kind": "unconvbench", "n_folds": 5, "seed": 42, "val_fraction": 0.2}
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.loc[0, "task"] == "my_chains" and board.loc[0, "folds"] == 1 and board.loc[0, "rank"] == 1
    assert np.isfinite(board.loc[0, "mean"]) and (out / "charts" / "my_chains.png").stat().st_size > 1000
    assert "my_chains" in (out / "leaderboard.md").read_text()


def _benchmark_command(tasks_file: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "crystalgnn", "benchmark", "my_chains", "--tasks-file", str(tasks_file), "--models", "cgcnn",
            "--epochs", "2", "--deterministic", "--out", str(out), *extra]


def test_killed_study_resumes_without_retraining_and_shards_collect_to_the_same_leaderboard(tmp_path):
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text(CHAINS_TASKS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(_benchmark_command(tasks_file, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(killed.rglob("cell.json")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p: (p.stat().st_mtime_ns, p.read_text()) for p in killed.rglob("cell.json")}
    assert 1 <= len(finished) < 5, "the study should be killed mid-way"
    subprocess.run(_benchmark_command(tasks_file, killed), env=env, check=True, capture_output=True)
    for path, (mtime, text) in finished.items():  # nothing finished was retrained (or rewritten)
        assert path.stat().st_mtime_ns == mtime and path.read_text() == text
    assert len(list(killed.rglob("cell.json"))) == 5
    # the same study uninterrupted, as two shards in two folders, merged by collect
    for i in range(2):
        subprocess.run(_benchmark_command(tasks_file, tmp_path / f"shard{i}", "--shard", f"{i}/2", "--no-collect"), env=env, check=True,
                       capture_output=True)
    assert len(read_cells([tmp_path / "shard0"])) == 3 and len(read_cells([tmp_path / "shard1"])) == 2
    merged = collect([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    resumed = pd.read_csv(killed / "leaderboard.csv")
    assert merged.loc[0, "folds"] == 5
    # every column but the wall time ("minutes", which no two runs share)
    pd.testing.assert_frame_equal(resumed.drop(columns="minutes"), pd.read_csv(tmp_path / "merged" / "leaderboard.csv").drop(columns="minutes"))
    by_fold = {c["fold"]: c["value"] for c in read_cells([killed])}
    assert by_fold == {c["fold"]: c["value"] for c in read_cells([tmp_path / "shard0", tmp_path / "shard1"])}


def test_plan_orders_cells_and_shards_cover_them_once():
    tasks = [get_task("chains_short"), get_task("mp_elasticity3k_log10_G")]
    cells = plan(tasks, ["cgcnn", "alignn"])
    assert len(cells) == 20 and cells[0].key == "chains_short/cgcnn/fold0" and cells[1].key == "chains_short/alignn/fold0"
    shards = [plan(tasks, ["cgcnn", "alignn"], shard=(i, 3)) for i in range(3)]
    assert sorted(c.key for s in shards for c in s) == sorted(c.key for c in cells)
    with pytest.raises(ValueError, match="not one"):
        plan(tasks, ["cgcnn"], folds=[5])
    with pytest.raises(ValueError):
        plan(tasks, ["no_such_model"])


def test_a_study_folder_keeps_one_budget(tmp_path):
    task = load_task_file_from_text(tmp_path, CHAINS_TASKS)
    run_benchmark([task], ["cgcnn"], tmp_path / "s", folds=[0], budget=Budget(epochs=1))
    with pytest.raises(ValueError, match="budget"):
        run_benchmark([task], ["cgcnn"], tmp_path / "s", folds=[0], budget=Budget(epochs=2))


def load_task_file_from_text(folder: Path, text: str):
    (folder / "tasks.toml").write_text(text)
    return next(iter(load_task_file(folder / "tasks.toml").values()))


def test_a_failing_cell_is_reported_the_study_goes_on_and_a_rerun_retries_it(tmp_path, monkeypatch):
    import crystalgnn.training.run as run_module

    task = load_task_file_from_text(tmp_path, CHAINS_TASKS)
    real_train = run_module.train

    def failing_for_alignn(data, run_dir, cfg, **kwargs):
        if cfg.model.name == "alignn":
            raise RuntimeError("simulated out-of-memory")
        return real_train(data, run_dir, cfg, **kwargs)

    monkeypatch.setattr(run_module, "train", failing_for_alignn)
    out = tmp_path / "s"
    results = run_benchmark([task], ["alignn", "cgcnn"], out, folds=[0], budget=Budget(epochs=1))
    assert [r["model"] for r in results] == ["cgcnn"]
    failed = json.loads((out / "runs" / "my_chains" / "alignn" / "fold0" / "cell_failed.json").read_text())
    assert "simulated out-of-memory" in failed["error"]
    collect([out], out)
    assert "alignn / fold 0: RuntimeError: simulated out-of-memory" in (out / "leaderboard.md").read_text()
    monkeypatch.setattr(run_module, "train", real_train)
    results = run_benchmark([task], ["alignn", "cgcnn"], out, folds=[0], budget=Budget(epochs=1))
    assert sorted(r["model"] for r in results) == ["alignn", "cgcnn"]
    collect([out], out)
    assert "Failed cells" not in (out / "leaderboard.md").read_text()
