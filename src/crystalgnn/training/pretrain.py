r"""Masked-atom pretraining of an element embedding (CrysToGraph, Wang et al., Appendix A.1).

The procedure, per crystal and per batch:

1. **Supercell.** A cell of n < 8 atoms becomes its m×m×m supercell, m = ⌈(8/n)^{1/3}⌉, so that
   15 % of its atoms is at least one atom whose periodic images are not all masked with it. The
   supercell graph is made from the cell's cached graph (:mod:`crystalgnn.graphs.supercell`), once
   before training: no graph is built or searched per epoch.
2. **Selection.** n_select = round(0.15·n) atoms (Python's round, half to even; at least 1), n the
   atoms of the (expanded) crystal, drawn without replacement.
3. **Corruption.** Each selected atom independently gets the mask token (80 %), a random element
   drawn uniformly from Z 1–100 (10 %), or stays unchanged (10 %): the paper's split
   (``mask_split="paper"``). The reference code's second random draw gives 80 / 2 / 18
   (``mask_split="code"``). Masks are drawn fresh for every training batch from a generator seeded
   with ``seed``; the validation crystals get the same masks every epoch (a generator seeded with
   ``seed + 1`` per pass), so their accuracy compares across epochs.
4. **Model.** Token embedding (vocabulary: Z 1–100 and one mask token, 101 rows, width 64) → 3
   CGCNN gated convolutions with batch norm (:class:`crystalgnn.models.cgcnn.GatedConv`, Eq. 5) on
   the radius graph (``GraphConfig`` defaults: 12 nearest within 8 Å) with CGCNN's 41 distance
   Gaussians (0–8 Å, step 0.2) → Linear(64, 64) → Softplus → Linear(64, 101) logits per atom.
5. **Loss.** Cross-entropy of the original element at the selected atoms only (every other atom's
   label is ``IGNORE``, -100).

Defaults (:class:`PretrainConfig`), from the reference code unless noted:

====================  ==========================  ==========================  ======================
setting               paper                       reference code              here (default)
====================  ==========================  ==========================  ======================
selected atoms        15 %                        round(0.15·n)               round(0.15·n), ≥ 1
mask / random / keep  80 / 10 / 10                80 / 2 / 18                 80 / 10 / 10 (``code``)
supercell             "expanded" (no rule)        m = ⌈(8/n)^{1/3}⌉ if n < 8  the same
vocabulary            –                           85 elements + Og as mask    Z 1–100 + a mask token
encoder               "a CGCNN model"             Embedding(86,64), 3× PyG    Embedding(101, 64), 3×
                                                  CGConv(64, dim 76, BN)      gated conv, 41 Gaussians
head                  –                           Linear(64,64), Softplus,    the same (101 outputs)
                                                  Linear(64,86)
optimiser             –                           SGD 0.01, momentum 0.9      the same
schedule              lr ÷10 at epoch 20 (A1)     StepLR(20, 0.1)             the same
epochs, batch         –                           60, 32                      60, 32
validation            –                           none                        10 % held out (seeded)
====================  ==========================  ==========================  ======================

The reference's 76 edge features are CrysToGraph's own bond features; the brief of this toolkit is
the CGCNN radius graph with its 41 Gaussians, so every crystal's cached graph serves as is. The
random element is drawn uniformly from the 100 elements (the reference draws from its vocabulary).

A caveat of the method (the paper's and the reference's alike): in a small cell the other images of
a selected atom are ordinary atoms of the supercell, often among its 12 nearest neighbours (in a
2-atom rock-salt cell the 12 nearest of Na are 6 Cl and 6 images of Na itself), so part of the
accuracy on expanded cells is read off the neighbours rather than inferred from chemistry.

A run directory holds ``config.json`` (the :class:`PretrainConfig`), ``embedding.safetensors`` (+
``.json``: the learned element table, row Z = element Z, zero row 0, and the mask token's vector;
see :mod:`crystalgnn.features.pretrained`), ``model.safetensors`` (+ ``.json``: the whole encoder),
``metrics.json`` (train / validation loss and masked-element accuracy per epoch, the
majority-element baseline), ``learning_curve.png`` and ``skipped.csv`` when items were skipped.
Elements absent from the pretraining data keep the embedding's random initial rows (listed in the
metadata as ``never_seen``). ``--atom-features cgcnn+pretrained:RUN`` then feeds the table to any
model (:mod:`crystalgnn.features.choices`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pymatgen.core import Element
from torch import Tensor, nn
from torch.nn import functional as F

from crystalgnn.config import FeatureConfig, GraphConfig, from_dict
from crystalgnn.data.prepared import prepare
from crystalgnn.errors import DatasetError, write_problems
from crystalgnn.features.pretrained import EMBEDDING_FILE
from crystalgnn.graphs.store import GraphStore
from crystalgnn.graphs.supercell import expand_small_cells
from crystalgnn.io.resolve import resolve_structures
from crystalgnn.models.blocks import MAX_Z, GaussianExpansion
from crystalgnn.models.cgcnn import GatedConv
from crystalgnn.paths import resolve_cache_dir
from crystalgnn.training.checkpoint import save_weights

log = logging.getLogger("crystalgnn")

#: Tokens: element Z is token Z − 1 (Z 1–100), the mask token is the last one.
MASK_TOKEN = MAX_Z
VOCABULARY = MAX_Z + 1
#: Label of the atoms that were not selected (skipped by the loss).
IGNORE = -100
#: (mask token, random element, unchanged) fractions of the selected atoms.
MASK_SPLITS: dict[str, tuple[float, float, float]] = {"paper": (0.8, 0.1, 0.1), "code": (0.8, 0.02, 0.18)}
#: What a selected atom became (``MaskedAtoms.action``).
NOT_SELECTED, MASKED, RANDOM, UNCHANGED = 0, 1, 2, 3


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of a pretraining run (defaults: the reference code; see the module docstring)."""

    source: str = ""  # the data, as given (filled in by pretrain())
    max_items: int | None = None  # read only the first items (None: all)
    on_error: Literal["raise", "skip"] = "raise"
    graph: GraphConfig = field(default_factory=GraphConfig)
    min_atoms: int = 8  # cells with fewer atoms are expanded to m×m×m supercells
    mask_fraction: float = 0.15
    mask_split: Literal["paper", "code"] = "paper"
    width: int = 64
    n_conv: int = 3
    gaussian_start: float = 0.0
    gaussian_stop: float = 8.0
    gaussian_step: float = 0.2
    epochs: int = 60
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    step_size: int = 20  # StepLR: lr × gamma every step_size epochs
    gamma: float = 0.1
    val_fraction: float = 0.1
    seed: int = 123
    threads: int = 0  # torch CPU threads (0: the free cores)

    def __post_init__(self) -> None:
        if self.mask_split not in MASK_SPLITS:
            raise ValueError(f"mask_split {self.mask_split!r}: choose one of {', '.join(MASK_SPLITS)}")
        if not 0.0 < self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction {self.mask_fraction} must be in (0, 1]")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction {self.val_fraction} must be in (0, 1): validation is how the run is judged")
        for name in ("epochs", "batch_size", "width", "n_conv", "step_size", "min_atoms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "pretrain", **dataclasses.asdict(self)}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> PretrainConfig:
        data = json.loads(Path(path).read_text())
        data.pop("kind", None)
        return from_dict(cls, data)


# ----------------------------------------------------------------------------- masking
def selected_counts(n_atoms: Tensor, fraction: float = 0.15) -> Tensor:
    """n_select = round(fraction · n) per crystal (half to even, as Python's round), at least 1."""
    return torch.clamp(torch.round(n_atoms.double() * fraction).long(), min=1)


@dataclass(frozen=True)
class MaskedAtoms:
    """One batch's corruption: ``tokens`` (N,) model inputs, ``labels`` (N,) the original token at
    selected atoms and :data:`IGNORE` elsewhere, ``action`` (N,) what each atom became
    (:data:`NOT_SELECTED`, :data:`MASKED`, :data:`RANDOM`, :data:`UNCHANGED`)."""

    tokens: Tensor
    labels: Tensor
    action: Tensor


def draw_masks(z: Tensor, ptr: Tensor, generator: torch.Generator, fraction: float = 0.15,
               split: tuple[float, float, float] = MASK_SPLITS["paper"]) -> MaskedAtoms:
    """Select round(``fraction``·n) atoms of each crystal (``ptr``: (B + 1,) atom offsets) uniformly
    without replacement, and corrupt them by ``split`` (mask token / random element / unchanged).

    ``z`` (N,) atomic numbers 1–100. Vectorised over the batch: atoms sorted by crystal + a uniform
    key are in a random order within each crystal, and the first n_select of each are selected."""
    counts = ptr[1:] - ptr[:-1]
    graph = torch.repeat_interleave(torch.arange(len(counts)), counts)
    keys = torch.rand(len(z), generator=generator, dtype=torch.float64)
    order = torch.argsort(graph.double() + keys)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(z)) - ptr[:-1].repeat_interleave(counts)
    selected = rank < selected_counts(counts, fraction)[graph]
    original = z.long() - 1
    draw = torch.rand(len(z), generator=generator)
    random_tokens = torch.randint(0, MAX_Z, (len(z),), generator=generator)
    p_mask, p_random = split[0], split[0] + split[1]
    action = torch.full_like(original, NOT_SELECTED)
    action[selected & (draw < p_mask)] = MASKED
    action[selected & (draw >= p_mask) & (draw < p_random)] = RANDOM
    action[selected & (draw >= p_random)] = UNCHANGED
    tokens = torch.where(action == MASKED, torch.full_like(original, MASK_TOKEN), original)
    tokens = torch.where(action == RANDOM, random_tokens, tokens)
    labels = torch.where(selected, original, torch.full_like(original, IGNORE))
    return MaskedAtoms(tokens, labels, action)


# ----------------------------------------------------------------------------- model
class MaskedAtomModel(nn.Module):
    """Token embedding → ``n_conv`` CGCNN gated convolutions → Linear → Softplus → Linear logits.

    Shapes: tokens (N,) in 0..100 (element Z as Z − 1, :data:`MASK_TOKEN`), edge_index (2, E)
    (neighbour j, centre i), edge_dist (E,) Å. Returns (N, 101) logits of the original element."""

    def __init__(self, width: int = 64, n_conv: int = 3, gaussian_start: float = 0.0, gaussian_stop: float = 8.0,
                 gaussian_step: float = 0.2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, width)
        self.expansion = GaussianExpansion(gaussian_start, gaussian_stop, gaussian_step)
        self.convs = nn.ModuleList(GatedConv(width, self.expansion.num_features) for _ in range(n_conv))
        self.head = nn.Sequential(nn.Linear(width, width), nn.Softplus(), nn.Linear(width, VOCABULARY))

    def forward(self, tokens: Tensor, edge_index: Tensor, edge_dist: Tensor) -> Tensor:
        x = self.embedding(tokens)
        edge_attr = self.expansion(edge_dist)
        for conv in self.convs:
            x = conv(x, edge_index, edge_attr)
        return self.head(x)

    def element_table(self) -> Tensor:
        """(101, width): row Z the embedding of element Z, row 0 zero (no element), as the atom
        feature tables are indexed."""
        weight = self.embedding.weight.detach().cpu()
        return torch.cat([torch.zeros(1, weight.shape[1]), weight[:MAX_Z]]).contiguous()


# ----------------------------------------------------------------------------- training
@dataclass
class PretrainResult:
    """Where the run was written and its ``metrics.json`` content."""

    run_dir: Path
    metrics: dict[str, Any]

    def summary(self) -> str:
        m = self.metrics
        last = m["history"][-1]
        return (f"pretrained on {m['n_train']} crystals ({m['n_val']} held out), {len(m['history'])} epoch(s): "
                f"validation masked-element accuracy {last['val_accuracy']:.3f} (mask-token atoms {last['val_accuracy_masked']:.3f}); "
                f"majority element {m['majority_element']}: {m['majority_baseline_accuracy']:.3f}; "
                f"embedding in {self.run_dir / EMBEDDING_FILE}")


def _batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def _run_epoch(model: MaskedAtomModel, store: GraphStore, batches: Sequence[np.ndarray], generator: torch.Generator,
               cfg: PretrainConfig, optimizer: torch.optim.Optimizer | None) -> dict[str, float]:
    """One pass; trains when ``optimizer`` is given. Returns mean loss and accuracies per selected atom."""
    model.train(optimizer is not None)
    split = MASK_SPLITS[cfg.mask_split]
    loss_sum, hits, total, masked_hits, masked_total = 0.0, 0, 0, 0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for idx in batches:
            batch = store.collate(idx)
            masks = draw_masks(batch.z, batch.ptr, generator, cfg.mask_fraction, split)
            logits = model(masks.tokens, batch.edge_index, batch.edge_dist)
            loss = F.cross_entropy(logits, masks.labels, ignore_index=IGNORE)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            selected = masks.labels != IGNORE
            right = (logits.argmax(dim=1) == masks.labels) & selected
            n = int(selected.sum())
            loss_sum += float(loss.detach()) * n
            hits += int(right.sum())
            total += n
            is_masked = masks.action == MASKED
            masked_hits += int((right & is_masked).sum())
            masked_total += int(is_masked.sum())
    return {"loss": loss_sum / max(total, 1), "accuracy": hits / max(total, 1),
            "accuracy_masked": masked_hits / max(masked_total, 1), "selected_atoms": total}


def _majority_baseline(store: GraphStore, train_rows: np.ndarray, val_batches: Sequence[np.ndarray], cfg: PretrainConfig) -> tuple[int, float]:
    """The most frequent element of the training atoms, and the fraction of the validation passes'
    selected atoms it is (the accuracy of always predicting it)."""
    atoms_of_train = np.repeat(np.isin(np.arange(len(store)), train_rows), store.num_atoms)
    majority = int(np.bincount(store.atomic_numbers[atoms_of_train].astype(np.int64), minlength=MAX_Z + 1).argmax())
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    hits = total = 0
    for idx in val_batches:
        batch = store.collate(idx)
        labels = draw_masks(batch.z, batch.ptr, generator, cfg.mask_fraction, MASK_SPLITS[cfg.mask_split]).labels
        selected = labels != IGNORE
        hits += int((labels[selected] == majority - 1).sum())
        total += int(selected.sum())
    return majority, hits / max(total, 1)


def _embedding_metadata(cfg: PretrainConfig, store: GraphStore, train_rows: np.ndarray, metrics: dict[str, Any]) -> dict[str, Any]:
    atoms_of_train = np.repeat(np.isin(np.arange(len(store)), train_rows), store.num_atoms)
    counts = np.bincount(store.atomic_numbers[atoms_of_train].astype(np.int64), minlength=MAX_Z + 1)
    return {
        "format": "crystalgnn element embedding",
        "version": 1,
        "rows": f"row Z is element Z (1-{MAX_Z}); row 0 (no element) is zero",
        "width": cfg.width,
        "elements_seen": {Element.from_Z(z).symbol: int(counts[z]) for z in range(1, MAX_Z + 1) if counts[z]},
        "never_seen": [Element.from_Z(z).symbol for z in range(1, MAX_Z + 1) if not counts[z]],
        "never_seen_note": "rows of elements absent from the pretraining crystals are the embedding's untrained initial values",
        "mask_split": cfg.mask_split,
        "epochs": len(metrics["history"]),
        "val_accuracy": metrics["history"][-1]["val_accuracy"],
        "source": cfg.source,
    }


def _curve_plot(history: list[dict[str, float]], baseline: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax.set(xlabel="epoch", ylabel="cross-entropy of the selected atoms")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["val_accuracy"] for h in history], color="C3", label="validation accuracy")
    ax2.axhline(baseline, color="C3", linestyle=":", label="majority element")
    ax2.set(ylabel="masked-element accuracy", ylim=(0, 1))
    ax.legend(loc="upper right")
    ax2.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pretrain(data: Any, run_dir: str | Path, config: PretrainConfig | None = None, cache_dir: str | Path | None = "default",
             workers: int = 0, progress: bool = True) -> PretrainResult:
    """Pretrain an element embedding on the structures of ``data`` (anything ``train`` reads;
    targets are not read) and write ``run_dir`` (see the module docstring).

    ``cache_dir``: the graph cache (``"default"``: ``$CRYSTALGNN_CACHE`` or ``~/.cache/crystalgnn``;
    ``None``: none). Unusable items (unparseable, partial occupancy, an element beyond Z 100, ...)
    stop the run with the full list, or are skipped into ``skipped.csv`` with ``on_error="skip"``."""
    from crystalgnn.training.trainer import set_threads

    started = time.perf_counter()
    cfg = config or PretrainConfig()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)  # present only when a run finished
    set_threads(cfg.threads)
    dataset = resolve_structures(data, cfg.max_items)
    cfg = dataclasses.replace(cfg, source=str(dataset.meta.get("source", data if isinstance(data, (str, Path)) else "")))
    prepared = prepare(dataset, cfg.graph, FeatureConfig(), resolve_cache_dir(cache_dir), workers, progress)
    if prepared.problems:
        if cfg.on_error == "raise":
            raise DatasetError(prepared.problems)
        write_problems(prepared.problems, run_dir / "skipped.csv")
        log.warning("skipped %d item(s); see %s", len(prepared.problems), run_dir / "skipped.csv")
    if len(prepared) < 2:
        raise ValueError(f"only {len(prepared)} usable crystal(s); pretraining needs at least 2 (one to train on, one to validate)")
    cfg.save(run_dir / "config.json")

    store, multipliers = expand_small_cells(prepared.store, cfg.min_atoms)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(store))
    n_val = min(len(store) - 1, max(1, int(round(cfg.val_fraction * len(store)))))
    val_rows, train_rows = np.sort(order[:n_val]), order[n_val:]
    val_batches = _batches(val_rows, cfg.batch_size)

    torch.manual_seed(cfg.seed)
    model = MaskedAtomModel(cfg.width, cfg.n_conv, cfg.gaussian_start, cfg.gaussian_stop, cfg.gaussian_step)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    train_masks = torch.Generator().manual_seed(cfg.seed)
    majority, baseline = _majority_baseline(store, train_rows, val_batches, cfg)

    from tqdm.auto import tqdm

    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.epochs), desc="pretraining", unit="epoch", disable=not progress)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        train_stats = _run_epoch(model, store, _batches(rng.permutation(train_rows), cfg.batch_size), train_masks, cfg, optimizer)
        scheduler.step()
        val_stats = _run_epoch(model, store, val_batches, torch.Generator().manual_seed(cfg.seed + 1), cfg, None)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_stats["loss"], "train_accuracy": train_stats["accuracy"],
               "val_loss": val_stats["loss"], "val_accuracy": val_stats["accuracy"], "val_accuracy_masked": val_stats["accuracy_masked"]}
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}")
        if not np.isfinite(row["train_loss"]):
            raise ValueError(f"the pretraining loss became {row['train_loss']} in epoch {epoch}; lower the learning rate (--lr)")

    metrics: dict[str, Any] = {
        "history": history,
        "final": history[-1],
        "majority_element": Element.from_Z(majority).symbol,
        "majority_baseline_accuracy": baseline,
        "n_train": int(len(train_rows)),
        "n_val": int(len(val_rows)),
        "n_expanded": int((multipliers > 1).sum()),
        "n_skipped": len(prepared.problems),
        "val_selected_atoms": int(val_stats["selected_atoms"]),
    }
    table = model.element_table()
    mask_vector = model.embedding.weight.detach().cpu()[MASK_TOKEN].clone()
    save_weights({"embedding": table, "mask_token": mask_vector}, run_dir / EMBEDDING_FILE,
                 _embedding_metadata(cfg, store, train_rows, metrics))
    save_weights(model.state_dict(), run_dir / "model.safetensors", {"config": dataclasses.asdict(cfg)})
    _curve_plot(history, baseline, run_dir / "learning_curve.png")
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # last: the run is finished
    return PretrainResult(run_dir, metrics)
