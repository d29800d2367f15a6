r"""``textcls``: sentence and document classification corpora in the TextGCN layout.

The layout (the data folders of TextGCN and TextING; MR, TREC, SST1, SST2, WebKB):

.. code-block:: text

    <root>/<name>.txt                 one line per document: doc_id<TAB>train|test<TAB>label
    <root>/corpus/<name>.txt          the raw text, line i is document i
    <root>/corpus/<name>.clean.txt    the same, lower-cased and tokenised (optional)

Line ``i`` of the labels file and line ``i`` of the corpus file are one document; the
``doc_id`` field is not used for the pairing (it is the line index in these corpora,
but a file name in others). ``name`` is matched case-insensitively when no file has
the exact name (``trec`` finds ``TREC.txt``).

**Splits.** The file's own train/test split is kept; validation is carved out of
train, ``round(val_fraction * n_train)`` documents, stratified by label and seeded
(:func:`~graphmm.data.io.stratified_holdout`). Every split keeps file order.

**Labels** are strings. The train labels, sorted (by value when they are all
integers, see :func:`~graphmm.data.io.class_index`), give the class ids; the result
keeps them in :attr:`~graphmm.data.io.DataSplits.classes`. ``label_map`` renames
labels first (WebKB's labels file truncates a few labels, ``studen`` for
``student``; ``graphmm/conf/experiment/webkb.yaml`` maps them back).

**Line counts.** Both files are read line by line as an editor numbers them
(:func:`~graphmm.data.io.read_text_lines`: ``\r\n`` line ends, a missing or present
final newline, UTF-8 or Windows-1252 text). The rule for files of different lengths:

- extra corpus lines after the last labelled document are ignored **only when they
  are blank**. This is the known quirk of MR: ``corpus/mr.txt`` ends its last line
  with ``\r\n`` while ``mr.txt`` has no final newline, so splitting the raw bytes at
  ``\n`` (or ``wc -l``) shows the corpus one line longer than the labels; a file
  ending in a stray empty line is the same case. Blank lines at the end of the labels
  file are likewise ignored;
- any other difference, a labels line without a corpus line or a non-blank corpus
  line without a labels line, raises a :class:`ValueError` naming the file and the
  first unmatched line, **whatever** ``on_file_error`` says: the pairing is by line
  number, so a line missing in the middle shifts every label after it, and skipping
  the unmatched tail would hide that.

**Label leaks.** TREC's corpus starts every question with its fine-grained label
(``manner How did serfdom develop ...``, 47 distinct names); that first token alone
gives the coarse class of 94 % of the questions. ``skip_tokens=1`` drops it
(``graphmm/conf/experiment/trec.yaml`` does).

**Bad documents.** A labels line that does not parse (not three tab-separated fields,
a split other than ``train``/``test``, an empty label), an empty (blank) document and
a test document whose label never occurs in train are bad. With
``on_file_error="raise"`` the first one raises a :class:`ValueError` naming the file,
the line and the problem; with ``"skip"`` each one is logged, left out and counted in
:attr:`~graphmm.data.io.DataSplits.skipped`. Very short documents (one token) are
kept.

Example:
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, "corpus"))
    >>> rows = [(i, "train" if i < 8 else "test", "pos" if i % 2 else "neg") for i in range(10)]
    >>> _ = open(os.path.join(root, "toy.txt"), "w").write("\n".join("\t".join(map(str, r)) for r in rows))
    >>> _ = open(os.path.join(root, "corpus", "toy.txt"), "w").write(
    ...     "".join(f"a {'good' if i % 2 else 'bad'} film {i}\n" for i in range(10)))
    >>> splits = load_textcls(root, "toy", val_fraction=0.25)
    >>> splits.sizes(), splits.classes
    ({'train': 6, 'val': 2, 'test': 2}, ['neg', 'pos'])
    >>> splits["test"][0]
    Sample(id='toy/9', label=0, text='a bad film 8', target='neg')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from graphmm.data.io import (
    DataSplits,
    FilePolicy,
    class_index,
    holdout_split,
    read_text_lines,
    require_splits,
)
from graphmm.data.sample import Sample

__all__ = ["load_textcls", "textcls_files"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

_SPLITS = ("train", "test")


def list_corpora(root: PathLike) -> list[str]:
    """Names of the corpora under ``root``: each ``<name>.txt`` with a ``corpus/<name>.txt``.

    Args:
        root: The text data folder (``data.root``).

    Returns:
        The names, sorted; ``[]`` when ``root`` is not a folder.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        return []
    return sorted(p.stem for p in base.glob("*.txt") if (base / "corpus" / p.name).is_file())


def textcls_files(root: PathLike, name: str, clean: bool | str = "auto") -> tuple[Path, Path]:
    """The labels file and the corpus file of corpus ``name`` under ``root``.

    Args:
        root: Folder holding ``<name>.txt`` and ``corpus/``.
        name: Corpus name; matched case-insensitively when no file has the exact name.
        clean: ``True`` for ``corpus/<name>.clean.txt``, ``False`` for the raw
            ``corpus/<name>.txt``, ``"auto"`` for the clean file when there is one.
            Default: ``"auto"``.

    Returns:
        ``(labels_file, corpus_file)``.

    Raises:
        FileNotFoundError: ``root``, the labels file or the corpus file is missing; the
            message lists the corpora ``root`` does have.
        ValueError: ``clean`` is not ``True``, ``False`` or ``"auto"``, or ``name``
            matches several files that differ only in case.
    """
    if clean not in (True, False, "auto"):
        raise ValueError(f"clean must be True, False or 'auto', got {clean!r}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(
            f"text data folder {str(base)!r} does not exist; pass the folder holding <name>.txt and corpus/ "
            f"(data.root, or set GRAPHMM_DATA to the folder above text/)"
        )
    labels = base / f"{name}.txt"
    if not labels.is_file():
        found = sorted(p for p in base.glob("*.txt") if p.stem.lower() == str(name).lower())
        if len(found) > 1:
            raise ValueError(
                f"text data folder {str(base)!r}: {name!r} matches {[p.name for p in found]}, which differ only "
                f"in case; pass the exact name"
            )
        if not found:
            have = list_corpora(base)
            raise FileNotFoundError(
                f"text data folder {str(base)!r} has no corpus {name!r} (no {name}.txt); corpora there: {have}"
            )
        labels = found[0]
    stem = labels.stem
    clean_file, raw_file = base / "corpus" / f"{stem}.clean.txt", base / "corpus" / f"{stem}.txt"
    if clean == "auto":
        corpus = clean_file if clean_file.is_file() else raw_file
    else:
        corpus = clean_file if clean else raw_file
    if not corpus.is_file():
        other = raw_file if clean else clean_file
        hint = f"; {other.name} exists: set clean={not clean}" if clean != "auto" and other.is_file() else ""
        raise FileNotFoundError(f"corpus file {str(corpus)!r} of {labels.name!r} does not exist{hint}")
    return labels, corpus


def load_textcls(
    root: PathLike,
    name: str,
    val_fraction: float = 0.1,
    seed: int = 0,
    clean: bool | str = "auto",
    on_file_error: str = "raise",
    label_map: Mapping[str, str] | None = None,
    skip_tokens: int = 0,
) -> DataSplits:
    """Load a TextGCN-layout corpus into train/val/test text samples.

    See the module docstring for the layout, the line-count rule and bad documents.

    Args:
        root: Folder holding ``<name>.txt`` and ``corpus/`` (e.g. ``../shared/data/text``).
        name: Corpus name (``mr``, ``trec``, ``sst1``, ``sst2``, ``webkb``, ...);
            case-insensitive when no file has the exact name.
        val_fraction: Share of the train documents held out as validation, stratified
            by label, in ``[0, 1)``. Default: ``0.1``.
        seed: Seed of the validation hold-out. Default: ``0``.
        clean: ``True`` reads ``corpus/<name>.clean.txt``, ``False`` the raw
            ``corpus/<name>.txt``, ``"auto"`` the clean file when it exists.
            Default: ``"auto"``.
        on_file_error: ``"raise"`` or ``"skip"``: what a bad labels line or document
            does. Default: ``"raise"``.
        label_map: Renames labels before anything else, e.g. ``{"studen": "student"}``;
            labels not in it stay as they are. Default: ``None``.
        skip_tokens: Drop the first ``skip_tokens`` whitespace-separated tokens of every
            document (TREC: ``1``, its fine-grained label). Default: ``0``.

    Returns:
        DataSplits: ``{"train", "val", "test"}`` lists of :class:`Sample` with ``text``
        (the corpus line without surrounding whitespace and the skipped tokens), ``label`` (class id),
        ``target`` (class name) and ``id`` ``"<name>/<line>"``, where ``<line>`` is the
        1-based line of the document in both files; plus ``classes`` and ``skipped``.

    Raises:
        FileNotFoundError: A folder or file is missing.
        ValueError: An argument is out of range, the two files differ in length (see
            the module docstring), a split ends up empty, or (``on_file_error="raise"``)
            a line is bad; the message names the file and the line.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if isinstance(skip_tokens, bool) or not isinstance(skip_tokens, int) or skip_tokens < 0:
        raise ValueError(f"skip_tokens must be an int >= 0, got {skip_tokens!r}")
    policy = FilePolicy(on_file_error)
    labels_file, corpus_file = textcls_files(root, name, clean)
    label_lines = read_text_lines(labels_file, "labels")
    corpus = read_text_lines(corpus_file, "corpus")
    label_lines = _drop_trailing_blank(label_lines)
    n = len(label_lines)
    if n == 0:
        raise ValueError(f"labels file {str(labels_file)!r} has no lines")
    corpus = _align(labels_file, corpus_file, n, corpus)
    split, label_of, texts = _parse_documents(
        label_lines, corpus, labels_file, corpus_file, policy, dict(label_map or {}), skip_tokens
    )
    classes, ids = _class_ids(split, label_of, labels_file, policy)
    train_idx, val_idx = holdout_split(np.flatnonzero(split == 0), ids[split == 0], val_fraction, seed)
    parts = {"train": train_idx, "val": val_idx, "test": np.flatnonzero(split == 1)}
    out = DataSplits(
        {
            key: [
                Sample(text=texts[i], label=int(ids[i]), target=classes[ids[i]], id=f"{name}/{i + 1}")
                for i in idx.tolist()
            ]
            for key, idx in parts.items()
        },
        classes=classes,
        skipped_items=policy.skipped,
        source=str(labels_file),
    )
    require_splits(out, f"labels file {str(labels_file)!r}")
    if policy.skipped:
        log.warning("%s: skipped %d of %d documents (reasons above)", labels_file, len(policy.skipped), n)
    log.info("textcls %s (%s): %s, %d classes", name, corpus_file.name, out.sizes(), len(classes))
    return out


def _parse_documents(
    label_lines: list[str],
    corpus: list[str],
    labels_file: Path,
    corpus_file: Path,
    policy: FilePolicy,
    rename: Mapping[str, str],
    skip_tokens: int,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Parse every labels line with its document; bad ones go to ``policy``.

    Returns:
        ``(split, label_of, texts)``: per document its split (0 train, 1 test, -1 left
        out), its label after ``rename`` and its text after ``skip_tokens``.
    """
    n = len(label_lines)
    split = np.full(n, -1, dtype=np.int64)
    label_of: list[str] = [""] * n
    texts: list[str] = [""] * n
    for i, (lab_line, doc) in enumerate(zip(label_lines, corpus)):
        parsed = _parse_label_line(lab_line)
        if isinstance(parsed, str):
            policy.bad(f"labels file {str(labels_file)!r}, line {i + 1}", parsed)
            continue
        text = _document_text(doc, skip_tokens, f"corpus file {str(corpus_file)!r}, line {i + 1}", policy)
        if text is None:
            continue
        split[i] = _SPLITS.index(parsed[0])
        label_of[i] = rename.get(parsed[1], parsed[1])
        texts[i] = text
    return split, label_of, texts


def _document_text(doc: str, skip_tokens: int, where: str, policy: FilePolicy) -> str | None:
    """The corpus line without surrounding whitespace and its first ``skip_tokens``
    tokens; ``None`` (reported to ``policy``) when nothing is left."""
    text = doc.strip()
    if skip_tokens and text:
        parts = text.split(None, skip_tokens)
        text = parts[skip_tokens] if len(parts) > skip_tokens else ""
        if not text:
            policy.bad(
                where,
                f"empty document once its first {skip_tokens} token(s) are skipped (skip_tokens={skip_tokens})",
            )
            return None
    if not text:
        policy.bad(where, "empty document (a blank line); give it text or delete its line in both files")
        return None
    return text


def _class_ids(
    split: np.ndarray, label_of: list[str], labels_file: Path, policy: FilePolicy
) -> tuple[list[str], np.ndarray]:
    """Class names from the train labels and the class id of every document (-1 for
    those left out). A test document whose label train lacks goes to ``policy`` and
    leaves the test split (``split`` is updated in place)."""
    train_labels = {label_of[i] for i in np.flatnonzero(split == 0)}
    if not train_labels:
        raise ValueError(f"labels file {str(labels_file)!r} has no usable train line")
    for i in np.flatnonzero(split == 1):
        if label_of[i] not in train_labels:
            policy.bad(
                f"labels file {str(labels_file)!r}, line {i + 1}",
                f"test label {label_of[i]!r} never occurs in the train split (train labels: "
                f"{sorted(train_labels)}); rename it with label_map={{{label_of[i]!r}: '<train label>'}}",
            )
            split[i] = -1
    classes, to_id = class_index(train_labels)
    kept = np.flatnonzero(split >= 0)
    ids = np.full(len(split), -1, dtype=np.int64)
    ids[kept] = [to_id[label_of[i]] for i in kept]
    return classes, ids


def _drop_trailing_blank(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]


def _align(labels_file: Path, corpus_file: Path, n: int, corpus: list[str]) -> list[str]:
    """Apply the line-count rule of the module docstring; returns ``corpus[:n]``."""
    if len(corpus) > n:
        extra = [j for j, line in enumerate(corpus[n:]) if line.strip()]
        if extra:
            line = n + extra[0] + 1
            raise ValueError(
                f"corpus file {str(corpus_file)!r}, line {line}: has no labels line in {str(labels_file)!r}, "
                f"which has {n} lines; the corpus has {len(corpus)}. Line i of both files is one document, "
                f"so every corpus line needs its labels line"
            )
        log.debug(
            "corpus file %s: ignoring %d blank line(s) after the last document", corpus_file, len(corpus) - n
        )
        return corpus[:n]
    if len(corpus) < n:
        raise ValueError(
            f"labels file {str(labels_file)!r}, line {len(corpus) + 1}: has no corpus line in "
            f"{str(corpus_file)!r}, which has {len(corpus)} lines for {n} labels lines. Line i of both files "
            f"is one document, so every labels line needs its corpus line"
        )
    return corpus


def _parse_label_line(line: str) -> tuple[str, str] | str:
    """``(split, label)`` of a ``doc_id<TAB>split<TAB>label`` line, or the problem."""
    parts = line.split("\t")
    if len(parts) != 3:
        return (
            f"expected 3 tab-separated fields doc_id, train|test, label; got {len(parts)} in {line[:80]!r}"
        )
    split, label = parts[1].strip().lower(), parts[2].strip()
    if split not in _SPLITS:
        return f"split {parts[1]!r} is neither 'train' nor 'test'"
    if not label:
        return "empty label"
    return split, label


#: Samples carry labels, no target text: a generation model cannot train on them.
load_textcls.provides_targets = False  # type: ignore[attr-defined]
