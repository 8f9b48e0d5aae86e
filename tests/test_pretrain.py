"""Masked-atom pretraining (CrysToGraph) and the ``pretrained:RUN`` atom-feature part."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgnn.cli import build_parser, main
from crystalgnn.config import DataConfig, FeatureConfig, GraphConfig, RunConfig, TrainConfig
from crystalgnn.errors import DatasetError
from crystalgnn.features.choices import check_atom_features, parse_atom_features
from crystalgnn.graphs.crystal_graph import build_graph
from crystalgnn.graphs.store import GraphStore
from crystalgnn.graphs.supercell import expand_graph, expand_small_cells, supercell_multiplier
from crystalgnn.io.load import load_dataset
from crystalgnn.training.checkpoint import load_weights
from crystalgnn.training.predictor import load_model
from crystalgnn.training.pretrain import (
    IGNORE,
    MASK_SPLITS,
    MASK_TOKEN,
    MASKED,
    NOT_SELECTED,
    RANDOM,
    UNCHANGED,
    PretrainConfig,
    draw_masks,
    pretrain,
)
from crystalgnn.training.run import train

SMALL = PretrainConfig(epochs=2, batch_size=16, threads=1)


@pytest.fixture(scope="module")
def pretrained_run(elasticity_slice: Path, tmp_path_factory) -> Path:
    """Two epochs of pretraining on 40 real crystals (its own graph cache)."""
    run = tmp_path_factory.mktemp("pretrain") / "pre"
    pretrain(elasticity_slice, run, PretrainConfig(epochs=2, batch_size=16, threads=1, max_items=40),
             cache_dir=tmp_path_factory.mktemp("pretrain-cache"), workers=1, progress=False)
    return run


# ----------------------------------------------------------------------------- supercells
@pytest.mark.parametrize(("n", "min_atoms"), [(1, 8), (2, 8), (3, 8), (7, 8), (8, 8), (20, 8), (1, 27), (2, 27), (4, 27), (1, 28)])
def test_supercell_multiplier_is_the_ceiling_of_the_cube_root(n: int, min_atoms: int) -> None:
    m = supercell_multiplier(n, min_atoms)
    expected = 1 if n >= min_atoms else min(k for k in range(1, 10) if k**3 * n >= min_atoms)
    assert m == expected
    if n < min_atoms:
        assert m == math.ceil(round((min_atoms / n) ** (1 / 3), 9))  # the formula, free of float noise at exact cubes
        assert m**3 * n >= min_atoms > (m - 1) ** 3 * n


def _edges(graph) -> list[tuple[int, int, float]]:
    z = graph.atomic_numbers
    source, target = graph.edge_index
    return sorted(zip(z[target].tolist(), z[source].tolist(), np.round(graph.edge_distances, 3).tolist()))


def test_supercell_graph_is_the_graph_of_the_supercell(elasticity_slice: Path) -> None:
    """The rewired cell graph equals a neighbour search on ``structure * m``: m³·n atoms, the same
    bonds, and every bond vector is reached through its new image of the m-fold lattice."""
    data = load_dataset(elasticity_slice, [], max_rows=80)
    structures = [source.load() for source in data.sources]
    small = next(s for s in structures if len(s) <= 3)
    m = supercell_multiplier(len(small))
    cell = build_graph(small, GraphConfig())
    expanded = expand_graph(cell, m)
    searched = build_graph(small * m, GraphConfig())
    assert expanded.num_atoms == m**3 * len(small) == searched.num_atoms
    assert expanded.num_edges == m**3 * cell.num_edges == searched.num_edges
    assert _edges(expanded) == _edges(searched)
    source, target = expanded.edge_index
    vectors = expanded.positions[source] + expanded.edge_images @ expanded.lattice - expanded.positions[target]
    np.testing.assert_allclose(vectors, expanded.edge_vectors, atol=1e-3)
    np.testing.assert_allclose(expanded.lattice, m * cell.lattice, rtol=1e-6)


def test_expand_small_cells_leaves_large_cells_alone() -> None:
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    big = nacl * (2, 2, 1)  # 8 atoms: not expanded
    store = GraphStore.from_graphs(["a", "b"], [build_graph(nacl, GraphConfig()), build_graph(big, GraphConfig())])
    expanded, multipliers = expand_small_cells(store)
    assert multipliers.tolist() == [2, 1]
    assert expanded.num_atoms.tolist() == [16, 8]
    np.testing.assert_array_equal(expanded.graph(1).edge_index, store.graph(1).edge_index)


# ----------------------------------------------------------------------------- masking
def _batch(sizes: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.from_numpy(np.random.default_rng(seed).integers(1, 101, sum(sizes)))
    return z, torch.tensor([0, *np.cumsum(sizes).tolist()])


def test_masks_select_round_015_n_atoms_of_each_crystal() -> None:
    sizes = [8, 10, 13, 20, 30, 47, 100, 3]
    z, ptr = _batch(sizes)
    for draw in range(20):
        masks = draw_masks(z, ptr, torch.Generator().manual_seed(draw))
        selected = masks.labels != IGNORE
        per_crystal = [int(selected[a:b].sum()) for a, b in zip(ptr[:-1], ptr[1:])]
        assert per_crystal == [max(1, round(0.15 * n)) for n in sizes] == [1, 2, 2, 3, 4, 7, 15, 1]
        # selected atoms are labelled with their own element; the others keep their token, no label
        assert torch.equal(masks.labels[selected], z[selected] - 1)
        assert torch.equal(masks.tokens[~selected], z[~selected] - 1)
        assert bool((masks.action[~selected] == NOT_SELECTED).all()) and bool((masks.action[selected] != NOT_SELECTED).all())
        assert bool((masks.tokens[masks.action == MASKED] == MASK_TOKEN).all())
        assert torch.equal(masks.tokens[masks.action == UNCHANGED], z[masks.action == UNCHANGED] - 1)
        randoms = masks.tokens[masks.action == RANDOM]
        assert bool(((randoms >= 0) & (randoms < MASK_TOKEN)).all())  # a random element, never the mask token


@pytest.mark.parametrize("split", ["paper", "code"])
def test_mask_split_fractions(split: str) -> None:
    z, ptr = _batch([100] * 200)  # 15 selected of each: 3,000 per draw
    generator = torch.Generator().manual_seed(7)
    actions = torch.cat([draw_masks(z, ptr, generator, split=MASK_SPLITS[split]).action for _ in range(10)])
    selected = actions[actions != NOT_SELECTED]
    assert len(selected) == 30_000
    for code, p in zip((MASKED, RANDOM, UNCHANGED), MASK_SPLITS[split]):
        share = float((selected == code).float().mean())
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / len(selected)), (split, code, share, p)


def test_masks_are_seeded_and_fresh_per_batch() -> None:
    z, ptr = _batch([12] * 50)
    first = draw_masks(z, ptr, torch.Generator().manual_seed(3))
    again = draw_masks(z, ptr, torch.Generator().manual_seed(3))
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.labels, again.labels)
    generator = torch.Generator().manual_seed(3)
    one, two = draw_masks(z, ptr, generator), draw_masks(z, ptr, generator)
    assert not torch.equal(one.labels != IGNORE, two.labels != IGNORE)


# ----------------------------------------------------------------------------- the run directory
def test_pretraining_run_directory(pretrained_run: Path) -> None:
    metrics = json.loads((pretrained_run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    for row in metrics["history"]:
        assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) and 0 <= row["val_accuracy"] <= 1
    assert metrics["n_train"] + metrics["n_val"] == 40 and metrics["n_val"] == 4
    assert 0 <= metrics["majority_baseline_accuracy"] <= 1
    assert (pretrained_run / "learning_curve.png").stat().st_size > 0
    assert PretrainConfig.load(pretrained_run / "config.json").max_items == 40
    tensors, meta = load_weights(pretrained_run / "embedding.safetensors")
    table = tensors["embedding"]
    assert tuple(table.shape) == (101, 64) and tuple(tensors["mask_token"].shape) == (64,)
    assert bool((table[0] == 0).all()) and bool((table[1:].abs().sum(dim=1) > 0).all())
    assert meta["width"] == 64 and "O" in meta["elements_seen"] and "Og" not in meta["elements_seen"]
    assert "Pu" in meta["never_seen"] and not set(meta["never_seen"]) & set(meta["elements_seen"])
    seen = meta["elements_seen"]
    assert metrics["majority_element"] == max(seen, key=seen.get)  # the baseline's element: the commonest training atom
    model, _ = load_weights(pretrained_run / "model.safetensors")
    torch.testing.assert_close(model["embedding.weight"][:100], table[1:])  # row Z is token Z - 1


def test_element_beyond_z_100_is_an_error_naming_the_item(tmp_path: Path) -> None:
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    md = Structure(Lattice.cubic(3.5), ["Md"], [[0, 0, 0]])
    data = load_dataset([nacl, nacl, md], [], ids=["nacl-1", "nacl-2", "mendelevium"])
    with pytest.raises(DatasetError, match=r"mendelevium.*Md \(Z=101\)"):
        pretrain(data, tmp_path / "pre", SMALL, cache_dir=None, workers=1, progress=False)


# ----------------------------------------------------------------------------- pretrained:RUN
def test_pretrained_part_parses_and_keeps_the_path_case(tmp_path: Path) -> None:
    choice = parse_atom_features("CGCNN+pretrained:Runs/Pre")
    assert choice.parts == ("cgcnn", "pretrained") and choice.pretrained_run == "Runs/Pre"
    assert choice.element_parts == ("cgcnn", "pretrained")
    with pytest.raises(ValueError, match="pretrained:RUN"):
        parse_atom_features("cgcnn+pretrained")
    with pytest.raises(ValueError, match="repeated"):
        parse_atom_features("pretrained:a+pretrained:b")


def test_missing_pretraining_run_is_a_clear_error(tmp_path: Path, elasticity_slice: Path, capsys) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*crystalgnn pretrain"):
        check_atom_features(f"cgcnn+pretrained:{missing}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{empty / 'embedding.safetensors'} not found.*crystalgnn pretrain"):
        RunConfig(features=FeatureConfig(f"cgcnn+pretrained:{empty}")).check()
    code = main(["train", str(elasticity_slice), "-t", "1", "--run-dir", str(tmp_path / "run"), "--epochs", "1",
                 "--atom-features", f"cgcnn+pretrained:{missing}", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "crystalgnn pretrain" in err
    assert not (tmp_path / "run" / "config.json").exists()  # refused before any graph was built


def test_pretrain_train_save_load_predict_after_deleting_the_run(pretrained_run: Path, elasticity_slice: Path, tmp_path: Path) -> None:
    pre = tmp_path / "pre"
    shutil.copytree(pretrained_run, pre)
    embedding = load_weights(pre / "embedding.safetensors")[0]["embedding"]
    cfg = RunConfig(data=DataConfig(transform="log10"), features=FeatureConfig(f"cgcnn+pretrained:{pre}"),
                    train=TrainConfig(epochs=1, batch_size=16, threads=1, split_fractions=(0.6, 0.2, 0.2)))
    data = load_dataset(elasticity_slice, [1], transform="log10", max_rows=40)
    result = train(data, tmp_path / "run", cfg, workers=1, progress=False)
    assert result.metrics["n_parameters"] > 0
    state = load_weights(tmp_path / "run" / "model.safetensors")[0]
    table = state["model.atom_input.features.element_table"]
    assert tuple(table.shape) == (101, 156)
    torch.testing.assert_close(table[:, 92:], embedding)  # frozen: training did not move the learned rows
    assert state["model.atom_input.project.weight"].shape[1] == 156
    before = load_model(tmp_path / "run").predict(data).iloc[:, 1].to_numpy()
    shutil.rmtree(pre)
    model = load_model(tmp_path / "run")
    after = model.predict(data).iloc[:, 1].to_numpy()
    np.testing.assert_array_equal(before, after)
    torch.testing.assert_close(model.module.model.atom_input.features.element_table[:, 92:], embedding)


def test_cli_pretrain_then_train(elasticity_slice: Path, tmp_path: Path, capsys) -> None:
    pre, run = tmp_path / "pre", tmp_path / "run"
    assert main(["pretrain", str(elasticity_slice), "--run-dir", str(pre), "--epochs", "1", "--max-items", "30",
                 "--mask-split", "code", "--workers", "1", "--threads", "1", "--quiet"]) == 0
    assert "validation masked-element accuracy" in capsys.readouterr().out
    assert PretrainConfig.load(pre / "config.json").mask_split == "code"
    assert main(["train", str(elasticity_slice), "-t", "1", "--transform", "log10", "--run-dir", str(run), "--epochs", "1",
                 "--batch-size", "16", "--workers", "1", "--threads", "1", "--atom-features", f"cgcnn+pretrained:{pre}", "--quiet"]) == 0
    assert RunConfig.load(run / "config.json").features.atom_features == f"cgcnn+pretrained:{pre}"
    assert (run / "metrics.json").exists()


def test_pretrain_help_gives_every_default() -> None:
    parser = build_parser("pretrain")
    sub = next(a for a in parser._actions if a.dest == "command").choices["pretrain"]
    for action in sub._actions:
        if action.dest in ("help", "data", "run_dir"):
            continue
        assert action.help and "default" in action.help, action.dest
