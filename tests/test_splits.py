"""Splits: seeded fractions, split files, k-fold; and the typed config's JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgnn.config import GraphConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.data.splits import file_split, fraction_split, kfold_split
from crystalgnn.models.cgcnn import CGCNNConfig


def test_fraction_split_is_seeded_disjoint_and_sized():
    a, b, c = fraction_split(1000, (0.6, 0.2, 0.2), seed=123), fraction_split(1000, (0.6, 0.2, 0.2), seed=123), fraction_split(1000, seed=7)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(a[part], b[part])
    assert not np.array_equal(a["test"], c["test"])
    assert [len(a[p]) for p in ("train", "val", "test")] == [600, 200, 200]
    assert len(np.unique(np.concatenate(list(a.values())))) == 1000
    with pytest.raises(ValueError, match="sum to at most 1"):
        fraction_split(10, (0.8, 0.2, 0.2))


def test_kfold_test_folds_partition_the_data():
    folds = [kfold_split(103, 5, k, seed=18012019) for k in range(5)]
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(103))
    for f in folds:
        assert not set(f["test"]) & set(f["train"]) and not set(f["val"]) & set(f["train"])
        assert len(f["train"]) + len(f["val"]) + len(f["test"]) == 103
    labels = np.array([0] * 80 + [1] * 23)
    strat = kfold_split(103, 5, 0, labels=labels)
    assert 3 <= labels[strat["test"]].sum() <= 6  # each fold keeps the class balance
    with pytest.raises(ValueError, match="fold must be"):
        kfold_split(10, 5, 5)


def test_file_split(tmp_path):
    ids = ["a", "b", "c", "d"]
    path = tmp_path / "split.csv"
    path.write_text("id,split\na,train\nb,valid\nd,test\n")
    split = file_split(ids, path)
    assert split["train"].tolist() == [0] and split["val"].tolist() == [1] and split["test"].tolist() == [3]
    path.write_text("a,train\nzz,test\n")
    with pytest.raises(ValueError, match="not in the dataset"):
        file_split(ids, path)


def test_config_json_round_trip(tmp_path):
    cfg = RunConfig(graph=GraphConfig(strategy="knn", cutoff=6.5), model=ModelConfig(pooling="site", arch=CGCNNConfig(n_conv=5)),
                    train=TrainConfig(split_fractions=(0.8, 0.1, 0.1), milestones=(10, 20)))
    cfg.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == cfg
    assert GraphConfig(cutoff=6.5).key() != GraphConfig().key()
    (tmp_path / "bad.json").write_text(cfg.to_json().replace('"pooling"', '"poolingg"'))
    with pytest.raises(ValueError, match="unknown settings"):
        RunConfig.load(tmp_path / "bad.json")
