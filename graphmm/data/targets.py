"""Target text for generation heads: tokenisation, vocabulary, padding.

A :class:`TargetVocab` turns target strings such as ``"three one four"`` into token
ids for a decoder and back. It is fitted on the training targets only and saved with
the checkpoint (:meth:`TargetVocab.state_dict` holds plain Python types, so it loads
with ``torch.load(weights_only=True)``), so that a new process decodes with exactly
the ids the model was trained with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = ["TargetVocab", "PAD", "BOS", "EOS", "UNK"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
_LEVELS = ("word", "char")


class TargetVocab:
    """Word- or character-level vocabulary of target texts, with special tokens.

    Ids 0-3 are ``<pad>``, ``<bos>``, ``<eos>`` and ``<unk>``; the tokens of the
    training targets follow, most frequent first (ties alphabetically), so the ids
    depend only on the training targets.

    * ``level="word"`` splits on whitespace and joins decoded tokens with one space.
    * ``level="char"`` keeps every character, spaces included, and joins with ``""``.

    Handling of bad targets: an empty (or whitespace-only) target raises a
    ``ValueError`` naming the sample, since there is nothing to learn or score. A token
    that the training targets never contained encodes as ``<unk>`` by default
    (``on_unknown="unk"``), so validation and test samples with new words still
    load and simply count as errors in the metrics; ``on_unknown="raise"`` makes it an
    error that names the sample and the tokens instead.

    Args:
        level: ``"word"`` or ``"char"``. Default: ``"word"``.
        min_freq: Tokens seen fewer times in training become ``<unk>``. Default: ``1``.
        lowercase: Lower-case targets before tokenising. Default: ``True``.
        on_unknown: ``"unk"`` or ``"raise"``. Default: ``"unk"``.

    Example:
        >>> vocab = TargetVocab().fit(["three one four", "one five"])
        >>> ids = vocab.encode("one four")
        >>> ids
        [1, 4, 6, 2]
        >>> vocab.decode(ids)
        'one four'
        >>> TargetVocab.from_state_dict(vocab.state_dict()).decode(ids)
        'one four'
    """

    def __init__(
        self, level: str = "word", min_freq: int = 1, lowercase: bool = True, on_unknown: str = "unk"
    ) -> None:
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {list(_LEVELS)}, got {level!r}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if on_unknown not in ("unk", "raise"):
            raise ValueError(f"on_unknown must be 'unk' or 'raise', got {on_unknown!r}")
        self.level = level
        self.min_freq = min_freq
        self.lowercase = lowercase
        self.on_unknown = on_unknown
        self.itos: list[str] = list(_SPECIALS)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        self.fitted = False

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str, where: str = "target") -> list[str]:
        """Split ``text`` into tokens; ``ValueError`` naming ``where`` if it is empty."""
        if not isinstance(text, str):
            raise ValueError(f"{where}: target must be a str, got {type(text).__name__}")
        if self.lowercase:
            text = text.lower()
        tokens = text.split() if self.level == "word" else list(" ".join(text.split()))
        if not tokens:
            raise ValueError(f"{where}: target text is empty; a generation sample needs a non-empty target")
        return tokens

    def fit(self, targets: Iterable[str]) -> TargetVocab:
        """Build the vocabulary from training targets (replacing any earlier one)."""
        counts: Counter[str] = Counter()
        n = 0
        for i, t in enumerate(targets):
            counts.update(self.tokenize(t, where=f"training target {i}"))
            n += 1
        if n == 0:
            raise ValueError("cannot fit a target vocabulary on zero targets")
        kept = sorted((t for t, c in counts.items() if c >= self.min_freq and t not in self.stoi),
                      key=lambda t: (-counts[t], t))
        self.itos = list(_SPECIALS) + kept
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.fitted = True
        return self

    def encode(self, text: str, where: str = "target") -> list[int]:
        """``[<bos>, tokens..., <eos>]`` as ids."""
        tokens = self.tokenize(text, where)
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        if self.on_unknown == "raise" and self.unk_id in ids:
            unknown = sorted({t for t in tokens if t not in self.stoi})
            raise ValueError(f"{where}: target has token(s) {unknown} that no training target contains")
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of ``ids``: stops at the first ``<eos>``, drops ``<bos>``/``<pad>``."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out: list[str] = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return (" " if self.level == "word" else "").join(out)

    def batch(self, texts: Sequence[str], wheres: Sequence[str] | None = None) -> torch.Tensor:
        """Encode and right-pad with ``<pad>``: int64 ``(B, L_max + 2)``."""
        wheres = wheres or [f"target {i}" for i in range(len(texts))]
        seqs = [torch.tensor(self.encode(t, w), dtype=torch.int64) for t, w in zip(texts, wheres)]
        return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=self.pad_id)

    def normalize(self, text: str) -> str:
        """``text`` as the model would produce it: ``decode(encode(text))`` without
        mapping unknown tokens, i.e. lower-cased with single spaces. References are
        scored in this form."""
        if self.lowercase:
            text = text.lower()
        return " ".join(text.split())

    def state_dict(self) -> dict[str, Any]:
        """Plain Python types only (safe for ``torch.load(weights_only=True)``)."""
        return {"level": self.level, "min_freq": self.min_freq, "lowercase": self.lowercase,
                "on_unknown": self.on_unknown, "itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TargetVocab:
        """Rebuild a fitted vocabulary from :meth:`state_dict`."""
        vocab = cls(state["level"], state["min_freq"], state["lowercase"], state.get("on_unknown", "unk"))
        itos = [str(t) for t in state["itos"]]
        if tuple(itos[: len(_SPECIALS)]) != _SPECIALS:
            raise ValueError(f"target vocabulary state is corrupt: it must start with {list(_SPECIALS)}")
        vocab.itos, vocab.stoi, vocab.fitted = itos, {t: i for i, t in enumerate(itos)}, True
        return vocab

    def __repr__(self) -> str:
        return f"TargetVocab(level={self.level!r}, size={len(self)})"
