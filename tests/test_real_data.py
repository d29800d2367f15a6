"""Loaders of real datasets on disk: ``textcls``, ``audio_folder``, ``image_arrays``,
``image_folder`` and ``avdigits``.

The first part writes small synthetic datasets under ``tmp_path`` (every layout and
every bad-file case), so it runs anywhere. The last part checks the real datasets in
``../shared/data`` (counts, splits, known quirks) and skips when that folder is absent,
as it is in a fresh clone.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from PIL import Image

from graphmm.config import validate_config
from graphmm.data import (
    AudioRecord,
    DataSplits,
    load_audio_folder,
    load_avdigits,
    load_image_arrays,
    load_image_folder,
    load_textcls,
    read_audio_records,
    read_image_arrays,
)
from graphmm.data.io import class_index, read_text_lines, stratified_holdout
from graphmm.train import load_splits, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"real datasets not found at {SHARED} (the shared data folder beside the repository; absent in a fresh clone)",
)
SR = 8000
EXPERIMENTS = ("mr", "trec", "sst1", "sst2", "webkb", "fsdd", "mnist", "avdigits")


# ---------------------------------------------------------------- helpers
def _textgcn(
    root: Path,
    name: str,
    rows: list[tuple[str, str]],
    docs: list[str],
    *,
    clean: list[str] | None = None,
    corpus_bytes: bytes | None = None,
    labels_end: str = "\n",
) -> Path:
    """A TextGCN-layout corpus: ``rows[i] = (split, label)`` and ``docs[i]``."""
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    lines = [f"{i}\t{split}\t{label}" for i, (split, label) in enumerate(rows)]
    (root / f"{name}.txt").write_text("\n".join(lines) + labels_end)
    (root / "corpus" / f"{name}.txt").write_bytes(
        corpus_bytes if corpus_bytes is not None else "".join(d + "\n" for d in docs).encode()
    )
    if clean is not None:
        (root / "corpus" / f"{name}.clean.txt").write_text("".join(d + "\n" for d in clean))
    return root


def _toy_text(root: Path, name: str = "toy", per_class: int = 10, **kw) -> Path:
    """3 classes (``neg``, ``neu``, ``pos``); per class ``per_class`` train and 2 test."""
    rows, docs = [], []
    for split, n in (("train", per_class), ("test", 2)):
        for k in range(n):
            for label in ("pos", "neg", "neu"):
                rows.append((split, label))
                docs.append(f"  a {label} review number {k} of {split}  ")
    return _textgcn(root, name, rows, docs, **kw)


def _wav(path: Path, label: int = 0, n: int = 800, sr: int = SR, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n, dtype=np.float32) / sr
    sf.write(path, (0.5 * np.sin(2 * np.pi * (300 + 100 * label) * t)).astype(np.float32), sr, subtype=subtype)
    return path


def _fsdd(root: Path, digits=(0, 1, 2), speakers=("ann", "bob"), takes: int = 8, n: int = 800) -> Path:
    for d in digits:
        for s in speakers:
            for k in range(takes):
                _wav(root / f"{d}_{s}_{k}.wav", d, n)
    return root


def _digit_images(labels: np.ndarray, h: int = 8) -> np.ndarray:
    """uint8 (N, h, h) whose pixel (0, 0) is the label and (0, 1) the index mod 256."""
    out = np.zeros((len(labels), h, h), np.uint8)
    out[:, 0, 0] = labels
    out[:, 0, 1] = np.arange(len(labels)) % 256
    return out


def _npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _png(path: Path, value: int, size=(6, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def _ids(samples) -> list[str]:
    return [s.id for s in samples]


# ---------------------------------------------------------------- shared helpers (io)
def test_read_text_lines_numbers_lines_like_an_editor(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"one\r\ntwo\x0cstill two\r\n\r\n")
    assert read_text_lines(f) == ["one", "two\x0cstill two", ""]
    f.write_bytes(b"one\ntwo")  # no final newline
    assert read_text_lines(f) == ["one", "two"]
    f.write_bytes(b"")
    assert read_text_lines(f) == []


def test_class_index_sorts_names_and_keeps_integer_ids():
    assert class_index(["b", "a", "b"]) == (["a", "b"], {"a": 0, "b": 1})
    assert class_index(["10", "2"]) == ([str(i) for i in range(11)], {"10": 10, "2": 2})


def test_stratified_holdout_has_exact_size_per_class_shares_and_a_seed():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    a = stratified_holdout(labels, 10, seed=1)
    assert a.sum() == 10 and np.bincount(labels[a], minlength=4).tolist() == [4, 3, 2, 1]
    assert np.array_equal(a, stratified_holdout(labels, 10, seed=1))
    assert not np.array_equal(a, stratified_holdout(labels, 10, seed=2))
    # a class never loses all its items
    small = stratified_holdout(np.array([0, 0, 0, 1]), 3, seed=0)
    assert not small[3] and small.sum() == 2
    with pytest.raises(ValueError, match="cannot hold out 5 of 4"):
        stratified_holdout(np.zeros(4), 5, seed=0)


# ---------------------------------------------------------------- textcls
def test_textcls_keeps_the_file_split_and_carves_a_stratified_seeded_val(tmp_path):
    root = _toy_text(tmp_path)
    s = load_textcls(root, "toy", val_fraction=0.2, seed=3)
    assert isinstance(s, DataSplits) and s.classes == ["neg", "neu", "pos"] and s.skipped == 0
    assert s.sizes() == {"train": 24, "val": 6, "test": 6}
    assert Counter(x.target for x in s["val"]) == {"neg": 2, "neu": 2, "pos": 2}
    assert all(x.label == s.label_to_id[x.target] for k in s for x in s[k])
    assert all("of test" in x.text for x in s["test"]) and all("of train" in x.text for x in s["val"])
    by_id = {x.id: x for k in s for x in s[k]}
    assert by_id["toy/1"].text == "a pos review number 0 of train"  # stripped; ids count lines from 1
    assert by_id["toy/36"].text == "a neu review number 1 of test" and by_id["toy/36"].target == "neu"
    every = sorted(int(x.id.split("/")[1]) for k in s for x in s[k])
    assert every == list(range(1, 37))
    assert all(_ids(s[k]) == sorted(_ids(s[k]), key=lambda i: int(i.split("/")[1])) for k in s)  # file order
    assert _ids(load_textcls(root, "toy", val_fraction=0.2, seed=3)["val"]) == _ids(s["val"])
    assert _ids(load_textcls(root, "toy", val_fraction=0.2, seed=4)["val"]) != _ids(s["val"])


def test_textcls_reads_clean_or_raw_corpus_and_finds_names_case_insensitively(tmp_path):
    rows = [("train", "A"), ("train", "B"), ("train", "A"), ("train", "B"), ("test", "A"), ("test", "B")]
    raw = [f"Raw Doc {i}." for i in range(6)]
    _textgcn(tmp_path, "TREC", rows, raw, clean=[f"clean doc {i}" for i in range(6)])
    assert load_textcls(tmp_path, "trec", val_fraction=0.5)["test"][0].text == "clean doc 4"
    assert load_textcls(tmp_path, "TREC", clean=False, val_fraction=0.5)["test"][0].text == "Raw Doc 4."
    assert load_textcls(tmp_path, "trec", clean=True, val_fraction=0.5)["test"][0].id == "trec/5"
    (tmp_path / "corpus" / "TREC.clean.txt").unlink()
    assert load_textcls(tmp_path, "trec", clean="auto", val_fraction=0.5)["test"][0].text == "Raw Doc 4."
    with pytest.raises(FileNotFoundError, match=r"TREC\.clean\.txt.*does not exist; TREC\.txt exists: set clean=False"):
        load_textcls(tmp_path, "trec", clean=True)
    with pytest.raises(FileNotFoundError, match=r"no corpus 'nope'.*corpora there: \['TREC'\]"):
        load_textcls(tmp_path, "nope")
    with pytest.raises(FileNotFoundError, match="text data folder .* does not exist"):
        load_textcls(tmp_path / "missing", "trec")
    with pytest.raises(ValueError, match="clean must be True, False or 'auto'"):
        load_textcls(tmp_path, "trec", clean="yes")


def test_textcls_mr_quirk_a_trailing_extra_corpus_line_is_ignored(tmp_path):
    """MR: the labels file has no final newline, the corpus ends every line with \\r\\n,
    so split at b"\\n" the corpus has one line more than there are documents. A stray
    blank last line is the same case."""
    rows = [("train", "1"), ("train", "0")] * 4 + [("test", "1"), ("test", "0")]
    docs = [f"review {i} . " for i in range(10)]
    crlf = "".join(d + "\r\n" for d in docs).encode()
    _textgcn(tmp_path, "mr", rows, docs, corpus_bytes=crlf, labels_end="")
    assert len(crlf.split(b"\n")) == len(rows) + 1  # the quirk as a naive reader sees it
    s = load_textcls(tmp_path, "mr", val_fraction=0.25)
    assert sum(s.sizes().values()) == 10 and s.skipped == 0
    assert s["test"][-1].text == "review 9 ." and s["test"][-1].id == "mr/10"  # no \r left
    (tmp_path / "corpus" / "mr.txt").write_bytes(crlf + b"\r\n \n")  # blank extra lines, also ignored
    assert sum(load_textcls(tmp_path, "mr", val_fraction=0.25).sizes().values()) == 10


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_textcls_a_corpus_line_without_labels_line_names_the_file_and_line(tmp_path, policy):
    rows = [("train", "a"), ("train", "b"), ("train", "a"), ("train", "b"), ("test", "a")]
    docs = [f"doc {i}" for i in range(5)] + ["an unlabelled document", ""]
    _textgcn(tmp_path, "t", rows, docs)
    # line counts that differ raise whatever on_file_error says
    with pytest.raises(ValueError, match=r"corpus file '.*corpus/t\.txt', line 6: has no labels line in '.*t\.txt'"):
        load_textcls(tmp_path, "t", on_file_error=policy)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_textcls_a_labels_line_without_corpus_line_names_the_file_and_line(tmp_path, policy):
    rows = [("train", "a"), ("train", "b"), ("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")]
    _textgcn(tmp_path, "t", rows, [f"doc {i}" for i in range(4)])
    with pytest.raises(ValueError, match=r"labels file '.*t\.txt', line 5: has no corpus line in '.*corpus/t\.txt'"):
        load_textcls(tmp_path, "t", on_file_error=policy)


def test_textcls_an_empty_document_raises_or_is_skipped_and_counted(tmp_path, caplog):
    root = _toy_text(tmp_path)
    corpus = root / "corpus" / "toy.txt"
    lines = corpus.read_text().split("\n")
    lines[4] = "   "  # line 5
    corpus.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"corpus file '.*toy\.txt', line 5: empty document.*on_file_error='skip'"):
        load_textcls(root, "toy")
    with caplog.at_level(logging.WARNING):
        s = load_textcls(root, "toy", on_file_error="skip")
    assert s.skipped == 1 and "line 5" in s.skipped_items[0][0] and "empty document" in caplog.text
    assert sum(s.sizes().values()) == 35 and "toy/5" not in [x.id for k in s for x in s[k]]


def test_textcls_very_short_documents_are_kept(tmp_path):
    rows = [("train", "x"), ("train", "y"), ("train", "x"), ("train", "y"), ("test", "x")]
    _textgcn(tmp_path, "t", rows, ["a", "?", "ok", "b", "z"])
    s = load_textcls(tmp_path, "t", val_fraction=0.5)
    assert sorted(x.text for k in s for x in s[k]) == ["?", "a", "b", "ok", "z"]


def test_textcls_an_unknown_test_label_is_named_and_label_map_fixes_it(tmp_path):
    rows = [("train", "student"), ("train", "course"), ("train", "student"), ("train", "course"),
            ("test", "cours"), ("test", "student")]
    _textgcn(tmp_path, "w", rows, [f"page {i}" for i in range(6)])
    with pytest.raises(ValueError, match=r"w\.txt', line 5: test label 'cours' never occurs in the train split"):
        load_textcls(tmp_path, "w")
    s = load_textcls(tmp_path, "w", on_file_error="skip", val_fraction=0.5)
    assert s.skipped == 1 and len(s["test"]) == 1
    fixed = load_textcls(tmp_path, "w", label_map={"cours": "course"}, val_fraction=0.5)
    assert fixed.classes == ["course", "student"] and [x.target for x in fixed["test"]] == ["course", "student"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [("7\ttrain", "expected 3 tab-separated fields"), ("7\tdev\ta", "split 'dev' is neither"), ("7\ttrain\t ", "empty label")],
)
def test_textcls_a_malformed_labels_line_is_named(tmp_path, line, problem):
    rows = [("train", "a"), ("train", "b"), ("train", "a"), ("train", "b"), ("test", "a")]
    _textgcn(tmp_path, "t", rows, [f"doc {i}" for i in range(5)])
    lines = (tmp_path / "t.txt").read_text().split("\n")
    lines[2] = line
    (tmp_path / "t.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=rf"t\.txt', line 3: {problem}"):
        load_textcls(tmp_path, "t")
    assert load_textcls(tmp_path, "t", on_file_error="skip", val_fraction=0.4).skipped == 1


def test_textcls_reads_a_windows_1252_corpus_with_a_warning(tmp_path, caplog):
    rows = [("train", "a"), ("train", "b"), ("train", "a"), ("train", "b"), ("test", "a")]
    docs = "".join(f"caf\xe9 {i} \u2013 ok\r\n" for i in range(5)).encode("cp1252")  # \u2013 is byte 0x96
    _textgcn(tmp_path, "t", rows, [], corpus_bytes=docs)
    with caplog.at_level(logging.WARNING):
        s = load_textcls(tmp_path, "t", clean=False, val_fraction=0.5)
    assert s["test"][0].text == "caf\xe9 4 \u2013 ok" and "not UTF-8" in caplog.text


def test_textcls_skip_tokens_drops_a_leading_label_token(tmp_path):
    rows = [("train", "DESC"), ("train", "HUM"), ("train", "DESC"), ("train", "HUM"), ("test", "HUM"), ("test", "DESC")]
    docs = ["manner how did  it go ?", "ind who was it ?", "def what is x ?", "ind who ?", "gr who are they ?", "desc"]
    _textgcn(tmp_path, "q", rows, docs)
    s = load_textcls(tmp_path, "q", val_fraction=0.5, skip_tokens=1, on_file_error="skip")
    texts = {x.id: x.text for k in s for x in s[k]}
    assert texts["q/1"] == "how did  it go ?" and texts["q/5"] == "who are they ?"
    assert s.skipped == 1 and "q/6" not in texts  # nothing left once skipped
    with pytest.raises(ValueError, match=r"line 6: empty document once its first 1 token\(s\) are skipped"):
        load_textcls(tmp_path, "q", skip_tokens=1)
    with pytest.raises(ValueError, match="skip_tokens must be an int >= 0"):
        load_textcls(tmp_path, "q", skip_tokens=-1)


def test_textcls_integer_labels_keep_their_value_as_class_id(tmp_path):
    rows = [("train", "10"), ("train", "2"), ("train", "10"), ("train", "2"), ("test", "2")]
    _textgcn(tmp_path, "t", rows, [f"doc {i}" for i in range(5)])
    s = load_textcls(tmp_path, "t", val_fraction=0.5)
    assert len(s.classes) == 11 and {x.label for k in s for x in s[k]} == {2, 10}


# ---------------------------------------------------------------- audio_folder
def test_read_audio_records_reads_both_layouts_in_a_fixed_order(tmp_path):
    _fsdd(tmp_path, digits=(1,), speakers=("bob",), takes=11)
    _wav(tmp_path / "3" / "any name.wav", 3)
    _wav(tmp_path / "3" / "3_cid_4.wav", 3)
    (tmp_path / "notes.txt").write_text("ignored")
    recs = read_audio_records(tmp_path)
    assert all(isinstance(r, AudioRecord) for r in recs) and len(recs) == 13
    assert [r.take for r in recs[:11]] == list(range(11))  # 2 before 10
    assert [(r.label, r.speaker, r.take) for r in recs[11:]] == [("3", None, None), ("3", "cid", 4)]
    assert recs[0].audio.dtype == torch.float32 and recs[0].audio.shape == (800,) and recs[0].sample_rate == SR
    assert recs[0].name == "1_bob_0.wav" and recs.skipped_items == []
    up = read_audio_records(tmp_path, sample_rate=16000)
    assert up[0].sample_rate == 16000 and up[0].audio.shape == (1600,)


def test_read_audio_records_warns_when_the_root_is_one_level_too_high(tmp_path, caplog):
    _fsdd(tmp_path / "recordings", digits=(0, 1), speakers=("ann",), takes=2)
    with caplog.at_level(logging.WARNING):
        recs = read_audio_records(tmp_path)
    assert {r.label for r in recs} == {"recordings"}
    assert "name another label than their folder" in caplog.text and "recordings/0_ann_0.wav" in caplog.text


def test_audio_folder_dataset_split_puts_takes_0_to_4_in_test(tmp_path):
    _fsdd(tmp_path, takes=10)
    s = load_audio_folder(tmp_path, val_fraction=0.2, seed=1)
    assert s.classes == ["0", "1", "2"] and s.sizes() == {"train": 24, "val": 6, "test": 30}
    assert all(int(x.id[:-4].split("_")[2]) < 5 for x in s["test"])
    assert all(int(x.id[:-4].split("_")[2]) >= 5 for x in s["train"] + s["val"])
    assert Counter(x.label for x in s["val"]) == {0: 2, 1: 2, 2: 2}
    assert all(x.label == int(x.id[0]) and x.target == x.id[0] and x.sample_rate == SR for k in s for x in s[k])
    assert _ids(load_audio_folder(tmp_path, val_fraction=0.2, seed=1)["val"]) == _ids(s["val"])


def test_audio_folder_val_speakers_hold_out_whole_voices(tmp_path):
    """``val_speakers``: validation is every non-test clip of those speakers, so a choice
    made on validation is made on a voice training never heard."""
    _fsdd(tmp_path, speakers=("ann", "bob", "cid"), takes=4)
    s = load_audio_folder(tmp_path, split="speakers", test_speakers=["bob"], val_speakers=["cid"])
    speaker = {k: {x.id.split("_")[1] for x in s[k]} for k in ("train", "val", "test")}
    assert speaker == {"train": {"ann"}, "val": {"cid"}, "test": {"bob"}}
    assert s.sizes() == {"train": 12, "val": 12, "test": 12}
    with pytest.raises(ValueError, match="val_speakers \\['bob'\\] are also test speakers"):
        load_audio_folder(tmp_path, split="speakers", test_speakers=["bob"], val_speakers=["bob"])
    with pytest.raises(ValueError, match="val_speakers \\['dan'\\] have no clip"):
        load_audio_folder(tmp_path, split="speakers", test_speakers=["bob"], val_speakers=["dan"])


def test_audio_folder_resamples_to_the_requested_rate(tmp_path):
    for d in (0, 1):
        for k in range(10):
            _wav(tmp_path / f"{d}_ann_{k}.wav", d, n=1600, sr=16000)
    s = load_audio_folder(tmp_path, sample_rate=SR)
    assert all(x.sample_rate == SR and x.audio.shape == (800,) for k in s for x in s[k])
    keep = load_audio_folder(tmp_path, sample_rate=None)
    assert keep["test"][0].sample_rate == 16000


def test_audio_folder_speaker_split_is_speaker_independent(tmp_path):
    _fsdd(tmp_path, speakers=("ann", "bob", "cid"), takes=4)
    s = load_audio_folder(tmp_path, split="speakers", test_speakers=["bob"], val_fraction=0.25)
    assert {x.id.split("_")[1] for x in s["test"]} == {"bob"} and len(s["test"]) == 12
    assert "bob" not in {x.id.split("_")[1] for x in s["train"] + s["val"]}
    with pytest.raises(ValueError, match=r"test_speakers \['dan'\] have no clip; the speakers are \['ann', 'bob', 'cid'\]"):
        load_audio_folder(tmp_path, split="speakers", test_speakers=["dan"])
    with pytest.raises(ValueError, match="split='speakers' needs test_speakers"):
        load_audio_folder(tmp_path, split="speakers")
    with pytest.raises(ValueError, match="needs split='speakers'"):
        load_audio_folder(tmp_path, test_speakers=["bob"])


def test_audio_folder_class_folders_without_takes_need_a_random_split(tmp_path):
    for label in ("dog", "cat"):
        for k in range(10):
            _wav(tmp_path / label / f"clip{k}.wav", len(label) + k)
    with pytest.raises(ValueError, match=r"clip0\.wav' has no take in its name.*split='random'"):
        load_audio_folder(tmp_path)
    s = load_audio_folder(tmp_path, split="random", test_fraction=0.2, val_fraction=0.25)
    assert s.classes == ["cat", "dog"] and s.sizes() == {"train": 12, "val": 4, "test": 4}
    assert Counter(x.target for x in s["test"]) == {"cat": 2, "dog": 2} and s["test"][0].id.startswith("cat/")


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "empty"])
def test_audio_folder_a_bad_wav_is_named_or_skipped_and_counted(tmp_path, kind):
    _fsdd(tmp_path, takes=7)
    bad = tmp_path / "2_bob_6.wav"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "corrupt": b"RIFF\x00\x00garbage" * 10, "empty": b""}[kind])
    with pytest.raises(ValueError, match=r"2_bob_6\.wav"):
        load_audio_folder(tmp_path)
    s = load_audio_folder(tmp_path, on_file_error="skip")
    assert s.skipped == 1 and "2_bob_6.wav" in s.skipped_items[0][0]
    assert sum(s.sizes().values()) == 3 * 2 * 7 - 1


def test_audio_folder_a_top_level_wav_without_a_label_is_named(tmp_path):
    _fsdd(tmp_path, takes=6)
    _wav(tmp_path / "mystery.wav")
    with pytest.raises(ValueError, match=r"mystery\.wav.*name gives no label"):
        load_audio_folder(tmp_path)
    assert load_audio_folder(tmp_path, on_file_error="skip").skipped == 1


def test_audio_folder_a_test_label_missing_from_train_is_named(tmp_path):
    _fsdd(tmp_path, digits=(0, 1), takes=7)
    for k in range(3):
        _wav(tmp_path / f"9_ann_{k}.wav", 9)  # takes 0-2: test only
    with pytest.raises(ValueError, match=r"9_ann_0\.wav.*test label '9' never occurs in the train split"):
        load_audio_folder(tmp_path)
    s = load_audio_folder(tmp_path, on_file_error="skip")
    assert s.skipped == 3 and s.classes == ["0", "1"]


def test_audio_folder_missing_or_empty_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio folder .* does not exist"):
        load_audio_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no .wav file"):
        load_audio_folder(tmp_path)


# ---------------------------------------------------------------- image arrays
def test_read_image_arrays_converts_to_float_nchw(tmp_path):
    labels = np.arange(6) % 3
    imgs = _digit_images(labels)
    x, y = read_image_arrays(_npz(tmp_path / "a.npz", images=imgs, labels=labels))
    assert x.shape == (6, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], torch.from_numpy(imgs).float() / 255) and y.tolist() == labels.tolist()
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 7, 3), dtype=np.uint8)
    x, _ = read_image_arrays(_npz(tmp_path / "hwc.npz", images=rgb, labels=np.zeros(4, np.int32)))
    assert x.shape == (4, 3, 5, 7) and torch.equal(x, torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255)
    x, _ = read_image_arrays(_npz(tmp_path / "f.npz", images=np.full((2, 3, 4, 4), 0.5, np.float32), labels=[0, 1]))
    assert x.shape == (2, 3, 4, 4) and float(x.max()) == 0.5


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((3, 4, 4), np.uint8)}, r"has no \['labels'\] array\(s\); it holds \['images'\]"),
        ({"x": np.zeros(3), "y": np.zeros(3)}, r"has no \['images', 'labels'\]"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.zeros(2, np.int64)}, "3 images but 2 labels"),
        ({"images": np.zeros((3, 4), np.uint8), "labels": np.zeros(3, np.int64)}, "expected \\(N, H, W\\)"),
        ({"images": np.full((3, 4, 4), 2.0), "labels": np.zeros(3, np.int64)}, r"must lie in \[0, 1\]"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.array([0, -1, 1])}, "label -1 at index 1 is negative"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.array([0.5, 1, 1])}, "class ids must be integers"),
    ],
)
def test_read_image_arrays_bad_arrays_name_the_file(tmp_path, arrays, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=rf"bad\.npz.*{message}"):
        read_image_arrays(path)


def test_read_image_arrays_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz' does not exist"):
        read_image_arrays(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"junk\.npz' is not a readable \.npz"):
        read_image_arrays(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"one\.npy' holds one array"):
        read_image_arrays(tmp_path / "one.npy")
    good = _npz(tmp_path / "good.npz", images=np.random.default_rng(0).integers(0, 255, (50, 16, 16), dtype=np.uint8),
                labels=np.zeros(50, np.int64))
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.npz"):
        read_image_arrays(tmp_path / "cut.npz")


def test_load_image_arrays_holds_out_an_exact_stratified_seeded_test_set(tmp_path):
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    path = _npz(tmp_path / "train.npz", images=_digit_images(labels), labels=labels)
    s = load_image_arrays(path, test_size=20, val_fraction=0.25, seed=5)
    assert s.sizes() == {"train": 60, "val": 20, "test": 20} and s.classes == ["0", "1", "2", "3"]
    assert Counter(x.label for x in s["test"]) == {0: 8, 1: 6, 2: 4, 3: 2}
    index = [int(x.id.split("/")[1]) for k in s for x in s[k]]
    assert sorted(index) == list(range(100))  # disjoint and complete
    for x in s["train"]:
        i = int(x.id.split("/")[1])
        assert x.label == labels[i] and x.image.shape == (1, 8, 8)
        assert round(float(x.image[0, 0, 1]) * 255) == i % 256  # the right pixels
        assert x.image.untyped_storage().nbytes() == 8 * 8 * 4  # its own copy, not a view
    again = load_image_arrays(path, test_size=20, val_fraction=0.25, seed=5)
    assert _ids(again["test"]) == _ids(s["test"]) and _ids(again["val"]) == _ids(s["val"])
    assert _ids(load_image_arrays(path, test_size=20, seed=6)["test"]) != _ids(s["test"])
    assert len(load_image_arrays(path, test_fraction=0.3)["test"]) == 30
    with pytest.raises(ValueError, match=r"test_size must be an int in \[1, 99\]"):
        load_image_arrays(path, test_size=100)


def test_load_image_arrays_with_a_test_file(tmp_path):
    labels = np.arange(30) % 3
    train = _npz(tmp_path / "train.npz", images=_digit_images(labels), labels=labels)
    test = _npz(tmp_path / "test.npz", images=_digit_images(labels[:6]), labels=labels[:6])
    s = load_image_arrays(train, test_path=test, val_fraction=0.2)
    assert s.sizes() == {"train": 24, "val": 6, "test": 6} and s["test"][0].id == "test.npz/0"
    odd = _npz(tmp_path / "odd.npz", images=_digit_images(np.array([7, 1])), labels=np.array([7, 1]))
    with pytest.raises(ValueError, match=r"odd\.npz', index 0: test label 7 never occurs in the train split"):
        load_image_arrays(train, test_path=odd)
    assert load_image_arrays(train, test_path=odd, on_file_error="skip").skipped == 1


# ---------------------------------------------------------------- image folders
def test_load_image_folder_carves_splits_from_class_folders(tmp_path):
    for label in ("3", "1"):
        for k in range(10):
            _png(tmp_path / label / f"{k:02d}.png", 20 * int(label) + k)
    s = load_image_folder(tmp_path, test_fraction=0.2, val_fraction=0.25, channels=3, size=[4, 4])
    assert s.sizes() == {"train": 12, "val": 4, "test": 4} and s.classes == ["0", "1", "2", "3"]
    x = s["train"][0]
    assert x.image.shape == (3, 4, 4) and x.label == int(x.id.split("/")[0]) and x.target == x.id.split("/")[0]
    value = 20 * x.label + int(x.id.split("/")[1][:2])
    assert torch.allclose(x.image, torch.full((3, 4, 4), value / 255))


def test_load_image_folder_uses_train_and_test_folders(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        for label in ("cat", "dog"):
            for k in range(n):
                _png(tmp_path / split / label / f"{k}.jpg", 10 * k)
    s = load_image_folder(tmp_path, val_fraction=0.5)
    assert s.sizes() == {"train": 6, "val": 6, "test": 4} and s.classes == ["cat", "dog"]
    assert all(x.id.startswith("test/") for x in s["test"])


def test_load_image_folder_an_unreadable_image_is_named_or_skipped(tmp_path):
    for k in range(8):
        _png(tmp_path / "a" / f"{k}.png", k)
        _png(tmp_path / "b" / f"{k}.png", 100 + k)
    (tmp_path / "b" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=r"b/3\.png"):
        load_image_folder(tmp_path)
    s = load_image_folder(tmp_path, on_file_error="skip")
    assert s.skipped == 1 and sum(s.sizes().values()) == 15


def test_load_image_folder_resizes_a_huge_image_and_refuses_mixed_channels(tmp_path):
    for k in range(8):
        _png(tmp_path / "a" / f"{k}.png", k)
        _png(tmp_path / "b" / f"{k}.png", 100 + k)
    _png(tmp_path / "b" / "huge.png", 7, size=(2000, 2000))  # 4 million pixels, over the default budget
    s = load_image_folder(tmp_path)
    assert {tuple(x.image.shape) for n in s for x in s[n]} == {(1, 6, 6)} and sum(s.sizes().values()) == 17
    with pytest.raises(ValueError, match=r"huge\.png': 2000 x 2000 = 4000000 pixels, over data.max_image_pixels"):
        # the only image within the budget would set the common size; there is none here
        load_image_folder(_png(tmp_path / "solo" / "x" / "huge.png", 7, size=(2000, 2000)).parent.parent,
                          max_image_pixels=1000)
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "a" / "rgb.png")
    with pytest.raises(ValueError, match=r"data.channels.*") as err:
        load_image_folder(tmp_path)
    assert "a/0.png' is greyscale" in str(err.value) and "a/rgb.png' is RGB" in str(err.value)
    s = load_image_folder(tmp_path, channels=3)
    assert {x.image.shape[0] for n in s for x in s[n]} == {3}


# ---------------------------------------------------------------- avdigits
def _av(tmp_path: Path, n_images: int = 60):
    audio = _fsdd(tmp_path / "wav", digits=(0, 1, 2), speakers=("ann", "bob"), takes=7, n=400)
    labels = np.arange(n_images) % 3
    images = _npz(tmp_path / "img.npz", images=_digit_images(labels), labels=labels)
    return images, audio


def test_avdigits_pairs_each_clip_with_its_own_image_of_the_same_label(tmp_path):
    images, audio = _av(tmp_path)
    s = load_avdigits(images, audio, val_fraction=0.25, seed=0)
    assert s.sizes() == {"train": 9, "val": 3, "test": 30} and s.classes == ["0", "1", "2"]
    used = []
    for k in s:
        for x in s[k]:
            assert x.modalities == ("image", "audio") and x.sample_rate == SR
            clip, image = x.id.split("+")
            assert x.label == int(clip[0]) == round(float(x.image[0, 0, 0]) * 255)  # same label
            assert image.startswith("img.npz/") and round(float(x.image[0, 0, 1]) * 255) == int(image.split("/")[1])
            used.append(image)
    assert len(set(used)) == len(used) == 42  # no image twice, so none in two splits
    assert all(int(x.id.split("+")[0][:-4].split("_")[2]) < 5 for x in s["test"])  # the audio's split
    assert _ids(load_avdigits(images, audio, val_fraction=0.25, seed=0)["train"]) == _ids(s["train"])
    assert _ids(load_avdigits(images, audio, val_fraction=0.25, seed=1)["test"]) != _ids(s["test"])


def test_avdigits_text_and_a_separate_test_image_file(tmp_path):
    images, audio = _av(tmp_path)
    labels = np.arange(30) % 3
    test_images = _npz(tmp_path / "test.npz", images=_digit_images(labels), labels=labels)
    s = load_avdigits(images, audio, image_test_path=test_images, text=True, text_informative=1.0)
    assert all(x.id.split("+")[1].startswith("test.npz/") for x in s["test"])
    assert all(x.id.split("+")[1].startswith("img.npz/") for x in s["train"] + s["val"])
    words = ("zero", "one", "two")
    assert all(x.modalities == ("text", "image", "audio") and words[x.label] in x.text.split() for k in s for x in s[k])


def test_avdigits_refuses_too_few_images_and_non_digit_labels(tmp_path):
    images, audio = _av(tmp_path, n_images=30)  # 10 per label, 14 clips per label
    with pytest.raises(ValueError, match=r"img\.npz' has 10 images of label 0 but 14 clips need one each"):
        load_avdigits(images, audio)
    for k in range(7):
        _wav(tmp_path / "wav" / f"x_ann_{k}.wav")
    with pytest.raises(ValueError, match="audio labels must be the images' integer class ids"):
        load_avdigits(images, audio)


# ---------------------------------------------------------------- Hydra configs
@pytest.mark.parametrize(
    ("data", "overrides"),
    [
        ("textcls", ["data.name=toy", "data.val_fraction=0.2"]),
        ("audio_folder", ["data.root={tmp}/wav"]),
        ("image_arrays", ["data.train_path={tmp}/img.npz", "data.test_size=12"]),
        ("image_folder", ["data.root={tmp}/folder", "data.size=[4,4]"]),
        ("avdigits", ["data.image_path={tmp}/img.npz", "data.audio_root={tmp}/wav", "data.text=true"]),
    ],
)
def test_data_configs_compose_and_load(make_cfg, tmp_path, monkeypatch, data, overrides):
    _toy_text(tmp_path / "text")
    _av(tmp_path)
    for k in range(4):
        _png(tmp_path / "folder" / "a" / f"{k}.png", k)
        _png(tmp_path / "folder" / "b" / f"{k}.png", 50 + k)
    monkeypatch.setenv("GRAPHMM_DATA", str(tmp_path))
    cfg = make_cfg([f"data={data}", "data.on_error=skip", *(o.format(tmp=tmp_path) for o in overrides)])
    assert cfg.data.on_file_error == "skip"
    splits, on_error = load_splits(cfg.data)
    assert on_error == "skip" and isinstance(splits, DataSplits) and all(splits[k] for k in ("train", "val", "test"))
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        make_cfg([f"data={data}", "data.no_such_key=1"])


def test_data_config_roots_default_to_graphmm_data_or_shared_data(make_cfg, monkeypatch):
    monkeypatch.delenv("GRAPHMM_DATA", raising=False)
    cfg = make_cfg(["data=textcls", "data.name=mr"])
    assert cfg.data.root == "../shared/data/text"
    monkeypatch.setenv("GRAPHMM_DATA", "/data")
    assert make_cfg(["data=avdigits"]).data.audio_root == "/data/fsdd/recordings"
    assert make_cfg(["data=audio_folder", "graph.audio.sample_rate=16000"]).data.sample_rate == 16000


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose_and_validate(make_cfg, experiment):
    cfg = make_cfg([f"experiment={experiment}"])
    validate_config(cfg)
    assert cfg.name == experiment
    graph = OmegaConf.to_container(cfg.graph)
    on = {m for m in ("text", "image", "audio") if graph[m] is not None}
    want = {"fsdd": {"audio"}, "mnist": {"image"}, "avdigits": {"image", "audio"}}.get(experiment, {"text"})
    assert on == want


def test_one_epoch_on_synthetic_text_and_audio(make_cfg, tmp_path, monkeypatch):
    _toy_text(tmp_path / "text")
    _fsdd(tmp_path / "fsdd" / "recordings", takes=7)
    monkeypatch.setenv("GRAPHMM_DATA", str(tmp_path))
    for experiment, extra in (("trec", ["data.name=toy"]), ("fsdd", [])):
        cfg = make_cfg([f"experiment={experiment}", "debug=fast", "trainer.max_epochs=1",
                        "trainer.limit_train_batches=2", f"output_dir={tmp_path / experiment}", *extra])
        metrics = train(cfg)
        assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["data/skipped"] == 0


# ---------------------------------------------------------------- the real datasets
@needs_shared
def test_real_fsdd_counts_and_own_split():
    root = SHARED / "fsdd" / "recordings"
    recs = read_audio_records(root)
    assert len(recs) == 2500 and all(r.sample_rate == 8000 for r in recs)
    assert Counter(r.speaker for r in recs) == dict.fromkeys(["george", "jackson", "lucas", "nicolas", "yweweler"], 500)
    assert Counter(r.label for r in recs) == {str(d): 250 for d in range(10)}
    assert {r.take for r in recs} == set(range(50))
    lengths = [r.audio.numel() for r in recs]
    assert min(lengths) == 1148 and max(lengths) == 10504
    s = load_audio_folder(root)
    # takes 0-4 of 5 speakers x 10 digits: 250 test clips, 2,250 train + val
    assert s.sizes() == {"train": 2025, "val": 225, "test": 250} and s.classes == [str(d) for d in range(10)]
    spk = load_audio_folder(root, split="speakers", test_speakers=["george"])
    assert spk.sizes() == {"train": 1800, "val": 200, "test": 500}


@needs_shared
def test_real_mnist_counts_and_held_out_test():
    x, y = read_image_arrays(SHARED / "mnist" / "train.npz")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    del x
    s = load_image_arrays(SHARED / "mnist" / "train.npz", test_size=10000)
    assert s.sizes() == {"train": 45000, "val": 5000, "test": 10000}
    assert Counter(x.label for x in s["test"])[1] == 1124  # 6742 / 60000 of 10,000, rounded


@needs_shared
@pytest.mark.parametrize(
    ("name", "train", "val", "test", "classes"),
    [
        ("mr", 7108, 711, 3554, ["0", "1"]),
        ("trec", 5452, 545, 500, ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]),
        ("sst1", 9645, 965, 2210, ["0", "1", "2", "3", "4"]),
        ("sst2", 7792, 779, 1821, ["0", "1"]),
    ],
)
def test_real_text_split_sizes(name, train, val, test, classes):
    for clean in (True, False):
        s = load_textcls(SHARED / "text", name, clean=clean)
        assert s.sizes() == {"train": train - val, "val": val, "test": test}  # val: 10 % of train, halves up
        assert s.classes == classes and s.skipped == 0


@needs_shared
def test_real_mr_quirks(caplog):
    """``corpus/mr.txt`` shows one line more than ``mr.txt`` has documents when split at
    ``\\n`` (its \\r\\n line ends against a labels file without a final newline), and it
    is Windows-1252 text, not UTF-8."""
    labels = (SHARED / "text" / "mr.txt").read_bytes()
    corpus = (SHARED / "text" / "corpus" / "mr.txt").read_bytes()
    n_docs = len(labels.split(b"\n"))
    assert n_docs == 10662 and len(corpus.split(b"\n")) == n_docs + 1
    with caplog.at_level(logging.WARNING):
        s = load_textcls(SHARED / "text", "mr", clean=False)
    assert "not UTF-8" in caplog.text and sum(s.sizes().values()) == n_docs
    assert s["test"][-1].id == "mr/10662" and "\r" not in s["test"][-1].text
    short = [x for k in s for x in s[k] if len(x.text.split()) <= 2]
    assert short  # very short documents are kept


@needs_shared
def test_real_trec_questions_start_with_their_fine_label():
    """TREC's corpus starts every question with its fine-grained label (47 names), which
    gives the coarse class away; ``skip_tokens=1`` drops it."""
    s = load_textcls(SHARED / "text", "trec")
    first: dict[str, Counter] = {}
    for x in s["train"] + s["val"] + s["test"]:
        first.setdefault(x.text.split()[0], Counter())[x.target] += 1
    assert len(first) == 47 and {"manner", "cremat", "def", "ind", "other"} <= set(first)
    assert sum(max(c.values()) for c in first.values()) / 5952 > 0.94  # the token alone names the class
    kept = load_textcls(SHARED / "text", "trec", skip_tokens=1)
    assert kept.sizes() == s.sizes() and kept.skipped == 0
    words = Counter(x.text.split()[0] for x in kept["train"])
    assert words.most_common(1)[0][0] == "what" and not set(words) & {"manner", "cremat", "def", "ind"}


@needs_shared
def test_real_webkb_truncated_labels_need_the_label_map():
    with pytest.raises(ValueError, match=r"WebKB\.txt', line 3317: test label 'cours' never occurs"):
        load_textcls(SHARED / "text", "webkb")
    fix = {"cours": "course", "facult": "faculty", "projec": "project", "studen": "student"}
    s = load_textcls(SHARED / "text", "webkb", label_map=fix)
    assert s.classes == ["course", "faculty", "project", "student"]
    assert len(s["train"]) + len(s["val"]) == 2803 and len(s["test"]) == 1396


@needs_shared
def test_real_avdigits_pairs_fsdd_with_mnist():
    s = load_avdigits(SHARED / "mnist" / "train.npz", SHARED / "fsdd" / "recordings", text=True)
    assert s.sizes() == {"train": 2025, "val": 225, "test": 250}
    images = [x.id.split("+")[1] for k in s for x in s[k]]
    assert len(set(images)) == 2500
    _, y = read_image_arrays(SHARED / "mnist" / "train.npz")
    assert all(int(y[int(x.id.split("/")[-1])]) == x.label for x in s["test"])


@needs_shared
@pytest.mark.parametrize("experiment", ["mr", "fsdd"])
def test_real_experiment_one_epoch(make_cfg, tmp_path, monkeypatch, experiment):
    monkeypatch.setenv("GRAPHMM_DATA", str(SHARED))
    cfg = make_cfg([f"experiment={experiment}", "debug=fast", "trainer.max_epochs=1", "trainer.limit_train_batches=2"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["trec", "sst1", "sst2", "webkb", "mnist", "avdigits"])
def test_real_experiment_one_epoch_slow(make_cfg, tmp_path, monkeypatch, experiment):
    monkeypatch.setenv("GRAPHMM_DATA", str(SHARED))
    cfg = make_cfg([f"experiment={experiment}", "debug=fast", "trainer.max_epochs=1", "trainer.limit_train_batches=2"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


@needs_shared
@pytest.mark.slow
def test_realdata_benchmark_quick(tmp_path, monkeypatch):
    """``python -m benchmarks.realdata --quick`` end to end: baselines, two Hydra multiruns
    (graph convs; Transformer and late fusion), the ablations, the tables. On a text set
    (the wide-path ablation) and on avdigits (image and audio baselines, the
    modality-dropout ablation, the missing-modality table): the other quick sets add no
    code path here, only minutes (their loaders are tested above)."""
    import time

    from benchmarks.realdata import ABLATIONS, MODELS, QUICK, ablation_datasets, run

    monkeypatch.setenv("GRAPHMM_DATA", str(SHARED))  # run() sets it for the sweeps; restored afterwards
    t0 = time.perf_counter()
    datasets = ("trec", "avdigits")
    section = run(datasets, [*MODELS, *ABLATIONS], [0], True, SHARED, tmp_path, jobs=2)
    minutes = (time.perf_counter() - t0) / 60
    for ds in datasets:
        for label in ("graph, conv=sum", "graph, conv=gcn", "graph, conv=gat", "Transformer over the nodes",
                      "late fusion (set encoder per modality)"):
            assert f"| {ds} | {label}" in section, (ds, label)
    assert "| trec | TF-IDF 1-2-gram + LinearSVC |" in section
    assert "| avdigits | late fusion of the two CNNs (mean of probabilities) |" in section
    assert "**Missing modality on avdigits.**" in section
    # the text presets keep the wide path, avdigits modality dropout: one ablation each
    assert ablation_datasets("gnn-gat-nowide", QUICK) == ["mr", "trec"]
    assert ablation_datasets("gnn-gat-nomoddrop", QUICK) == ["avdigits"]
    assert "| trec | graph, conv=gat, without the wide path |" in section
    assert "| avdigits | graph, conv=gat, without modality dropout |" in section
    # every framework job left its run directory and each sweep its summary
    assert len(list(tmp_path.glob("sweeps/*/*/metrics.json"))) == len(datasets) * len(MODELS) + 2
    assert len(list(tmp_path.glob("sweeps/*/summary.md"))) == 4
    print(f"benchmarks.realdata --quick: {minutes:.1f} min")  # the 10-minute budget is measured, not asserted
