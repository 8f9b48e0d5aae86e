"""JARVIS CFID element features: the table against jarvis-tools, the placeholder elements, the
standardiser fit on training atoms, and the Noam learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgnn.features.cfid import (
    CFID_PLACEHOLDER,
    CFID_WIDTH,
    CFIDStandardizer,
    cfid_column_names,
    cfid_missing,
    cfid_symbols,
    cfid_table,
    fit_cfid_standardizer,
    imputed_elements,
)

specie = pytest.importorskip("jarvis.core.specie")

#: The elements with placeholders in Elements.json (all of Z 1-103), and those with Z <= 100.
PLACEHOLDER_ELEMENTS = {"Ac", "Am", "At", "Bk", "Cf", "Cm", "Es", "Eu", "Fm", "Fr", "Lr", "Md", "No", "Np", "Pa", "Pm",
                        "Po", "Pu", "Ra", "Rn", "Xe"}
PLACEHOLDER_ELEMENTS_TO_100 = PLACEHOLDER_ELEMENTS - {"Md", "No", "Lr"}


def test_table_shape_and_names():
    table = cfid_table()
    assert table.shape == (101, CFID_WIDTH) and table.dtype == np.float64
    assert not table[0].any()
    assert cfid_table(103).shape == (104, CFID_WIDTH)
    names = cfid_column_names()
    assert len(names) == CFID_WIDTH == len(set(names))
    assert list(names) == specie.get_descrp_arr_name("H") == specie.get_descrp_arr_name("Al")
    symbols = cfid_symbols()
    assert symbols[1] == "H" and symbols[26] == "Fe" and symbols[100] == "Fm"
    with pytest.raises(ValueError, match="max_z"):
        cfid_table(104)


def test_table_equals_jarvis_for_every_element():
    table = cfid_table()
    names = cfid_column_names()
    for z in range(1, 101):
        symbol = cfid_symbols()[z]
        ref = specie.Specie(symbol).get_descrp_arr
        assert specie.Specie(symbol).Z == z
        # jarvis lists each element's values in that element's key order: align by name.
        order = [names.index(n) for n in specie.get_descrp_arr_name(symbol)]
        np.testing.assert_array_equal(table[z, order], ref, err_msg=symbol)
        if symbol not in PLACEHOLDER_ELEMENTS:
            np.testing.assert_array_equal(table[z], ref, err_msg=symbol)  # same order as well


def test_placeholder_elements_use_another_key_order_in_jarvis():
    # Why the table aligns by name: jarvis's array for Xe has Z where every complete element has hfus_add_bp.
    names = cfid_column_names()
    xe = specie.Specie("Xe").get_descrp_arr
    assert xe[names.index("hfus_add_bp")] == 54
    assert cfid_table()[54, names.index("Z")] == 54 and cfid_table()[54, names.index("hfus_add_bp")] == CFID_PLACEHOLDER


def test_missing_elements_are_exactly_the_21():
    missing = cfid_missing(103)
    symbols = cfid_symbols(103)
    with_missing = {symbols[z] for z in range(1, 104) if missing[z].any()}
    assert with_missing == PLACEHOLDER_ELEMENTS
    missing100 = cfid_missing()
    assert {symbols[z] for z in range(1, 101) if missing100[z].any()} == PLACEHOLDER_ELEMENTS_TO_100
    counts = {symbols[z]: int(missing[z].sum()) for z in range(1, 104) if missing[z].any()}
    assert set(counts.values()) == {434, 435}
    assert {s for s, n in counts.items() if n == 434} == {"Xe", "Pm", "Eu", "Po", "Rn"}
    # Every placeholder element keeps Z and the atomic mass.
    names = cfid_column_names()
    assert not missing[:, [names.index("Z"), names.index("atom_mass")]].any()
    raw = cfid_table()[1:][~missing100[1:]]
    assert raw.min() > -6000 and raw.max() > 2e7


def _made_up_counts() -> np.ndarray:
    counts = np.zeros(101)
    for symbol, n in {"O": 40, "Fe": 12, "Na": 7, "Cl": 7, "Eu": 3, "Xe": 1, "Si": 20, "H": 5}.items():
        counts[cfid_symbols().index(symbol)] = n
    counts[0] = 99  # index 0 is no element: ignored
    return counts


def test_standardizer_is_atom_weighted_over_present_entries():
    counts = _made_up_counts()
    std = fit_cfid_standardizer(counts)
    out = std.apply(cfid_table())
    missing = cfid_missing()
    w = counts.copy()
    w[0] = 0
    for c in range(CFID_WIDTH):
        used = (w > 0) & ~missing[:, c]
        x, wc = out[used, c], w[used]
        if np.ptp(cfid_table()[used, c]) == 0:
            assert std.std[c] == 1.0 and np.all(x == 0)
            continue
        assert abs(np.average(x, weights=wc)) < 1e-9
        assert np.sqrt(np.average(x**2, weights=wc)) == pytest.approx(1.0, rel=1e-9)
    # Placeholders become exactly 0 (the training mean); so does row 0.
    assert np.all(out[missing] == 0.0) and not out[0].any()
    assert np.isfinite(out).all()
    # Elements absent from training are standardised with the same statistics.
    ti = cfid_symbols().index("Ti")
    np.testing.assert_array_equal(out[ti], (cfid_table()[ti] - std.mean) / std.std)


def test_constant_column_gets_std_one():
    names = cfid_column_names()
    counts = np.zeros(101)
    counts[[8, 26]] = [3, 2]  # O and Fe, neither a halogen
    std = fit_cfid_standardizer(counts)
    halogen = names.index("is_halogen")
    assert std.std[halogen] == 1.0 and std.mean[halogen] == 0.0
    out = std.apply(cfid_table())
    assert out[8, halogen] == 0.0 and out[9, halogen] == 1.0  # F is a halogen: one "std" away
    assert np.isfinite(out).all()
    # One element alone: every column is constant.
    counts = np.zeros(101)
    counts[14] = 4
    std = fit_cfid_standardizer(counts)
    assert np.all(std.std == 1.0) and not std.apply(cfid_table())[14].any()


def test_column_without_training_data():
    # Only Xe atoms: the 434 columns Xe misses have no data, mean 0 and std 1.
    counts = np.zeros(101)
    counts[54] = 2
    std = fit_cfid_standardizer(counts)
    gone = cfid_missing()[54]
    assert np.all(std.mean[gone] == 0.0) and np.all(std.std == 1.0)


def test_imputed_elements_report():
    assert imputed_elements(_made_up_counts()) == [("Xe", 54, 434, 1), ("Eu", 63, 434, 3)]
    assert imputed_elements(np.zeros(101)) == []


def test_standardizer_validates():
    with pytest.raises(ValueError, match="shape"):
        CFIDStandardizer(mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        CFIDStandardizer(mean=np.zeros(CFID_WIDTH), std=np.zeros(CFID_WIDTH))
    with pytest.raises(ValueError, match="non-negative"):
        fit_cfid_standardizer(-np.ones(101))
    s = CFIDStandardizer(mean=np.zeros(CFID_WIDTH), std=np.ones(CFID_WIDTH))
    assert not s.mean.flags.writeable


# ----------------------------------------------------------------------------------------------
# Noam learning-rate schedule (TrainConfig.scheduler = "noam")
# ----------------------------------------------------------------------------------------------


def _noam_rates(train, steps: int, epochs: int) -> list[float]:
    from types import SimpleNamespace

    from crystalgnn.config import ModelConfig, RunConfig
    from crystalgnn.models.cgcnn import CGCNNConfig
    from crystalgnn.training.module import build_module

    cfg = RunConfig(model=ModelConfig(arch=CGCNNConfig(atom_fea_len=4, n_conv=1, h_fea_len=4)), train=train)
    module = build_module(cfg)
    # configure_optimizers only asks the trainer for the step count and the epochs.
    module.trainer = SimpleNamespace(estimated_stepping_batches=steps, max_epochs=epochs)
    conf = module.configure_optimizers()
    assert conf["lr_scheduler"]["interval"] == "step"
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_noam_schedule_warms_up_then_decays_to_final():
    from crystalgnn.config import TrainConfig

    train = TrainConfig(epochs=10, lr=3e-4, optimizer="adam", scheduler="noam")  # OCrystalNet: 1e-4 -> 3e-4 -> 1e-5
    assert (train.noam_warmup_epochs, train.noam_initial_lr, train.noam_final_lr) == (2.0, 1e-4, 1e-5)
    rates = np.array(_noam_rates(train, steps=70, epochs=10))  # 7 steps per epoch: warm-up ends at step 14
    warmup = 14
    assert rates[0] == pytest.approx(1e-4, rel=1e-12)
    assert rates[warmup] == pytest.approx(3e-4, rel=1e-12)
    assert rates[-1] == pytest.approx(1e-5, rel=1e-12)
    assert np.all(np.diff(rates[: warmup + 1]) > 0) and np.all(np.diff(rates[warmup:]) < 0)
    np.testing.assert_allclose(np.diff(rates[: warmup + 1]), (3e-4 - 1e-4) / warmup, rtol=1e-9)  # linear
    ratios = rates[warmup + 1:] / rates[warmup:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # exponential


def test_noam_schedule_other_settings_and_checks():
    from crystalgnn.config import TrainConfig

    train = TrainConfig(epochs=4, lr=1e-3, scheduler="noam", noam_warmup_epochs=0.5, noam_initial_lr=1e-5, noam_final_lr=1e-6)
    rates = _noam_rates(train, steps=40, epochs=4)  # warm-up of 5 steps
    assert rates[0] == pytest.approx(1e-5, rel=1e-12) and rates[5] == pytest.approx(1e-3, rel=1e-12)
    assert rates[-1] == pytest.approx(1e-6, rel=1e-12)
    # Warm-up longer than the run: linear the whole way, no decay.
    rates = _noam_rates(TrainConfig(epochs=1, lr=1e-3, scheduler="noam"), steps=5, epochs=1)
    assert np.all(np.diff(rates) > 0) and rates[-1] == pytest.approx(1e-3, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        TrainConfig(scheduler="noam", noam_final_lr=0.0)


def test_noam_flags_reach_the_config():
    from crystalgnn import cli

    args = cli.build_parser("train").parse_args(["train", "data", "--run-dir", "r", "--scheduler", "noam", "--noam-warmup-epochs", "3",
                              "--noam-initial-lr", "2e-4", "--noam-final-lr", "2e-6"])
    from crystalgnn.cli.train import config_from_args

    t = config_from_args(args).train
    assert (t.scheduler, t.noam_warmup_epochs, t.noam_initial_lr, t.noam_final_lr) == ("noam", 3.0, 2e-4, 2e-6)
