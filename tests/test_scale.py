"""Out of core: memory-mapped cache shards, the sharded view, shard-aware shuffling, streaming and
sharded graph building, merging caches, and training on a memory-mapped store."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

from crystalgnn import cli
from crystalgnn.config import DataConfig, GraphConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.data.prepared import NoLoneBatchSampler, ShardShuffleSampler, ShuffleSampler, _IndexDataset
from crystalgnn.graphs.cache import GraphCache, build_graphs
from crystalgnn.graphs.sharded import ShardedGraphStore
from crystalgnn.graphs.store import GraphStore
from crystalgnn.io import load_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.training.run import train

BATCH_FIELDS = ("z", "pos", "edge_index", "edge_dist", "edge_vec", "batch", "ptr", "graph_index")


def _same_batches(a, b) -> None:
    for name in BATCH_FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, msg=name)


@pytest.fixture
def built(elasticity_slice, tmp_path):
    """The 80 crystals built into a cache of 10-crystal shards: (dataset, cache, view, in-memory store)."""
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cache = tmp_path / "cache"
    view, ok, problems = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False,
                                      store="mmap", shard_size=10)
    memory, ok2, _ = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False, store="memory")
    assert ok.all() and ok2.all() and not problems
    return data, cache, view, memory


def test_the_view_reads_what_the_in_memory_store_holds(built):
    data, cache, view, memory = built
    assert isinstance(view, ShardedGraphStore) and isinstance(memory, GraphStore)
    assert len(view.shards) == 8 and len(view) == len(memory) == 80
    for name in ("atomic_numbers", "positions", "lattices", "node_ptr", "edge_ptr", "num_atoms", "num_edges", "keys"):
        np.testing.assert_array_equal(getattr(view, name), getattr(memory, name), err_msg=name)
    rng = np.random.default_rng(0)
    for _ in range(5):  # batches across shards, in any order
        idx = rng.choice(80, size=17, replace=False)
        _same_batches(view.collate(idx, data.targets[idx]), memory.collate(idx, data.targets[idx]))
    _same_batches(view.collate(np.arange(10, 20)), memory.collate(np.arange(10, 20)))  # within one shard
    sub = view.take([5, 61, 12])
    np.testing.assert_array_equal(sub.graph(1).edge_distances, memory.graph(61).edge_distances)
    _same_batches(sub.collate([2, 0]), memory.take([5, 61, 12]).collate([2, 0]))
    np.testing.assert_array_equal(view.materialize().edge_index, memory.edge_index)
    # at most max_open shards mapped at once, however many a pass reads
    small = ShardedGraphStore(view.shards, view.shard, view.row, max_open=2)
    for start in range(0, 80, 9):
        small.collate(np.arange(start, min(start + 9, 80)))
        assert len(small._open) <= 2
    # a pickled view (a spawned DataLoader worker) carries no arrays and maps again on the other side
    blob = pickle.dumps(view)
    assert len(blob) < 40_000  # the 80 crystals' graphs are ~0.5 MB
    _same_batches(pickle.loads(blob).collate(np.arange(30, 50)), memory.collate(np.arange(30, 50)))


def test_building_streams_one_shard_at_a_time(elasticity_slice, tmp_path, monkeypatch):
    data = load_dataset(elasticity_slice, targets=[])
    written: list[int] = []
    real_add = GraphCache.add
    monkeypatch.setattr(GraphCache, "add", lambda self, store: written.append(len(store)) or real_add(self, store))
    view, ok, _ = build_graphs(data.ids, data.sources, GraphConfig(), tmp_path, workers=1, progress=False, store="mmap",
                               shard_size=16)
    assert written == [16] * 5 and ok.all()
    shards = [p for p in tmp_path.rglob("shard-*") if p.is_dir()]
    assert len(shards) == 5 and all(np.load(f, mmap_mode="r").dtype != object for s in shards for f in s.glob("*.npy"))


def test_auto_picks_the_memory_mapped_view_under_a_small_memory_budget(built, monkeypatch):
    data, cache, _, _ = built
    import crystalgnn.paths as paths

    monkeypatch.setattr(paths, "memory_budget", lambda: 1e5)  # 100 kB: the graphs do not fit a quarter of it
    store, _, _ = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False, store="auto")
    assert isinstance(store, ShardedGraphStore)
    monkeypatch.setattr(paths, "memory_budget", lambda: 1e12)
    store, _, _ = build_graphs(data.ids, data.sources, GraphConfig(), cache, workers=1, progress=False, store="auto")
    assert isinstance(store, GraphStore)


def test_shard_shuffle_sees_every_crystal_once_and_reads_a_few_shards_per_batch():
    shard_of = np.repeat(np.arange(20), 50)  # 1,000 crystals in 20 shards
    dataset = _IndexDataset(np.arange(1000))
    sampler = ShardShuffleSampler(dataset, shard_of, window=4)
    torch.manual_seed(0)
    epochs = [list(NoLoneBatchSampler(sampler, 32)) for _ in range(2)]
    for batches in epochs:
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))  # every crystal exactly once
        assert max(len(np.unique(shard_of[b])) for b in batches) <= 2 * 4  # a window's shards, or two windows' at the seam
        assert min(len(b) for b in batches) > 1
    assert epochs[0] != epochs[1]
    # the interrupted run's random state replays the same epoch (resume)
    state = torch.get_rng_state()
    again = list(NoLoneBatchSampler(sampler, 32))
    sampler.restore_before_next_epoch(state)
    assert list(NoLoneBatchSampler(sampler, 32)) == again
    # every shard in one window: exactly the in-memory store's order
    one_window = ShardShuffleSampler(dataset, shard_of, window=20)
    torch.manual_seed(1)
    a = list(one_window)
    torch.manual_seed(1)
    assert a == list(ShuffleSampler(dataset))


def _cfg(store: str) -> RunConfig:
    return RunConfig(data=DataConfig(transform="log10"), model=ModelConfig(arch=CGCNNConfig(atom_fea_len=16, n_conv=1, h_fea_len=16)),
                     train=TrainConfig(epochs=2, batch_size=16, lr=3e-3, threads=1, graph_store=store))


def test_training_on_the_memory_mapped_store(built, tmp_path):
    data, cache, _, _ = built
    # 8 shards of 10: the shard-aware epoch; finite numbers, every split predicted
    mapped = train(data, tmp_path / "mapped", _cfg("mmap"), cache_dir=cache, progress=False, workers=1)
    assert np.isfinite(mapped.metrics["test"]["target1"]["mae"])
    assert json.loads((tmp_path / "mapped" / "config.json").read_text())["train"]["graph_store"] == "mmap"
    # DataLoader worker processes collate from the same maps: the numbers of the run without workers
    # are not expected (workers draw their seed from the generator), a finished run with every split is
    cfg = _cfg("mmap")
    workers = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_workers=2))
    forked = train(data, tmp_path / "workers", workers, cache_dir=cache, progress=False, workers=1)
    assert np.isfinite(forked.metrics["test"]["target1"]["mae"]) and set(forked.metrics) >= {"train", "val", "test"}
    # one shard (the default shard size): one window, so the same epochs and numbers as in memory
    whole = tmp_path / "whole"
    build_graphs(data.ids, data.sources, GraphConfig(), whole, workers=1, progress=False)
    in_memory = train(data, tmp_path / "memory", _cfg("memory"), cache_dir=whole, progress=False, workers=1)
    one_shard = train(data, tmp_path / "one-shard", _cfg("mmap"), cache_dir=whole, progress=False, workers=1)
    assert one_shard.metrics["test"] == in_memory.metrics["test"]


def test_sharded_building_and_merge_give_the_whole_cache(elasticity_slice, tmp_path, monkeypatch, capsys):
    for i in range(3):
        assert cli.main(["graphs", str(elasticity_slice), "--shard", f"{i}/3", "--cache-dir", str(tmp_path / f"part{i}"),
                         "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "slice 0/3: items 0..25 of 80" in out and "26 graph(s) built" in out and "slice 2/3: items 53..79" in out
    merged = tmp_path / "merged"
    assert cli.main(["graphs", "merge", str(merged), *(str(tmp_path / f"part{i}") for i in range(3)), str(tmp_path / "part1")]) == 0
    assert "80 graph(s) in 3 shard(s) added to 4 graph folder(s), 27 already there" in capsys.readouterr().out
    # the merged cache holds every graph: a warm build builds nothing and equals one unsharded build
    import crystalgnn.graphs.cache as cache_mod

    data = load_dataset(elasticity_slice, targets=[])
    whole, _, _ = build_graphs(data.ids, data.sources, GraphConfig(), tmp_path / "whole", workers=1, progress=False)
    monkeypatch.setattr(cache_mod, "build_one", lambda *a: pytest.fail("a graph missing from the merged cache"))
    found, ok, _ = build_graphs(data.ids, data.sources, GraphConfig(), merged, workers=1, progress=False)
    assert ok.all()
    for name in ("edge_index", "edge_distances", "node_ptr", "keys"):
        np.testing.assert_array_equal(getattr(found, name), getattr(whole, name))
    monkeypatch.undo()
    # ALIGNN's settings are another cache folder
    assert cli.main(["graphs", str(elasticity_slice), "--model", "alignn", "--cache-dir", str(merged), "--workers", "1", "--quiet"]) == 0
    assert "80 graph(s) built" in capsys.readouterr().out and len(list(merged.glob("graphs-*"))) == 2


def test_graphs_command_lists_unusable_items(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "good.cif").write_text(_a_cif())
    (folder / "bad.cif").write_text("data_x\n_this is not a cif\n")
    (folder / "id_prop.csv").write_text("good,1.0\nbad,2.0\ngone,3.0\n")  # gone.cif does not exist
    monkeypatch.chdir(tmp_path)
    assert cli.main(["graphs", str(folder), "--cache-dir", str(tmp_path / "c"), "--workers", "1", "--quiet"]) == 0
    assert "1 graph(s) built, 0 already cached, 1 unusable, 1 left out by the reader" in capsys.readouterr().out
    report = (tmp_path / "graph_problems.csv").read_text()
    assert report.startswith("id,stage,reason") and "bad" in report and 'gone,read,"structure file not found' in report


def _a_cif() -> str:
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")


def test_an_old_npz_shard_is_still_read(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[])
    memory, _, _ = build_graphs(data.ids[:12], data.sources[:12], GraphConfig(), None, workers=1, progress=False)
    folder = GraphCache(GraphConfig(), tmp_path).folder
    folder.mkdir(parents=True)
    memory.save(folder / "shard-old.npz")
    np.save(folder / "shard-old.keys.npy", memory.keys)
    for mode in ("memory", "mmap"):
        found, ok, _ = build_graphs(data.ids[:12], data.sources[:12], GraphConfig(), tmp_path, workers=1, progress=False, store=mode)
        assert ok.all()
        _same_batches(found.collate(np.arange(12)), memory.collate(np.arange(12)))


def test_memory_budget_reads_the_cgroup_limit(tmp_path, monkeypatch):
    import crystalgnn.paths as paths

    limit, usage = tmp_path / "memory.limit_in_bytes", tmp_path / "memory.usage_in_bytes"
    limit.write_text(str(3 * 2**30))
    usage.write_text(str(2**30))
    monkeypatch.setattr(paths, "_cgroup_memory_files", lambda: [(limit, usage)])
    assert paths.memory_budget() == 2 * 2**30  # the group's limit less what it uses, below the machine's memory
    limit.write_text("max")  # v2 spelling of no limit: the machine's available memory
    import psutil

    assert paths.memory_budget() == pytest.approx(psutil.virtual_memory().available, rel=0.1)


# ----------------------------------------------------------------- per-crystal bookkeeping
def test_source_list_gives_back_the_sources_it_was_given(elasticity_slice, tmp_path):
    """The compact columns of a file reader give back equal sources, in order, through indexing,
    slices, take, keys and pickling; sources that are not plain files are kept whole."""
    from crystalgnn.structures.source import SourceList, StructureSource, source_keys

    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    assert isinstance(data.sources, SourceList) and not data.sources._others
    plain = [StructureSource(key=s.key, path=s.path, fmt=s.fmt) for s in data.sources]
    text = StructureSource(key="not-a-digest", text="data_x", fmt="cif")
    odd_path = StructureSource(key=plain[0].key, path="relative//x.cif", fmt="poscar")
    mixed = SourceList([*plain[:5], text, odd_path, *plain[5:]])
    expected = [*plain[:5], text, odd_path, *plain[5:]]
    assert list(mixed) == expected and mixed == expected and len(mixed) == len(expected)
    assert mixed[-1] == expected[-1] and mixed[5] is text and mixed[3:9] == expected[3:9]
    assert list(mixed.take([7, 0, 5])) == [expected[7], expected[0], text]
    assert list(source_keys(mixed)) == [s.key for s in expected]
    assert pickle.loads(pickle.dumps(mixed)) == expected
    with pytest.raises(IndexError):
        mixed[len(expected)]
    # a subset keeps the compact form
    assert isinstance(data.subset([3, 1]).sources, SourceList) and data.subset([3, 1]).sources == [plain[3], plain[1]]


def test_file_sources_cost_tens_of_bytes_each(tmp_path):
    """100,000 file sources held as columns: well under 100 bytes each (as objects ~280)."""
    import tracemalloc

    from crystalgnn.structures.source import SourceList, StructureSource, bytes_key

    folder = str(tmp_path / "structures")
    made = [StructureSource(key=bytes_key(str(i).encode()), path=f"{folder}/mp-{i}.cif") for i in range(100_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    compact = SourceList(made)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held / len(made) < 60, f"{held / len(made):.0f} bytes per source"
    assert compact[54_321] == made[54_321]


def test_cache_index_finds_a_key_in_the_first_shard_that_holds_it(built):
    """The one-table key search: every key found where a shard-by-shard search finds it, a key in
    two shards in the first, a key not cached nowhere."""
    data, cache, view, memory = built
    graphs = GraphCache(GraphConfig(), cache, shard_size=10)
    again = memory.take(np.array([3, 25]))  # two graphs written again, as a later shard
    graphs.add(again)
    wanted = [data.sources[25].key, "f" * 40, data.sources[3].key, data.sources[70].key]
    shards, shard_of, row_of = graphs.index(wanted)
    assert shard_of[1] == -1 and (shard_of[[0, 2, 3]] >= 0).all()
    for k in (0, 2, 3):  # the shard named holds that key at that row, and it is the first such shard
        keys = np.load(GraphCache._keys_file(shards[shard_of[k]]))
        assert keys[row_of[k]].decode() == wanted[k]
    first_holder = sorted(p.name for p in (cache.glob("graphs-*/*.keys.npy"))
                          if wanted[0].encode() in np.load(p))[0]
    assert GraphCache._keys_file(shards[shard_of[0]]).name == first_holder


def test_element_check_of_a_mapped_view_equals_the_in_memory_one(built):
    """Items with elements beyond the atom table are found shard by shard on a mapped view (its
    atoms are not gathered) exactly as on the in-memory store."""
    from crystalgnn.data.prepared import unsupported_element_problems

    data, cache, view, memory = built
    order = np.random.default_rng(0).permutation(len(view))[:50]  # a view over part of the shards, shuffled
    part_view, part_memory = view.take(order), memory.take(order)
    ids = [data.ids[i] for i in order]
    on_view = unsupported_element_problems(ids, part_view, max_z=30)
    in_memory = unsupported_element_problems(ids, part_memory, max_z=30)
    assert on_view and on_view == in_memory
    assert "atomic_numbers" not in part_view._gathered
