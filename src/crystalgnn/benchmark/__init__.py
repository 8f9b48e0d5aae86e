"""MatBench-style and UnconvBench benchmarks for every model: tasks as data
(:mod:`.tasks`), their datasets (:mod:`.sources`, :mod:`.readers`), a resumable, shardable runner
(:mod:`.runner`) and leaderboards (:mod:`.leaderboard`). CLI: ``crystalgnn benchmark``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from crystalgnn.benchmark.leaderboard import collect
from crystalgnn.benchmark.runner import MODELS, Budget, run_benchmark
from crystalgnn.benchmark.tasks import FoldProtocol, Task, builtin_tasks, get_task, get_tasks, load_task_file

PROFILES_FILE = Path(__file__).with_name("profiles.toml")

__all__ = ["MODELS", "Budget", "FoldProtocol", "Task", "builtin_tasks", "collect", "get_task", "get_tasks", "load_task_file",
           "profile", "profiles", "run_benchmark"]


def profiles() -> dict[str, dict[str, Any]]:
    return tomllib.loads(PROFILES_FILE.read_text())["profiles"]


def profile(name: str) -> dict[str, Any]:
    known = profiles()
    if name not in known:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(known)}")
    return known[name]
