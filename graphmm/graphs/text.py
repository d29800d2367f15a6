"""Text to ``word`` nodes: tokenizer, vocabulary and the word-level relations."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

import torch
from torch import nn

from graphmm.graphs._util import segment_offsets, sequence_edges
from graphmm.graphtypes import EdgeDict, NodeBlock

PAD, UNK = "<pad>", "<unk>"
_TOKEN_RE = re.compile(r"[\w']+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokenizer: runs of word characters (apostrophes kept), and
    every other non-space character as its own token.

    Example:
        >>> tokenize("It's 7 -- seven!")
        ["it's", '7', '-', '-', 'seven', '!']
    """
    return _TOKEN_RE.findall(text.lower())


class Vocab:
    """Token to id map with ``<pad>`` = 0 and ``<unk>`` = 1.

    Args:
        tokens: the vocabulary after the two special tokens, in id order.
    """

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self.itos: list[str] = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab tokens must be unique")

    @classmethod
    def build(
        cls, documents: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """Vocabulary of tokens seen at least ``min_freq`` times, most frequent first
        (ties broken alphabetically so the ids never depend on input order)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter(tok for doc in documents for tok in doc)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls(kept[:max_size] if max_size is not None else kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def lookup(self, tokens: Sequence[str]) -> torch.Tensor:
        """Ids of ``tokens``; unknown tokens map to ``<unk>`` (1). Shape ``(len(tokens),)``."""
        return torch.tensor([self.stoi.get(t, 1) for t in tokens], dtype=torch.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Vocab:
        itos = list(state["itos"])
        if itos[:2] != [PAD, UNK]:
            raise ValueError("not a graphmm Vocab state: the first two tokens must be <pad>, <unk>")
        return cls(itos[2:])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"


def ppmi_svd_vectors(
    docs: Sequence[torch.Tensor], vocab_size: int, dim: int, window: int = 5, alpha: float = 0.75, seed: int = 0
) -> torch.Tensor:
    r"""Word vectors from a corpus's own co-occurrence statistics: the truncated SVD of
    its positive PMI matrix (Levy, Goldberg and Dagan 2015, https://aclanthology.org/Q15-1016).

    With :math:`C_{wc}` the times word :math:`c` occurs within ``window`` tokens of word
    :math:`w` in one document (both directions), :math:`C_w = \sum_c C_{wc}` and the
    smoothed context counts :math:`C_c^\alpha`,

    .. math::

        \mathrm{PPMI}_{wc} = \max\Big(0, \log \frac{C_{wc} \sum_{c'} C_{c'}^\alpha}{C_w C_c^\alpha}\Big),
        \qquad \mathrm{PPMI} \approx U_k S_k V_k^\top,\qquad v_w = \frac{(U_k S_k^{1/2})_w}{\lVert (U_k S_k^{1/2})_w \rVert}

    (``alpha`` = 0.75 damps the PMI of rare contexts). Rows of words without contexts
    are zero; with fewer than ``dim`` words the last columns are zero.

    Args:
        docs: Token ids of each document, ``(L_i,)`` int64 in ``[0, vocab_size)``.
        vocab_size: Rows of the result.
        dim: Columns of the result, :math:`k`.
        window: Context window in tokens on each side.
        alpha: Context-distribution smoothing exponent.
        seed: Seed of the randomized SVD.

    Returns:
        ``(vocab_size, dim)`` float32, rows of unit length (or zero).

    Example:
        >>> import torch
        >>> docs = [torch.tensor([2, 3, 4]), torch.tensor([2, 3, 5])]
        >>> v = ppmi_svd_vectors(docs, vocab_size=6, dim=2, window=1)
        >>> tuple(v.shape), float(v[0].abs().sum())   # word 0 never occurs: a zero row
        ((6, 2), 0.0)
    """
    import numpy as np
    import scipy.sparse as sp
    from sklearn.utils.extmath import randomized_svd

    if dim < 1 or window < 1:
        raise ValueError(f"word vectors need dim >= 1 and window >= 1, got dim={dim}, window={window}")
    out = np.zeros((vocab_size, dim), dtype=np.float32)
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    if not lengths.sum():
        return torch.from_numpy(out)
    ids = torch.cat([d.reshape(-1) for d in docs]).numpy()
    doc = np.repeat(np.arange(len(docs)), lengths)
    counts = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for k in range(1, window + 1):  # one vectorised pass per offset, summed as it goes (memory: one offset's pairs)
        same = doc[:-k] == doc[k:]
        r, c = ids[:-k][same], ids[k:][same]
        counts = counts + sp.coo_matrix((np.ones(len(r), dtype=np.float32), (r, c)),
                                        shape=(vocab_size, vocab_size)).tocsr()  # duplicates summed
    counts = counts + counts.T  # both directions
    coo = counts.tocoo()
    if not coo.nnz:
        return torch.from_numpy(out)
    word = np.asarray(counts.sum(1)).ravel()
    context = np.asarray(counts.sum(0)).ravel() ** alpha
    pmi = np.log(coo.data * context.sum() / (word[coo.row] * context[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(vocab_size, vocab_size))
    k = min(dim, vocab_size)
    u, s, _ = randomized_svd(ppmi, n_components=k, random_state=seed)
    # directions beyond the matrix's rank are arbitrary: they get no weight
    vec = u * np.sqrt(np.where(s > 1e-6 * s.max(initial=0.0), s, 0.0))
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    # rounding leaves words without contexts a trace (1e-17), not a direction
    out[:, :k] = np.divide(vec, norm, out=np.zeros_like(vec), where=norm > 1e-6 * norm.max(initial=0.0))
    return torch.from_numpy(out)


#: Default of ``max_tokens``: words kept per document. Far above every shipped corpus
#: (WebKB, the longest, is cut to 400 by its experiment), it bounds the word nodes one
#: pasted book or log file can add to a batch; ``graphmm.train`` counts truncations.
TEXT_MAX_TOKENS: int = 2048


class TextGraphBuilder:
    """Builds ``word`` nodes (one per token occurrence) and their relations.

    Relations (canonical edge types):

    * ``('word', 'next', 'word')``: token :math:`i \\to i+1`, with the reverse
      ``('word', 'rev_next', 'word')``.
    * ``('word', 'cooccur', 'word')``: TextING-style co-occurrence, tokens :math:`i, j`
      with :math:`0 < |i - j| < w` (both inside one sliding window of size ``w``).
      It is symmetric, so it holds both directions itself.

    Word ids: after :meth:`fit` they come from a :class:`Vocab` built on training
    text (``<pad>`` = 0, ``<unk>`` = 1). Before any fit, a token's id is
    ``2 + crc32(token) mod hash_buckets``, a stable hash that needs no training data, so
    the embedding table then has ``2 + hash_buckets`` rows.

    Args:
        window: co-occurrence window size ``w``; ``w <= 1`` switches ``cooccur`` off.
        next: add the ``next``/``rev_next`` order relations.
        min_freq: minimum training frequency for a token to enter the vocabulary.
        max_tokens: truncate longer texts to this many tokens (``None``: keep all).
            Default: :data:`TEXT_MAX_TOKENS` (2048).
        hash_buckets: buckets of the pre-fit hashing scheme.
        word_vectors: width of the word vectors :meth:`fit` computes from the training
            texts (:func:`ppmi_svd_vectors`), with which :meth:`init_encoder` starts the
            word embedding; ``0``: none, the embedding starts at random.
        vector_window: their context window, in tokens on each side (a library
            option; the Hydra schema leaves it at its default).
    """

    def __init__(
        self,
        window: int = 3,
        next: bool = True,  # noqa: A002 - the relation's name
        min_freq: int = 1,
        max_tokens: int | None = TEXT_MAX_TOKENS,
        hash_buckets: int = 4096,
        word_vectors: int = 0,
        vector_window: int = 5,
    ) -> None:
        if hash_buckets < 1:
            raise ValueError(f"hash_buckets must be >= 1, got {hash_buckets}")
        if word_vectors < 0 or vector_window < 1:
            raise ValueError(f"word_vectors must be >= 0 and vector_window >= 1, got {word_vectors}, {vector_window}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        self.window = int(window)
        self.next = bool(next)
        self.min_freq = int(min_freq)
        self.max_tokens = max_tokens
        self.hash_buckets = int(hash_buckets)
        self.word_vectors = int(word_vectors)
        self.vector_window = int(vector_window)
        self.vocab: Vocab | None = None
        # private, so not part of the feature cache's key (builder_cache_key): the vectors
        # start the model and never change the graphs
        self._vectors: torch.Tensor | None = None

    @property
    def relations(self) -> list[tuple[str, str, str]]:
        rels = []
        if self.next:
            rels += [("word", "next", "word"), ("word", "rev_next", "word")]
        if self.window > 1:
            rels.append(("word", "cooccur", "word"))
        return rels

    @property
    def in_dim(self) -> int:
        """Input width of ``word`` nodes for the encoder: :attr:`vocab_size`."""
        return self.vocab_size

    def check(self, value: object, sample: object, where: str) -> str:
        """One sample's text, checked (the modality protocol, :mod:`graphmm.modalities`)."""
        if not isinstance(value, str):
            raise ValueError(f"{where}: text must be a str, got {type(value).__name__}")
        return value

    def read(self, path: str) -> str:
        """A UTF-8 text file, for ``predict``'s ``input.text_file=...``."""
        from graphmm.data.io import read_text

        return read_text(path)

    @property
    def vocab_size(self) -> int:
        """Rows the word embedding needs: ``len(vocab)``, or ``2 + hash_buckets`` before fit."""
        return len(self.vocab) if self.vocab is not None else 2 + self.hash_buckets

    def tokens(self, text: str) -> list[str]:
        toks = tokenize(text)
        return toks[: self.max_tokens] if self.max_tokens is not None else toks

    def truncated(self, text: str) -> bool:
        """Whether ``max_tokens`` cuts ``text``: it has more than ``max_tokens`` tokens.

        Stops scanning at token ``max_tokens + 1``, so a long text costs no more than
        the part that is kept.

        Example:
            >>> TextGraphBuilder(max_tokens=2).truncated("one two three"), TextGraphBuilder().truncated("a b")
            (True, False)
        """
        if self.max_tokens is None:
            return False
        return next(islice(_TOKEN_RE.finditer(text.lower()), self.max_tokens, None), None) is not None

    def fit(self, texts: Iterable[str]) -> TextGraphBuilder:
        """Build the vocabulary from training texts, and with ``word_vectors`` their
        PPMI-SVD word vectors (:func:`ppmi_svd_vectors`). Returns ``self``."""
        docs = [self.tokens(t) for t in texts]
        self.vocab = Vocab.build(docs, min_freq=self.min_freq)
        self._vectors = None
        if self.word_vectors:
            self._vectors = ppmi_svd_vectors([self.vocab.lookup(d) for d in docs], len(self.vocab),
                                             self.word_vectors, self.vector_window)
        return self

    @property
    def vectors(self) -> torch.Tensor | None:
        """``(vocab_size, word_vectors)`` word vectors of the training texts, or ``None``
        (``word_vectors=0``, or not fitted)."""
        return self._vectors

    def init_encoder(self, encoder: nn.Module) -> bool:
        """Start the ``word`` encoder's embedding from :attr:`vectors`, where it has some
        (:meth:`graphmm.modalities.text.WordEncoder.load_vectors`); else leave it.
        Returns whether it did."""
        if self._vectors is None or not hasattr(encoder, "load_vectors"):
            return False
        encoder.load_vectors(self._vectors)
        return True

    def ids(self, tokens: Sequence[str]) -> torch.Tensor:
        """Token ids, shape ``(len(tokens),)``, int64 (see the class docstring)."""
        if self.vocab is not None:
            return self.vocab.lookup(tokens)
        return torch.tensor(
            [2 + zlib.crc32(t.encode("utf-8")) % self.hash_buckets for t in tokens], dtype=torch.int64
        )

    def build(self, texts: Sequence[str]) -> NodeBlock:
        """Word nodes and edges for a batch of texts, node ids local to the batch.

        Shapes:
            token, pos: ``(N,)`` int64; span: ``(N, 2)`` float32, where ``N`` is the
            total number of tokens of the batch.
        """
        toks = [self.tokens(t) for t in texts]
        counts = torch.tensor([len(t) for t in toks], dtype=torch.int64)
        flat = [tok for ts in toks for tok in ts]
        token = self.ids(flat)
        offsets, seg = segment_offsets(counts)
        pos = torch.arange(len(flat), dtype=torch.int64) - offsets[seg]
        length = counts[seg]
        n = length.clamp(min=1).to(torch.float32)
        span = torch.stack([pos / n, (pos + 1) / n], dim=1)

        edges: EdgeDict = {}
        # each relation already in the batch's (source, destination) order: no sort
        if self.next:
            edges[("word", "next", "word")] = sequence_edges(pos, length, [1])
            edges[("word", "rev_next", "word")] = sequence_edges(pos, length, [-1])
        if self.window > 1:
            w = self.window
            edges[("word", "cooccur", "word")] = sequence_edges(pos, length, [*range(1 - w, 0), *range(1, w)])
        return NodeBlock(
            ntype="word", counts=counts, data={"token": token, "pos": pos, "span": span}, edges=edges
        )

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"vocab": self.vocab.state_dict() if self.vocab is not None else None}
        if self._vectors is not None:
            state["vectors"] = self._vectors
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vocab = Vocab.from_state_dict(state["vocab"]) if state.get("vocab") else None
        self._vectors = state.get("vectors")

    def __repr__(self) -> str:
        return (
            f"TextGraphBuilder(window={self.window}, next={self.next}, "
            f"vocab={len(self.vocab) if self.vocab is not None else 'hashed'})"
        )
