"""The model zoo: prediction from the package alone, and the model cards' test metrics reproduced
by ``crystalgnn evaluate --test-split``."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, require_data

from crystalgnn import transforms, zoo
from crystalgnn.cli import main
from crystalgnn.training.ensemble import ensemble_size, member_dir

EXPECTED = {"formation_energy", "band_gap", "band_gap_nonmetal", "log10_K", "log10_G"}


def test_the_zoo_ships_small_models_with_cards():
    assert set(zoo.names()) == EXPECTED
    total = sum(f.stat().st_size for f in zoo.ZOO_DIR.rglob("*") if f.is_file())
    assert total < 8e6, f"the zoo is {total / 1e6:.1f} MB"
    for name in zoo.names():
        folder = zoo.model_dir(f"zoo:{name}")
        card = zoo.card(name)
        members = (card.get("ensemble") or {}).get("members", 1)
        assert ensemble_size(folder) == members
        assert sorted(p.name for p in folder.iterdir()) == sorted(zoo.ENSEMBLE_FILES if members > 1 else zoo.MODEL_FILES)
        for k in range(members if members > 1 else 0):
            assert sorted(p.name for p in member_dir(folder, k).iterdir()) == sorted(zoo.MEMBER_FILES)
        shipped = pd.read_csv(folder / "test_predictions.csv")
        true, pred = shipped.iloc[:, 1].to_numpy(), shipped.iloc[:, 2].to_numpy()
        # the card's metrics are those of the shipped test predictions
        assert card["test_metrics"]["mae"] == pytest.approx(np.mean(np.abs(true - pred)), rel=1e-6)
        assert card["n_test"] == len(shipped) == len(zoo.test_ids(name))
        assert "Limits" in (folder / "card.md").read_text()


def test_predict_zoo_model_on_cgcnn_sample_from_the_package(tmp_path, capsys):
    cifs = sorted(require_data("cgcnn_sample", "sample-regression").glob("*.cif"))
    for name in sorted(EXPECTED):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", f"zoo:{name}", *map(str, cifs), "-o", str(out)]) == 0
        frame = pd.read_csv(out, dtype={"id": str})
        assert len(frame) == len(cifs) and frame["id"].tolist() == [c.stem for c in cifs]
        values = frame.drop(columns="id").to_numpy(float)
        assert np.isfinite(values).all()
    # the Python API gives the CLI's numbers
    import crystalgnn

    model = crystalgnn.load_model("zoo:log10_G")
    api = model.predict([str(c) for c in cifs])
    cli = pd.read_csv(tmp_path / "log10_G.csv", dtype={"id": str})
    np.testing.assert_allclose(api.drop(columns="id").to_numpy(float), cli.drop(columns="id").to_numpy(float), rtol=1e-6)
    # an ensemble's prediction is its members' mean, with their spread beside it
    ensembles = [n for n in sorted(EXPECTED) if zoo.card(n).get("ensemble")]
    for name in ensembles:
        folder = zoo.model_dir(name)
        ensemble = crystalgnn.load_model(f"zoo:{name}")
        column = transforms.learned_name(ensemble.target_names[0], ensemble.cfg.data.transform)  # where the mean is taken
        members = [crystalgnn.load_model(member_dir(folder, k)).predict([str(c) for c in cifs]) for k in range(ensemble_size(folder))]
        stack = np.stack([m[column].to_numpy(float) for m in members])
        shipped = pd.read_csv(tmp_path / f"{name}.csv", dtype={"id": str})
        np.testing.assert_allclose(shipped[column], stack.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(shipped[f"{column}_std"], stack.std(axis=0), rtol=1e-4, atol=1e-7)
    assert main(["zoo", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(f"zoo:{n}" in listed for n in EXPECTED)
    assert main(["predict", "zoo:no_such_model", str(cifs[0])]) == 2
    assert "the zoo has: band_gap, band_gap_nonmetal, formation_energy, log10_G, log10_K" in capsys.readouterr().err


@pytest.mark.parametrize("name,column", [("log10_K", "0"), ("log10_G", "1")])
def test_evaluate_test_split_reproduces_the_elastic_model_cards(tmp_path, capsys, name, column):
    data = require_data("mp_elasticity3k")
    out = tmp_path / "eval.csv"
    assert main(["evaluate", f"zoo:{name}", str(data), "-t", column, "--test-split", "-o", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    card = zoo.card(name)
    reported = next(iter(metrics.values())) if "mae" not in metrics else metrics
    assert reported["mae"] == pytest.approx(card["test_metrics"]["mae"], rel=1e-5)
    assert reported["r2"] == pytest.approx(card["test_metrics"]["r2"], rel=1e-5)
    shipped = pd.read_csv(zoo.model_dir(name) / "test_predictions.csv", dtype={"id": str})
    ours = pd.read_csv(out, dtype={"id": str})
    assert ours["id"].tolist() == shipped["id"].tolist()
    np.testing.assert_allclose(ours[shipped.columns[2]], shipped.iloc[:, 2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,column", [("formation_energy", 0), ("band_gap", 1), ("band_gap_nonmetal", 1)])
def test_evaluate_reproduces_a_slice_of_the_mp37k_model_cards(tmp_path, name, column):
    """A slice of the held-out test split (the archive holds 36,737 CIFs): the first 24 test items
    predicted again equal the card's test predictions, whose mean error is the card's MAE."""
    archive = require_data("mp37k", "cifs_data.tar.gz")
    ids = zoo.test_ids(name)[:24]
    wanted = {f"data/{i}.cif" for i in ids}
    with tarfile.open(archive) as handle:
        members = [m for m in handle if m.name.lstrip("./") in wanted]
        handle.extractall(tmp_path, members=members, filter="data")
    rows = {line.split(",")[0]: line for line in (DATA / "mp37k" / "id_prop.csv").read_text().splitlines()}
    (tmp_path / "id_prop.csv").write_text("\n".join(rows[i] for i in ids) + "\n")
    out = tmp_path / "eval.csv"
    assert main(["evaluate", f"zoo:{name}", str(tmp_path), "-t", str(column), "-o", str(out)]) == 0
    shipped = pd.read_csv(zoo.model_dir(name) / "test_predictions.csv", dtype={"id": str}).set_index("id").loc[ids]
    ours = pd.read_csv(out, dtype={"id": str}).set_index("id").loc[ids]
    np.testing.assert_allclose(ours[shipped.columns[1]], shipped.iloc[:, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[shipped.columns[0]], shipped.iloc[:, 0], rtol=1e-7)  # the card keeps 8 digits


def test_test_split_needs_the_models_own_data(tmp_path, capsys):
    folder = require_data("cgcnn_sample", "sample-regression")
    assert main(["evaluate", "zoo:log10_G", str(folder), "-t", "0", "--test-split"]) == 2
    assert "test items are not in" in capsys.readouterr().err
