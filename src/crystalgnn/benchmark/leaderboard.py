"""``crystalgnn benchmark collect``: cells from one or many study directories → a leaderboard.

Every ``cell.json`` under the given directories is read (shards run on other machines are just
more directories); a cell found twice is kept once (the same numbers) or, when the copies
disagree, the later-finished one, with a warning. Per task and model: mean ± standard deviation
over the folds found (ddof 0, as MatBench reports), the number of folds, the rank within the task
(1 = best by the task's metric), and beside them the published numbers of the task it
approximates, marked as measured on other data.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crystalgnn.benchmark.runner import CELL_FILE, FAILED_FILE

log = logging.getLogger("crystalgnn")

PUBLISHED_FILE = Path(__file__).with_name("published.toml")
#: Our model names → the MatBench leaderboard's algorithm names.
MATBENCH_NAMES = {"cgcnn": "CGCNN v2019", "alignn": "ALIGNN"}
LEADERBOARD_CSV = Path("matbench_leaderboard") / "matbench_v0.1_leaderboard.csv"


def read_cells(dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, int], dict[str, Any]] = {}
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise FileNotFoundError(f"{d}: no such study directory")
        for path in sorted(d.rglob(CELL_FILE)):
            cell = json.loads(path.read_text())
            key = (cell["task"], cell["model"], int(cell["fold"]))
            old = cells.get(key)
            if old is not None and abs(float(old["value"]) - float(cell["value"])) > 1e-12:
                log.warning("%s fold %d of %s found twice with different scores (%.6g, %.6g); keeping the later one (%s)",
                            cell["model"], key[2], cell["task"], old["value"], cell["value"], path)
                if str(cell.get("finished_at", "")) < str(old.get("finished_at", "")):
                    continue
            cells[key] = cell
    return [cells[k] for k in sorted(cells)]


def read_failures(dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Cells whose last attempt failed (``cell_failed.json`` without a ``cell.json`` beside it)."""
    found = []
    for d in dirs:
        for path in sorted(Path(d).rglob(FAILED_FILE)):
            if not (path.parent / CELL_FILE).exists():
                found.append(json.loads(path.read_text()))
    return found


def published_numbers(data_root: str | Path | None = None) -> dict[tuple[str, str], tuple[float, str]]:
    """(approximated task, model) → (value, source): the seed papers' tables and, when the data
    root holds it, the MatBench v0.1 leaderboard."""
    found: dict[tuple[str, str], tuple[float, str]] = {}
    for row in tomllib.loads(PUBLISHED_FILE.read_text()).get("published", []):
        found[(row["task"], row["model"])] = (float(row["value"]), row["source"])
    if data_root is not None and (Path(data_root) / LEADERBOARD_CSV).exists():
        import pandas as pd

        board = pd.read_csv(Path(data_root) / LEADERBOARD_CSV)
        for model, name in MATBENCH_NAMES.items():
            for _, row in board[board["algorithm"] == name].iterrows():
                found[(row["task"], model)] = (float(row["metric1"]), f"MatBench v0.1 leaderboard ({name}, 5-fold {row['metric1_name']})")
    return found


def leaderboard_frame(cells: list[dict[str, Any]], data_root: str | Path | None = None) -> Any:
    """One row per (task, model): metric, mean, std, folds, rank, published value and source."""
    import pandas as pd

    if not cells:
        raise ValueError("no finished cell (cell.json) found; run `crystalgnn benchmark TASKS` first")
    frame = pd.DataFrame(cells)
    published = published_numbers(data_root)
    rows = []
    for (task, model), group in frame.groupby(["task", "model"], sort=True):
        values = group["value"].to_numpy(float)
        first = group.iloc[0]
        pub = published.get((str(first.get("approximates", "")), model))
        rows.append({
            "task": task, "model": model, "metric": first["metric"], "unit": first.get("unit", ""),
            "mean": float(values.mean()), "std": float(values.std()), "folds": int(len(values)),
            "fold_ids": " ".join(str(f) for f in sorted(group["fold"])),
            "epochs_run": " ".join(str(e) for e in group.sort_values("fold")["epochs_run"]),
            "stop": ",".join(sorted(set(str(s) for s in group["stop_reason"]))),
            "minutes": round(float(np.nansum(group["wall_seconds"].to_numpy(float))) / 60.0, 2),
            "n_train": int(group["n_train"].iloc[0]), "n_test": int(group["n_test"].sum()),
            "lower_is_better": bool(first["lower_is_better"]), "approximates": first.get("approximates", ""),
            "published": pub[0] if pub else np.nan, "published_source": pub[1] if pub else "",
        })
    board = pd.DataFrame(rows)
    board["rank"] = 0
    for _, group in board.groupby("task"):
        ascending = bool(group["lower_is_better"].iloc[0])
        board.loc[group.index, "rank"] = group["mean"].rank(ascending=ascending, method="min").astype(int)
    return board.sort_values(["task", "rank", "model"]).reset_index(drop=True)


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "–"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.1f}"


def leaderboard_markdown(board: Any, title: str = "Leaderboard", failures: Sequence[dict[str, Any]] = ()) -> str:
    lines = [f"# {title}", "",
             "Mean ± std over the folds run (std 0 with one fold). Rank 1 is best by the task's metric. "
             "**Published** numbers are those of the task each one approximates, measured on other data (other and more "
             "crystals, the authors' budgets): a guide to the ordering, not a target for these numbers.", ""]
    for task, group in board.groupby("task", sort=True):
        first = group.iloc[0]
        unit = f" ({first['unit']})" if first["unit"] else ""
        better = "lower is better" if first["lower_is_better"] else "higher is better"
        lines += [f"## {task}", "", f"{first['metric']}{unit}, {better}; approximates `{first['approximates'] or '–'}`", "",
                  "| rank | model | mean ± std | folds | epochs run | stopped by | minutes | published (other data) |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, r in group.iterrows():
            pub = f"{_fmt(r['published'])} ({r['published_source']})" if np.isfinite(r["published"]) else "–"
            lines.append(f"| {r['rank']} | {r['model']} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | {r['folds']} | {r['epochs_run']} | "
                         f"{r['stop']} | {r['minutes']:.1f} | {pub} |")
        lines.append("")
    if failures:
        lines += ["## Failed cells (rerun the study command to retry them)", ""]
        lines += [f"- {f['task']} / {f['model']} / fold {f['fold']}: {f['error'].splitlines()[0][:300]}" for f in failures]
        lines.append("")
    return "\n".join(lines)


def bar_chart(group: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    group = group.sort_values("model")
    x = np.arange(len(group))
    fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(group), 3.6))
    ax.bar(x - 0.18, group["mean"], 0.36, yerr=group["std"], capsize=3, label="ours (this data)", color="#3b6ea8")
    if np.isfinite(group["published"]).any():
        ax.bar(x + 0.18, group["published"], 0.36, label="published (other data)", color="#bbbbbb", hatch="//")
    first = group.iloc[0]
    ax.set_xticks(x, list(group["model"]))
    ax.set_ylabel(f"{first['metric']}" + (f" ({first['unit']})" if first["unit"] else ""))
    ax.set_title(str(first["task"]), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collect(dirs: Sequence[str | Path], out: str | Path, data_root: str | Path | None = None, title: str = "Leaderboard") -> Any:
    """Merge the cells under ``dirs`` and write ``out``/leaderboard.md, leaderboard.csv,
    cells.csv (every fold) and charts/<task>.png; returns the leaderboard frame."""
    import pandas as pd

    from crystalgnn.benchmark.sources import default_data_root

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = read_cells(dirs)
    board = leaderboard_frame(cells, data_root if data_root is not None else default_data_root())
    board.drop(columns=["lower_is_better"]).to_csv(out / "leaderboard.csv", index=False, float_format="%.6g")
    keep = ["task", "model", "fold", "metric", "value", "n_train", "n_test", "n_skipped", "epochs_run", "best_epoch", "stop_reason", "wall_seconds"]
    pd.DataFrame(cells)[keep].to_csv(out / "cells.csv", index=False, float_format="%.6g")
    (out / "leaderboard.md").write_text(leaderboard_markdown(board, title, read_failures(dirs)) + "\n")
    (out / "charts").mkdir(exist_ok=True)
    for task, group in board.groupby("task"):
        bar_chart(group, out / "charts" / f"{task}.png")
    return board
