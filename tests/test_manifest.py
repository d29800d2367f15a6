"""``data=manifest``: a dataset of your own files listed in a CSV manifest.

Every test writes real PNG and WAV files and a manifest under ``tmp_path``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue
from PIL import Image

from graphmm.data import ManifestSplits, load_manifest
from graphmm.train import load_splits, train

SR = 8000
CLASSES = ("owl", "cat", "dog")  # deliberately unsorted: ids follow sorted order


# ---------------------------------------------------------------- helpers
def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _wav(path: Path, wave: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sr, subtype=subtype)
    return path


def _manifest(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """Write a CSV manifest; the header is line 1, ``rows[i]`` is line ``i + 2``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _image(label: int, k: int) -> np.ndarray:
    """8x8 uint8 greyscale: a bright column per class, a little seeded noise."""
    rng = np.random.default_rng([label, k])
    arr = rng.integers(0, 40, (8, 8), dtype=np.uint8)
    arr[:, 2 * label + 1] = 255
    return arr


def _tone(label: int, k: int, n: int = 1600) -> np.ndarray:
    """0.2 s float32 tone at a class-dependent frequency."""
    t = np.arange(n, dtype=np.float32) / SR
    return (0.5 * np.sin(2 * np.pi * (500 + 400 * label + 10 * k) * t)).astype(np.float32)


def _dataset(folder: Path, per_class: int, split: bool = True) -> tuple[Path, dict[str, dict]]:
    """Tri-modal files for every class in ``CLASSES``; returns the manifest and, per id,
    what was written. With ``split`` the rows are assigned train/val/test in turn
    (``per_class >= 3``: every class in every split)."""
    header = (["split"] if split else []) + ["id", "label", "image", "audio", "text"]
    rows, written = [], {}
    for c, name in enumerate(CLASSES):
        for k in range(per_class):
            sid = f"{name}{k}"
            img = _png(folder / "img" / f"{sid}.png", _image(c, k))
            wav = _wav(folder / "wav" / f"{sid}.wav", _tone(c, k))
            text = f"a picture of a {name} number {k}"
            where = ("train", "train", "val", "test")[k % 4] if k >= 3 else ("train", "val", "test")[k]
            rows.append(([where] if split else []) + [sid, name, img.relative_to(folder), wav.relative_to(folder), text])
            written[sid] = {"image": _image(c, k), "audio": _tone(c, k), "text": text, "label": name, "split": where}
    return _manifest(folder / "manifest.csv", header, rows), written


def _ids(samples) -> list[str]:
    return [s.id for s in samples]


# ---------------------------------------------------------------- round trip
def test_round_trip_reads_back_the_written_files_and_maps_labels(tmp_path):
    path, written = _dataset(tmp_path, per_class=4)
    splits = load_manifest(path)
    assert isinstance(splits, ManifestSplits) and set(splits) == {"train", "val", "test"}
    assert splits.classes == ["cat", "dog", "owl"] and splits.label_to_id == {"cat": 0, "dog": 1, "owl": 2}
    assert splits.skipped == 0 and splits.skipped_rows == []
    seen = 0
    for name, samples in splits.items():
        for s in samples:
            w = written[s.id]
            assert w["split"] == name
            assert s.image.dtype == torch.float32 and s.image.shape == (1, 8, 8)
            assert torch.equal(s.image[0], torch.from_numpy(w["image"]).float() / 255)
            assert s.sample_rate == SR and torch.equal(s.audio, torch.from_numpy(w["audio"]))
            assert s.text == w["text"]
            assert s.label == splits.label_to_id[w["label"]] and s.target == w["label"]
            seen += 1
    assert seen == len(written)
    # manifest order inside a split
    assert _ids(splits["train"]) == [i for i, w in written.items() if w["split"] == "train"]


def test_reading_options_convert_images_and_resample_audio(tmp_path):
    _png(tmp_path / "a.png", np.zeros((6, 10, 3), dtype=np.uint8))
    _wav(tmp_path / "a.wav", _tone(0, 0), sr=16000)
    path = _manifest(tmp_path / "m.csv", ["split", "label", "image", "audio"],
                     [[s, "x", "a.png", "a.wav"] for s in ("train", "val", "test")])
    plain = load_manifest(path)["train"][0]
    assert plain.image.shape == (3, 6, 10) and plain.sample_rate == 16000 and plain.audio.shape == (1600,)
    s = load_manifest(path, image_channels=1, image_size=[8, 8], sample_rate=SR)["train"][0]
    assert s.image.shape == (1, 8, 8) and s.sample_rate == SR and s.audio.shape == (800,)
    assert load_manifest(path, image_size=4)["val"][0].image.shape == (3, 4, 4)


def test_integer_labels_are_used_as_they_are(tmp_path):
    rows = [[s, lab, f"t {lab} {s}"] for lab in (0, 2, 5) for s in ("train", "val", "test")]
    splits = load_manifest(_manifest(tmp_path / "m.csv", ["split", "label", "text"], rows))
    assert sorted(s.label for s in splits["train"]) == [0, 2, 5]
    assert splits.classes == ["0", "1", "2", "3", "4", "5"]
    assert [s.target for s in splits["test"]] == ["0", "2", "5"]


def test_missing_splits_are_carved_stratified_and_seeded(tmp_path):
    rows = [[f"{name}{k}", name, f"{name} {k}"] for name in CLASSES for k in range(20)]
    path = _manifest(tmp_path / "m.csv", ["id", "label", "text"], rows)
    a = load_manifest(path, seed=3)
    counts = {n: Counter(s.target for s in a[n]) for n in a}
    assert counts == {"train": dict.fromkeys(CLASSES, 14), "val": dict.fromkeys(CLASSES, 3), "test": dict.fromkeys(CLASSES, 3)}
    every = [i for n in a for i in _ids(a[n])]
    assert sorted(every) == sorted(r[0] for r in rows)  # disjoint and complete
    order = {r[0]: i for i, r in enumerate(rows)}
    assert all(_ids(a[n]) == sorted(_ids(a[n]), key=order.get) for n in a)  # manifest order kept
    b = load_manifest(path, seed=3)
    assert all(_ids(a[n]) == _ids(b[n]) for n in a)
    c = load_manifest(path, seed=4)
    assert _ids(a["val"]) != _ids(c["val"])
    d = load_manifest(path, val_fraction=0.25, test_fraction=0.1)
    assert Counter(s.target for s in d["val"]) == dict.fromkeys(CLASSES, 5)
    assert Counter(s.target for s in d["test"]) == dict.fromkeys(CLASSES, 2)


def test_only_train_and_test_given_carves_val_from_train(tmp_path):
    rows = [["test" if k < 2 else "train", f"{name}{k}", name, f"{name} {k}"] for name in CLASSES for k in range(12)]
    splits = load_manifest(_manifest(tmp_path / "m.csv", ["split", "id", "label", "text"], rows), val_fraction=0.2)
    assert sorted(_ids(splits["test"])) == sorted(f"{n}{k}" for n in CLASSES for k in range(2))
    assert Counter(s.target for s in splits["val"]) == dict.fromkeys(CLASSES, 2)  # round(0.2 * 10)
    assert Counter(s.target for s in splits["train"]) == dict.fromkeys(CLASSES, 8)


def test_a_class_too_small_to_carve_stays_in_train_and_an_empty_split_is_an_error(tmp_path):
    rows = [["a", "x"], ["b", "y"]]
    with pytest.raises(ValueError, match=r"the val split is empty; val was carved with val_fraction=0.15"):
        load_manifest(_manifest(tmp_path / "m.csv", ["label", "text"], rows))


def test_relative_paths_resolve_against_the_manifest_folder_or_root(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _png(data / "img" / "a.png", _image(0, 0))
    _wav(data / "a.wav", _tone(0, 0))
    absolute = _png(tmp_path / "elsewhere" / "b.png", _image(1, 0))
    rows = [["train", "img/a.png", "a.wav"], ["val", "img/a.png", ""], ["test", str(absolute), ""]]
    inside = _manifest(data / "m.csv", ["split", "label", "image", "audio"], [[s, "0", i, a] for s, i, a in rows])
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the manifest's folder
    splits = load_manifest(Path("..") / "data" / "m.csv")
    assert torch.equal(splits["train"][0].image[0], torch.from_numpy(_image(0, 0)).float() / 255)
    assert splits["train"][0].audio.shape == (1600,)
    assert torch.equal(splits["test"][0].image[0], torch.from_numpy(_image(1, 0)).float() / 255)
    # the same rows in a manifest kept somewhere else, with root pointing at the files
    outside = _manifest(tmp_path / "lists" / "m.csv", ["split", "label", "image", "audio"],
                        [[s, "0", i, a] for s, i, a in rows])
    with pytest.raises(ValueError, match="does not exist"):
        load_manifest(outside)
    assert torch.equal(load_manifest(outside, root=data)["val"][0].image, splits["val"][0].image)
    assert inside.exists()


# ---------------------------------------------------------------- bad rows
def _bad_case(tmp_path: Path, kind: str) -> tuple[Path, int, str, str]:
    """A good tri-split dataset plus one bad row; returns (manifest, line, id, reason)."""
    good, _ = _dataset(tmp_path, per_class=3)
    with open(good, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    folder = tmp_path
    row = {"split": "train", "id": "bad", "label": "cat", "image": "", "audio": "", "text": ""}
    if kind == "missing file":
        row["image"], reason = "img/nowhere.png", "does not exist"
    elif kind == "broken png":
        (folder / "img" / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
        row["image"], reason = "img/broken.png", "not an image"
    elif kind == "truncated png":
        data = (folder / "img" / "cat0.png").read_bytes()
        (folder / "img" / "cut.png").write_bytes(data[: len(data) // 2])
        row["image"], reason = "img/cut.png", "corrupt or truncated"
    elif kind == "truncated wav":
        _wav(folder / "wav" / "long.wav", _tone(0, 0, n=4000), subtype="PCM_16")
        data = (folder / "wav" / "long.wav").read_bytes()
        (folder / "wav" / "cut.wav").write_bytes(data[:-3000])
        row["audio"], reason = "wav/cut.wav", "is truncated"
    elif kind == "empty wav":
        (folder / "wav" / "empty.wav").write_bytes(b"")
        row["audio"], reason = "wav/empty.wav", "is empty (0 bytes)"
    elif kind == "no modality":
        reason = "no modality"
    elif kind == "unknown label":
        row.update(split="val", label="yak", text="a yak")
        reason = "label 'yak' of this val row never occurs in the train split"
    elif kind == "bad split":
        row.update(split="dev", text="x")
        reason = "split 'dev' is not one of"
    elif kind == "empty label":
        row.update(label=" ", text="x")
        reason = "no label"
    elif kind == "duplicate id":
        row.update(id="cat0", text="x")
        first = [r[header.index("id")] for r in body].index("cat0") + 2  # before the bad row, at index 5
        reason = f"duplicate id, already used on line {first}"
    else:
        raise AssertionError(kind)
    cells = [row[c] for c in header]
    at = 5  # index in body: line at + 2
    body.insert(at, cells)
    return _manifest(tmp_path / "bad.csv", header, body), at + 2, row["id"], reason


BAD_KINDS = [
    "missing file", "broken png", "truncated png", "truncated wav", "empty wav",
    "no modality", "unknown label", "bad split", "empty label", "duplicate id",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_row_raises_naming_manifest_line_id_and_problem(tmp_path, kind):
    path, line, rid, reason = _bad_case(tmp_path, kind)
    with pytest.raises(ValueError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert f"manifest {str(path)!r}, line {line} (id {rid!r})" in msg
    assert reason in msg and "on_error='skip'" in msg


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_row_is_skipped_logged_and_counted(tmp_path, kind, caplog):
    path, line, rid, reason = _bad_case(tmp_path, kind)
    with caplog.at_level(logging.WARNING, logger="graphmm.data.manifest"):
        splits = load_manifest(path, on_error="skip")
    assert splits.skipped == 1 and splits.skipped_rows[0][:2] == (line, rid)
    kept = [i for n in splits for i in _ids(splits[n])]
    assert len(kept) == 9 and (rid not in kept or kind == "duplicate id")
    assert kept.count("cat0") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"line {line} (id {rid!r})" in w and reason in w for w in warnings)
    assert any("skipped 1 of 10 rows while reading" in w for w in warnings)


def test_a_class_whose_train_files_are_all_bad_takes_its_val_rows_along(tmp_path, caplog):
    path, *_ = _bad_case(tmp_path, "broken png")
    with open(path, "a", newline="") as f:
        csv.writer(f).writerows([["train", "yak0", "yak", "img/broken.png", "", ""], ["val", "yak1", "yak", "", "", "a yak"]])
    with caplog.at_level(logging.WARNING, logger="graphmm.data.manifest"):
        splits = load_manifest(path, on_error="skip")
    assert [r[1] for r in splits.skipped_rows] == ["bad", "yak0", "yak1"] and splits.classes == ["cat", "dog", "owl"]
    assert "label 'yak' of this val row never occurs in the train split" in caplog.text
    with pytest.raises(ValueError, match="id 'bad'.*not an image"):  # raise: the first bad line
        load_manifest(path)


def test_unreadable_rows_wrong_cell_count_and_no_id(tmp_path, caplog):
    _png(tmp_path / "a.png", _image(0, 0))
    lines = ["split,label,image,text", "train,a,a.png,x", "val,a,a.png,x", "test,a,a.png,x",
             'train,a,a.png,"x",extra', "train,a", '"train","a","","a ""quoted""\nsecond line"']
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"manifest {str(path)!r}, line 5 (no id): unreadable row: 5 cells")):
        load_manifest(path)
    with caplog.at_level(logging.WARNING, logger="graphmm.data.manifest"):
        splits = load_manifest(path, on_error="skip")
    assert splits.skipped == 2 and [r[0] for r in splits.skipped_rows] == [5, 6]
    assert splits["train"][-1].text == 'a "quoted"\nsecond line' and splits["train"][-1].id == "m.csv:7"
    assert "line 6 (no id): unreadable row: 2 cells" in caplog.text


def test_negative_integer_label_is_a_bad_row(tmp_path):
    rows = [[s, lab, "t"] for lab in (0, 1) for s in ("train", "val", "test")] + [["train", -1, "t"]]
    path = _manifest(tmp_path / "m.csv", ["split", "label", "text"], rows)
    with pytest.raises(ValueError, match=r"line 8 \(no id\): label -1 is negative"):
        load_manifest(path)
    assert load_manifest(path, on_error="skip").skipped == 1


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "is empty"),
        ("split,label,text\n", "has a header but no rows"),
        ("split,image,text\ntrain,a.png,x\n", "has no 'label' column"),
        ("split,label,note\ntrain,a,x\n", "none of the modality columns"),
        ("label,text,Text\na,x,y\n", r"\['text'\] appear more than once"),
        (b"label,text\na,\xff\xfe\n", "is not UTF-8"),
    ],
)
def test_a_manifest_that_cannot_be_used_raises_under_either_policy(tmp_path, content, match):
    path = tmp_path / "m.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for policy in ("raise", "skip"):
        with pytest.raises(ValueError, match=match):
            load_manifest(path, on_error=policy)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_manifest(tmp_path / "nowhere.csv")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_error": "ignore"}, "on_error must be"),
        ({"on_file_error": "warn"}, "on_error must be"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "must be < 1"),
        ({"image_channels": 2}, "image_channels must be"),
        ({"image_size": [8]}, "image_size must be"),
        ({"sample_rate": 0}, "sample_rate must be"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    path = _manifest(tmp_path / "m.csv", ["label", "text"], [["a", "x"]])
    with pytest.raises(ValueError, match=match):
        load_manifest(path, **kwargs)


def test_on_file_error_replaces_on_error(tmp_path):
    path, *_ = _bad_case(tmp_path, "broken png")
    assert load_manifest(path, on_error="raise", on_file_error="skip").skipped == 1
    with pytest.raises(ValueError, match="not an image"):
        load_manifest(path, on_error="skip", on_file_error="raise")


# ---------------------------------------------------------------- Hydra and training
def test_config_requires_a_path_and_passes_on_error_to_the_loader(make_cfg, tmp_path):
    cfg = make_cfg(["data=manifest"])
    assert OmegaConf.get_type(cfg.data).__name__ == "ManifestDataConf"
    with pytest.raises(MissingMandatoryValue):
        _ = cfg.data.path
    with pytest.raises(MissingMandatoryValue, match="Missing mandatory value: path"):
        load_splits(cfg.data)  # also from the command line, before any file is read
    path, *_ = _bad_case(tmp_path, "truncated wav")
    cfg = make_cfg(["data=manifest", f"data.path={path}", "data.on_error=skip"])
    assert cfg.data.on_file_error == "skip" and cfg.data.sample_rate == cfg.graph.audio.sample_rate
    splits, on_error = load_splits(cfg.data)
    assert on_error == "skip" and splits.skipped == 1
    cfg = make_cfg(["data=manifest", f"data.path={path}"])
    with pytest.raises(Exception, match="is truncated") as err:
        load_splits(cfg.data)
    _assert_value_error(err.value)
    assert make_cfg(["data=manifest", "data.path=x.csv", "graph.audio=null"]).data.sample_rate is None


def _assert_value_error(err: BaseException) -> None:
    """The loader's ValueError, as raised or as the cause of Hydra's InstantiationException."""
    assert isinstance(err, ValueError) or isinstance(err.__cause__, ValueError), repr(err)


FAST = ["debug=fast", "model.hidden=16", "model.heads=2", "model.num_layers=1", "trainer.batch_size=8"]


def test_train_end_to_end_on_a_manifest(make_cfg, tmp_path, caplog):
    folder = tmp_path / "files"
    path, _ = _dataset(folder, per_class=8, split=False)
    (folder / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(["broken", "cat", "img/broken.png", "", ""])
    cfg = make_cfg(["data=manifest", f"data.path={path}", *FAST])
    with pytest.raises(Exception, match=r"line 26 \(id 'broken'\): image file .*broken.png") as err:
        train(cfg)
    _assert_value_error(err.value)
    cfg = make_cfg(["data=manifest", f"data.path={path}", "data.on_error=skip", *FAST])
    with caplog.at_level(logging.WARNING, logger="graphmm.data.manifest"):
        metrics = train(cfg)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert 0.0 <= written["test/acc"] <= 1.0 and written["epochs"] == 2
    assert "skipped 1 of 25 rows while reading" in caplog.text
    assert metrics["data/skipped"] == 1  # the broken file, dropped while reading
    # the label names travel with the checkpoint and label the confusion matrix
    from graphmm.predict import load_predictor

    predictor = load_predictor(tmp_path / "run" / "checkpoints" / "best.pt")
    assert predictor.class_names == ["cat", "dog", "owl"]
    assert "cat" in (tmp_path / "run" / "confusion.csv").read_text()


# ---------------------------------------------------------------- large inputs (issue 17, section 3)
def test_a_huge_image_is_resized_at_load_time_to_the_first_train_image_size(tmp_path, caplog):
    rows = [[s, name, _png(tmp_path / f"{name}{s}.png", _image(c, 0)).name]
            for c, name in enumerate(CLASSES[:2]) for s in ("train", "val", "test")]
    big = np.random.default_rng(0).integers(0, 255, (2000, 2000), dtype=np.uint8)
    rows.append(["train", "owl", _png(tmp_path / "big.png", big).name])  # 4 million pixels
    path = _manifest(tmp_path / "m.csv", ["split", "label", "image"], rows)
    with caplog.at_level(logging.INFO, logger="graphmm.data.manifest"):
        splits = load_manifest(path)
    assert {tuple(s.image.shape) for n in splits for s in splits[n]} == {(1, 8, 8)}
    assert "resized 1 of 7 images to 8 x 8" in caplog.text
    # a stated size wins; one over the pixel budget is refused before any file is read
    assert load_manifest(path, image_size=[4, 6])["train"][-1].image.shape == (1, 4, 6)
    with pytest.raises(ValueError, match=r"image_size \[2000, 2000\] has 4000000 pixels, over max_image_pixels"):
        load_manifest(path, image_size=[2000, 2000])


def test_an_image_over_the_pixel_budget_is_a_bad_row_naming_the_file(tmp_path):
    rows = [[s, name, f"{name} text {s}", ""] for name in ("cat", "dog") for s in ("train", "val", "test")]
    rows.append(["train", "dog", "", _png(tmp_path / "huge.png", np.zeros((40, 40), np.uint8)).name])
    path = _manifest(tmp_path / "m.csv", ["split", "label", "text", "image"], rows)
    with pytest.raises(ValueError, match=r"line 8 .*huge.png' is 40 x 40 = 1600 pixels, over data.max_image_pixels=1000"):
        load_manifest(path, max_image_pixels=1000)
    splits = load_manifest(path, max_image_pixels=1000, on_error="skip")
    assert splits.skipped == 1 and "huge.png" in splits.skipped_rows[0][2] and len(splits["train"]) == 2
    assert load_manifest(path, max_image_pixels=None)["train"][-1].image.shape == (1, 40, 40)


def test_mixed_rgb_and_greyscale_names_the_key_and_a_file_of_each_kind(tmp_path):
    rows = [[s, "cat", _png(tmp_path / f"g{s}.png", _image(0, 1)).name] for s in ("train", "val", "test")]
    rows.append(["train", "cat", _png(tmp_path / "colour.png", np.zeros((8, 8, 3), np.uint8)).name])
    path = _manifest(tmp_path / "m.csv", ["split", "label", "image"], rows)
    for policy in ("raise", "skip"):  # a setting to fix, not a bad row
        with pytest.raises(ValueError, match="data.image_channels") as err:
            load_manifest(path, on_error=policy)
        assert "gtrain.png' (line 2) is greyscale" in str(err.value) and "colour.png' (line 5) is RGB" in str(err.value)
    for channels in (1, 3):
        splits = load_manifest(path, image_channels=channels)
        assert {s.image.shape[0] for n in splits for s in splits[n]} == {channels}


def test_long_inline_text_and_text_files(tmp_path, caplog):
    long_text = "word " * 40_000  # 200,000 characters: over csv's default cell limit of 131,072
    (tmp_path / "doc.txt").write_text("a text from a file\n", encoding="utf-8")
    rows = [["train", "cat", long_text, ""], ["val", "cat", "short", ""], ["test", "cat", "", "doc.txt"],
            ["train", "cat", "", "nowhere.txt"], ["train", "cat", "both", "doc.txt"]]
    path = _manifest(tmp_path / "m.csv", ["split", "label", "text", "text_file"], rows)
    with pytest.raises(ValueError, match=r"line 6 \(no id\): both text and text_file are filled"):
        load_manifest(path)
    with caplog.at_level(logging.WARNING, logger="graphmm.data.manifest"):
        splits = load_manifest(path, on_error="skip")
    assert splits["train"][0].text == long_text and splits["test"][0].text == "a text from a file\n"
    # rows that do not parse are reported first, then rows whose files fail
    assert [r[0] for r in splits.skipped_rows] == [6, 5]
    assert "text file" in splits.skipped_rows[1][2] and "nowhere.txt' does not exist" in splits.skipped_rows[1][2]
    assert len(long_text) > csv.field_size_limit()  # the reader put the process-wide limit back


def test_train_counts_skips_once_and_truncations_and_lists_skips_in_skipped_csv(make_cfg, tmp_path, caplog):
    folder = tmp_path / "files"
    path, written = _dataset(folder, per_class=8, split=False)
    (folder / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _wav(folder / "wav" / "blip.wav", np.zeros(10, np.float32))  # readable, but shorter than one frame
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        w.writerow(["broken", "cat", "img/broken.png", "", ""])  # line 26: dropped while reading
        w.writerow(["blip", "cat", "", "wav/blip.wav", ""])  # line 27: dropped by the graph checks
        w.writerow(["long", "dog", "", "", "bark " * 200])  # over max_tokens=50
    cfg = make_cfg(["data=manifest", f"data.path={path}", "data.on_error=skip", "graph.text.max_tokens=50", *FAST])
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "skipped.csv", encoding="utf-8")))
    assert [(r["stage"], r["id"]) for r in rows] == [("read", "broken"), ("screen", "blip")]
    assert rows[0]["source"].endswith("manifest.csv:26") and "not an image" in rows[0]["reason"]
    assert rows[1]["split"] in ("train", "val", "test") and "shorter than one" in rows[1]["reason"]
    assert metrics["data/skipped"] == 2 == json.loads((run / "metrics.json").read_text())["data/skipped"]
    data_line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data: "))
    assert "(skipped 2: 1 while reading the files" in data_line
    long_docs = sum(len(t["text"].split()) > 50 for t in written.values())  # 0: the written texts are short
    assert metrics["data/truncated"] == long_docs + 1
    assert "truncated 1 document(s) to graph.text.max_tokens=50" in caplog.text
