"""The model registry: a model defined here, in the test, trains, saves, loads and predicts through
the public API and the CLI without any edit of src/; flags of another model are errors; config.json
holds only the chosen model's settings."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch_geometric.utils import scatter

import crystalgnn
from crystalgnn import cli, registry
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig, defaults_for
from crystalgnn.models.alignn import ALIGNNConfig
from crystalgnn.models.blocks import AtomInput, GaussianExpansion
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.models.readout import Readout, ReadoutOutput


@dataclass(frozen=True)
class TinyConfig:
    """A toy: atom vectors updated by the mean of their neighbours' vectors and bond Gaussians."""

    width: int = field(default=16, metadata={"help": "atom vector width (16)"})
    layers: int = field(default=1, metadata={"help": "message-passing layers (1)"})
    activation: str = field(default="softplus", metadata={"flag": None})  # not on the command line


class Tiny(nn.Module):
    def __init__(self, atom_table, out_features: int, width: int, layers: int, pooling: str, dropout: float, extra_features: int) -> None:
        super().__init__()
        self.embedding_width = width
        self.atom_input = AtomInput(width, atom_table)
        self.expansion = GaussianExpansion()
        self.updates = nn.ModuleList(nn.Linear(width + self.expansion.num_features, width) for _ in range(layers))
        self.readout = Readout(width, out_features, width, 1, pooling, dropout, extra_features)  # type: ignore[arg-type]

    def forward(self, batch, extra=None) -> ReadoutOutput:
        x = self.atom_input(batch.z)
        source, target = batch.edge_index
        bonds = self.expansion(batch.edge_dist)
        for update in self.updates:
            message = torch.cat([x[source], bonds], dim=-1)
            x = x + nn.functional.softplus(update(scatter(message, target, dim=0, dim_size=x.shape[0], reduce="mean")))
        return self.readout(x, batch.batch, int(batch.num_graphs), extra)


def build_tiny(settings: TinyConfig, inputs: registry.BuildInputs) -> Tiny:
    return Tiny(inputs.atom_table, inputs.out_features, settings.width, settings.layers, inputs.pooling, inputs.dropout, inputs.extra_features)


@pytest.fixture()
def tiny_model():
    registry.register(registry.ModelSpec(name="tiny", settings=TinyConfig, build=build_tiny, description="a toy model of the test",
                                         train_defaults={"epochs": 2, "batch_size": 16, "lr": 5e-3}))
    yield
    registry.unregister("tiny")


def test_a_model_of_the_test_file_trains_saves_loads_and_predicts(tiny_model, elasticity_slice, tmp_path, capsys):
    assert "tiny" in registry.names()
    cfg = defaults_for("tiny")
    assert (cfg.model.name, cfg.model.arch, cfg.train.epochs, cfg.train.lr) == ("tiny", TinyConfig(), 2, 5e-3)
    cfg = dataclasses.replace(cfg, data=DataConfig(transform="log10"), model=ModelConfig(arch=TinyConfig(width=8, layers=2)),
                              train=dataclasses.replace(cfg.train, threads=1))
    data = crystalgnn.load_dataset(elasticity_slice, targets=[1], transform="log10")
    result = crystalgnn.train(data, tmp_path / "api", cfg, progress=False, workers=1)
    assert np.isfinite(result.metrics["test"]["target1"]["mae"])
    saved = json.loads((tmp_path / "api" / "config.json").read_text())
    assert saved["model"]["name"] == "tiny" and saved["model"]["arch"] == {"width": 8, "layers": 2, "activation": "softplus"}
    model = crystalgnn.load_model(tmp_path / "api")
    assert model.cfg == RunConfig.load(tmp_path / "api" / "config.json") and isinstance(model.module.model, Tiny)
    expected = pd.read_csv(tmp_path / "api" / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in expected["id"].astype(str)])
    np.testing.assert_array_equal(fresh["log10_target1"].to_numpy(), expected["pred_log10_target1"].to_numpy().astype(np.float32))

    run = tmp_path / "cli"
    assert cli.main(["train", str(elasticity_slice), "--model", "tiny", "--width", "4", "--layers", "3", "--target", "1",
                     "--transform", "log10", "--run-dir", str(run), "--threads", "1", "--workers", "1", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["arch"] == {"width": 4, "layers": 3, "activation": "softplus"}
    out = tmp_path / "p.csv"
    assert cli.main(["predict", str(run), str(elasticity_slice / "3.cif"), str(elasticity_slice / "1.cif"), "-o", str(out)]) == 0
    assert pd.read_csv(out)["id"].astype(str).tolist() == ["3", "1"]
    capsys.readouterr()
    assert cli.main(["train", str(elasticity_slice), "--model", "tiny", "--hidden", "8", "--run-dir", str(tmp_path / "x")]) == 2
    assert "--hidden is a setting of alignn, ocrystalnet and crystograph, not of tiny" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--model", "alignn", "--conv", "linear"], "--conv is a setting of cgcnn, not of alignn"),
    (["--model", "cgcnn", "--hidden", "64"], "--hidden is a setting of alignn, ocrystalnet and crystograph, not of cgcnn"),
    (["--hidden", "64"], "--hidden is a setting of alignn, ocrystalnet and crystograph, not of cgcnn"),
    # a flag two models share takes the choices of both; each model accepts only its own
    (["--model", "alignn", "--norm", "none"], "--norm none is not a choice of alignn (batch, layer)"),
])
def test_a_flag_of_another_model_is_an_error(elasticity_slice, tmp_path, capsys, argv, message):
    assert cli.main(["train", str(elasticity_slice), "--target", "1", "--run-dir", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_shared_flag_sets_each_models_own_field():
    from crystalgnn.cli import build_parser
    from crystalgnn.cli.train import config_from_args

    for model, field_name, value in (("ocrystalnet", "norm", "none"), ("alignn", "norm", "batch")):
        args = build_parser("train").parse_args(["train", "x", "--model", model, "--norm", value, "--hidden", "32"])
        arch = config_from_args(args).model.arch
        assert getattr(arch, field_name) == value
        assert getattr(arch, "hidden" if model == "ocrystalnet" else "hidden_features") == 32


def test_config_json_holds_only_the_chosen_model(tmp_path):
    for name, settings in (("cgcnn", CGCNNConfig), ("alignn", ALIGNNConfig)):
        cfg = defaults_for(name)
        cfg.save(tmp_path / f"{name}.json")
        saved = json.loads((tmp_path / f"{name}.json").read_text())
        assert set(saved["model"]["arch"]) == {f.name for f in dataclasses.fields(settings)}
        assert not {"alignn", "atom_fea_len", "n_conv", "hidden_features"} & (set(saved["model"]) - {"arch"})
        assert "gaussian_step" not in saved["features"]
        assert RunConfig.load(tmp_path / f"{name}.json") == cfg


def test_model_config_checks_name_and_settings():
    assert ModelConfig(arch=ALIGNNConfig(hidden_features=8)).name == "alignn"
    assert ModelConfig(name="alignn").arch == ALIGNNConfig()
    assert ModelConfig() == ModelConfig(name="cgcnn", arch=CGCNNConfig())
    with pytest.raises(ValueError, match="settings of 'cgcnn'"):
        ModelConfig(name="alignn", arch=CGCNNConfig())
    with pytest.raises(ValueError, match="unknown model 'nope'.*cgcnn, alignn"):
        ModelConfig(name="nope")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.ModelSpec(name="cgcnn", settings=TinyConfig, build=build_tiny))
    with pytest.raises(TypeError, match="frozen dataclass"):
        registry.ModelSpec(name="bad", settings=dict, build=build_tiny)
    # a model that needs the line graph says so before anything is built
    alignn = defaults_for("alignn")
    with pytest.raises(ValueError, match="needs line graphs"):
        dataclasses.replace(alignn, graph=dataclasses.replace(alignn.graph, line_graph=False)).check()
    no_angles = dataclasses.replace(alignn, graph=dataclasses.replace(alignn.graph, line_graph=False),
                                    model=ModelConfig(arch=ALIGNNConfig(alignn_layers=0)))
    no_angles.check()  # 0 ALIGNN layers need no line graph
    assert TrainConfig() == defaults_for("cgcnn").train
