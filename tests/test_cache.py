"""graphmm.cache and MultimodalGraphBuilder.use_cache: content keys, atomic and safe
storage, hits across processes and epochs, invalidation by config and fitted state."""

from __future__ import annotations

import pickle
from collections import Counter

import pytest
import torch

from graphmm.cache import TENSOR_OVERHEAD_BYTES, FeatureCache, fingerprint
from graphmm.data import Sample
from graphmm.graphs import (
    AudioGraphBuilder,
    CrossModalBuilder,
    ImageGraphBuilder,
    MultimodalGraphBuilder,
)


# ---------------------------------------------------------------- fingerprint
def test_fingerprint_is_a_content_key():
    a = torch.arange(6.0).reshape(2, 3)
    assert fingerprint(a) == fingerprint(a.clone()) == fingerprint(a.t().contiguous().t())
    assert fingerprint(a) != fingerprint(a.double())  # dtype
    assert fingerprint(a) != fingerprint(a.reshape(3, 2))  # shape
    assert fingerprint({"x": 1, "y": [2.0, None]}) == fingerprint({"y": [2.0, None], "x": 1})  # key order
    assert fingerprint(1) != fingerprint(True) != fingerprint(1.0) != fingerprint("1")
    assert fingerprint((1, 2)) != fingerprint([1, 2]) != fingerprint([[1, 2]])
    with pytest.raises(TypeError, match="plain values"):
        fingerprint(object())


# ---------------------------------------------------------------- FeatureCache
def test_cache_round_trip_is_atomic_and_namespaced(tmp_path):
    cache = FeatureCache(tmp_path, key_parts={"n_mels": 40})
    key = fingerprint("clip-1")
    assert cache.get(key) is None and key not in cache
    cache.put(key, {"mel": torch.ones(3, 40), "edges": [["frame", "next", "frame"], torch.arange(2)]})
    assert key in cache
    # another process (a fresh object) with the same settings reads it from disk
    again = FeatureCache(tmp_path, key_parts={"n_mels": 40})
    got = again.get(key)
    assert torch.equal(got["mel"], torch.ones(3, 40)) and again.stats == {"hits": 1, "misses": 0, "writes": 0}
    # other settings: another folder, so a miss
    assert FeatureCache(tmp_path, key_parts={"n_mels": 20}).get(key) is None
    # no temporary files are left behind, and the folder says what it holds
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert '"n_mels": 40' in (cache.folder / "meta.json").read_text()
    with pytest.raises(ValueError, match="fingerprint"):
        cache.path("../escape")


def test_cache_treats_corrupt_and_unsafe_entries_as_misses(tmp_path, caplog):
    cache = FeatureCache(tmp_path, key_parts="v1", memory=False)
    torn, unsafe = fingerprint("torn"), fingerprint("unsafe")
    cache.put(torn, torch.zeros(4))
    cache.path(torn).write_bytes(cache.path(torn).read_bytes()[:10])  # a torn file
    # a pickled object that weights_only loading refuses (it could run code)
    torch.save({"obj": Counter(a=1)}, cache.path(torn).parent / "x.pt")
    cache.path(unsafe).parent.mkdir(parents=True, exist_ok=True)
    (cache.path(torn).parent / "x.pt").rename(cache.path(unsafe))
    assert cache.get(torn) is None and cache.get(unsafe) is None
    assert "unreadable" in caplog.text
    calls = []
    value = cache.get_or_compute(torn, lambda: calls.append(1) or torch.ones(2))
    assert calls == [1] and torch.equal(cache.get(torn), torch.ones(2)) and torch.equal(value, torch.ones(2))


def test_cache_pickles_without_its_memory(tmp_path):
    cache = FeatureCache(tmp_path, key_parts=1)
    cache.put(fingerprint(0), torch.zeros(1000))
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._mem == {} and clone.namespace == cache.namespace and clone.stats["writes"] == 0
    assert torch.equal(clone.get(fingerprint(0)), torch.zeros(1000))  # read back from disk


def test_cache_fields_and_merge_fill_an_entry_over_time(tmp_path):
    """What the CLIP builders rely on: an entry is a miss until it holds every field
    asked for, and a merged put adds fields without losing the old ones (on disk too)."""
    key = fingerprint("image-1")
    cache = FeatureCache(tmp_path, key_parts={"layer": -1})
    cache.put(key, {"tokens": torch.ones(4, 8)})
    assert cache.get(key, ("tokens",)) is not None
    assert cache.get(key, ("tokens", "emb")) is None
    cache.put(key, {"emb": torch.zeros(4, 2)}, merge=True)
    fresh = FeatureCache(tmp_path, key_parts={"layer": -1}, memory=False)  # a new run, no memory layer
    got = fresh.get(key, ("tokens", "emb"))
    assert torch.equal(got["tokens"], torch.ones(4, 8)) and torch.equal(got["emb"], torch.zeros(4, 2))
    fresh.put(key, {"emb": torch.full((4, 2), 3.0)}, merge=True)  # merges over the disk entry
    assert set(fresh.get(key)) == {"tokens", "emb"} and float(fresh.get(key)["emb"][0, 0]) == 3.0
    cache.put(key, {"emb": torch.zeros(1)})  # without merge: replaced
    assert cache.get(key, ("tokens",)) is None
    assert cache.info() == {"hits": 1, "misses": 2, "writes": 3, "folder": str(cache.folder), "in_memory": 1}


def test_cache_memory_layer_is_bounded_and_can_live_without_disk(tmp_path):
    entry = 4096 + TENSOR_OVERHEAD_BYTES  # a 4 KiB tensor, with what the tensor object costs
    cache = FeatureCache(None, key_parts="v", memory_mb=3 * entry / 2**20)  # room for three
    keys = [fingerprint(i) for i in range(5)]
    for k in keys[:3]:
        cache.put(k, torch.zeros(1024))
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], torch.zeros(1024))  # drops keys[1], the least recently used
    assert keys[1] not in cache and keys[0] in cache and keys[3] in cache
    cache.put(keys[4], torch.zeros(4096))  # larger than the whole budget: not kept
    assert keys[4] not in cache and cache._used == 3 * entry
    assert cache.folder is None and sorted(cache.keys()) == sorted([keys[2], keys[0], keys[3]])
    assert repr(cache).startswith("FeatureCache(root=None, namespace=")
    with pytest.raises(ValueError, match="memory only"):
        FeatureCache(None, memory=False)


def test_cache_stores_views_compactly(tmp_path):
    """A row of a batch output is stored alone, not with the whole batch behind it."""
    batch = torch.randn(64, 256)
    cache = FeatureCache(tmp_path, key_parts=0, memory_mb=1.0)
    key = fingerprint("row")
    cache.put(key, {"tokens": batch[3]})
    assert cache.path(key).stat().st_size < 64 * 256 * 4 // 8
    assert torch.equal(FeatureCache(tmp_path, key_parts=0).get(key)["tokens"], batch[3])
    assert cache._used == 256 * 4 + TENSOR_OVERHEAD_BYTES
    assert cache.get(key)["tokens"].untyped_storage().nbytes() == 256 * 4


# ---------------------------------------------------------------- the builder
def _samples(n: int = 6) -> list[Sample]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        out.append(Sample(
            text=["a seven", "the digit nine", "hello"][i % 3],  # repeated texts share one entry
            image=torch.rand(1, 12, 12, generator=gen) if i != 2 else None,
            audio=0.1 * torch.randn(3000 + 256 * i, generator=gen) if i != 4 else None,
            sample_rate=8000,
            label=i % 3,
        ))
    return out


def _builder(**audio) -> MultimodalGraphBuilder:
    return MultimodalGraphBuilder(
        image=ImageGraphBuilder(patch_size=4, stride=2, neighbors=8, knn=3),
        audio=AudioGraphBuilder(window=2, **audio),
        cross=CrossModalBuilder(summary=True, align=[["frame", "word"]]),
    )


def _count_builds(builder: MultimodalGraphBuilder, monkeypatch) -> Counter:
    """Count, per modality, the inputs that the feature functions (each builder's build) see."""
    seen: Counter = Counter()
    for name in ("text", "image", "audio"):
        b = getattr(builder, name)
        original = b.build

        def counted(inputs, _original=original, _name=name):
            seen[_name] += len(inputs)
            return _original(inputs)

        monkeypatch.setattr(b, "build", counted)
    return seen


def _assert_same_graph(g1, g2) -> None:
    assert g1.canonical_etypes == g2.canonical_etypes
    for nt in g1.ntypes:
        assert torch.equal(g1.batch_num_nodes(nt), g2.batch_num_nodes(nt))
        assert set(g1.nodes[nt].data) == set(g2.nodes[nt].data)
        for k, v in g1.nodes[nt].data.items():
            assert torch.equal(v, g2.nodes[nt].data[k]), (nt, k)
    for r in g1.canonical_etypes:
        assert torch.equal(torch.stack(g1.edges(etype=r)), torch.stack(g2.edges(etype=r))), r
        assert torch.equal(g1.batch_num_edges(r), g2.batch_num_edges(r))


def test_builder_cache_hits_skip_the_feature_functions(tmp_path, monkeypatch):
    samples = _samples()
    reference = _builder().fit(samples)
    first = _builder().fit(samples).use_cache(tmp_path)
    built = _count_builds(first, monkeypatch)
    g = first.batch(samples)
    _assert_same_graph(g, reference.batch(samples))
    # every distinct input built once, in one pass per modality
    assert built == Counter(text=3, image=5, audio=5)

    # a later epoch (reordered batches) in the same process: all from memory
    built.clear()
    _assert_same_graph(first.batch(samples[::-1]), reference.batch(samples[::-1]))
    assert sum(built.values()) == 0

    # another sweep job: a fresh builder with the same settings and training data
    second = _builder().fit(samples).use_cache(tmp_path)
    built = _count_builds(second, monkeypatch)
    _assert_same_graph(second.batch(samples[1:4]), reference.batch(samples[1:4]))
    assert sum(built.values()) == 0
    assert second.cache_stats()["frame"] == {"hits": 3, "misses": 0, "writes": 0}


def test_builder_cache_memory_is_bounded_and_the_disk_serves_the_rest(tmp_path, monkeypatch):
    """``use_cache(memory_mb=...)`` bounds what each process keeps (split over the
    modalities); entries dropped from memory are read back from disk, not rebuilt."""
    samples = _samples()
    reference = _builder().fit(samples)
    builder = _builder().fit(samples).use_cache(tmp_path, memory_mb=0.0)
    built = _count_builds(builder, monkeypatch)
    builder.batch(samples)
    assert all(len(c._mem) == 0 for c in builder._caches.values())  # nothing kept in memory
    built.clear()
    _assert_same_graph(builder.batch(samples), reference.batch(samples))
    assert sum(built.values()) == 0
    assert builder.cache_stats()["frame"]["hits"] == sum(s.audio is not None for s in samples)
    bounded = _builder().fit(samples).use_cache(tmp_path, memory_mb=3.0)
    assert {c.memory_bytes for c in bounded._caches.values()} == {2**20}  # 3 MiB over 3 modalities
    assert all(c.memory_bytes is None for c in _builder().fit(samples).use_cache(tmp_path, memory_mb=None)._caches.values())
    with pytest.raises(ValueError, match="memory_mb must be >= 0"):
        builder.use_cache(tmp_path, memory_mb=-1)


def test_builder_cache_is_invalidated_by_config_and_fitted_state(tmp_path, monkeypatch):
    samples = _samples()
    _builder().fit(samples).use_cache(tmp_path).batch(samples)

    # a config change (fewer mel bands): the audio features are recomputed, the
    # text and image features, whose settings did not change, are reused
    changed = _builder(n_mels=20).fit(samples).use_cache(tmp_path)
    built = _count_builds(changed, monkeypatch)
    g = changed.batch(samples)
    assert g.nodes["frame"].data["mel"].shape[1] == 20
    assert built == Counter(audio=5)

    # another training set: another vocabulary and other audio statistics
    refit = _builder().fit(samples[:2]).use_cache(tmp_path)
    built = _count_builds(refit, monkeypatch)
    refit.batch(samples)
    assert built["text"] == 3 and built["audio"] == 5 and built["image"] == 0

    # fitting after use_cache re-keys the cache too
    late = _builder().use_cache(tmp_path)
    unfitted_key = late._caches["word"].namespace
    late.fit(samples)
    assert late._caches["word"].namespace != unfitted_key
    assert late._caches["word"].namespace == _builder().fit(samples).use_cache(tmp_path)._caches["word"].namespace


def test_builder_cache_mixes_hits_and_misses_and_can_be_switched_off(tmp_path, monkeypatch):
    samples = _samples()
    reference = _builder().fit(samples)
    b = _builder().fit(samples).use_cache(tmp_path)
    b.batch(samples[:3])
    built = _count_builds(b, monkeypatch)
    _assert_same_graph(b.batch(samples), reference.batch(samples))
    assert built == Counter(image=3, audio=2)  # samples 3-5 (4 has no audio; every text seen)
    b.use_cache(None)
    assert b.cache_stats() == {}
    built.clear()
    b.batch(samples[:1])
    assert built == Counter(text=1, image=1, audio=1)


def test_builder_with_cache_pickles_for_dataloader_workers(tmp_path):
    samples = _samples()
    b = _builder().fit(samples).use_cache(tmp_path)
    g = b.batch(samples)
    clone = pickle.loads(pickle.dumps(b))
    _assert_same_graph(clone.batch(samples), g)
    assert clone.cache_stats()["patch"] == {"hits": 5, "misses": 0, "writes": 0}  # read back from disk


def test_train_with_cache_dir_gives_the_same_run(make_cfg, tmp_path) -> None:
    import json

    from graphmm.train import train

    common = ["debug=fast", "data.modalities=[image,audio]"]
    plain = train(make_cfg(common))
    cache = tmp_path / "feature-cache"
    cached = train(make_cfg([*common, f"trainer.cache_dir={cache}", f"output_dir={tmp_path / 'cached'}"]))
    assert any(p.is_file() for p in cache.rglob("*")), "the run wrote nothing into trainer.cache_dir"
    for key in ("val/acc", "test/acc", "test/loss"):
        assert cached[key] == plain[key]
    again = train(make_cfg([*common, f"trainer.cache_dir={cache}", f"output_dir={tmp_path / 'again'}"]))
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test/acc"] == again["test/acc"] == plain["test/acc"]
