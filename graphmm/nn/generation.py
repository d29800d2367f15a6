r"""Text generation from graphs: node states as the memory of a Transformer decoder.

:class:`NodeMemory` packs the node states of each graph of a batch into a padded
``(B, M, d)`` memory with a padding mask, so that sample :math:`b` attends only to its
own nodes. :class:`GenerationHead` is an autoregressive Transformer decoder over that
memory, trained with teacher forcing and decoded greedily or with beam search.
:class:`GraphSeq2Seq` puts the encoders, the heterogeneous GNN and the head together;
:class:`SequenceSeq2Seq` is the same model with the graph replaced by a Transformer
encoder over the same nodes read as one token sequence (the no-graph baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoders import NodeEncoders, SinusoidalPositionalEncoding
from .hetero import CanonicalEType, HeteroGNN, as_canonical_etypes

__all__ = ["NodeMemory", "GenerationHead", "GraphSeq2Seq", "SequenceSeq2Seq", "pack_node_states"]

#: Node types whose node order is a sequence (word order, time); their position in
#: that order is added to the memory as a sinusoidal code.
SEQUENTIAL_NTYPES: tuple[str, ...] = ("word", "frame")


def pack_node_states(
    g: dgl.DGLGraph, states: Mapping[str, Tensor], ntypes: Sequence[str]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Scatter per-type node states into one padded tensor per graph.

    Graph :math:`b` gets its nodes of ``ntypes[0]`` first, then ``ntypes[1]``, and so on,
    each type in node-id order; slots past its node count are padding. No Python loop
    runs over nodes or graphs, only over node types.

    Args:
        g: A batched heterograph with :math:`B` graphs.
        states: ``dict[ntype, (N_ntype, d)]``.
        ntypes: Node types to pack, in order; each must be in ``states``.

    Returns:
        ``(memory, pad_mask, type_id, index)``: ``memory`` ``(B, M, d)`` with zeros in
        padding slots, ``pad_mask`` bool ``(B, M)`` (True = padding), ``type_id``
        int64 ``(B, M)`` (position in ``ntypes``, 0 in padding) and ``index`` int64
        ``(B, M)`` (the node's rank among its type's nodes in its graph).

    Shapes:
        - Output: :math:`(B, M, d)`, :math:`(B, M)` x 3 with
          :math:`M = \max_b \sum_t n_{b,t}`.
    """
    if not ntypes:
        raise ValueError("pack_node_states needs at least one node type")
    missing = [nt for nt in ntypes if nt not in states]
    if missing:
        raise KeyError(f"no node states for node type(s) {missing}; states has {sorted(states)}")
    ref = states[ntypes[0]]
    bsz, dim, dev = g.batch_size, ref.shape[-1], ref.device
    counts = torch.stack([g.batch_num_nodes(nt).to(dev) for nt in ntypes], dim=1)  # (B, T)
    total = counts.sum(1)
    m = int(total.max()) if bsz else 0
    type_start = torch.cumsum(counts, 1) - counts  # where type t starts inside graph b
    memory = ref.new_zeros(bsz, m, dim)
    type_id = torch.zeros(bsz, m, dtype=torch.int64, device=dev)
    index = torch.zeros(bsz, m, dtype=torch.int64, device=dev)
    graphs = torch.arange(bsz, device=dev)
    for t, nt in enumerate(ntypes):
        n = counts[:, t]
        gid = torch.repeat_interleave(graphs, n)
        local = torch.arange(len(gid), device=dev) - (torch.cumsum(n, 0) - n)[gid]
        slot = type_start[gid, t] + local
        memory = memory.index_put((gid, slot), states[nt])
        type_id[gid, slot] = t
        index[gid, slot] = local
    pad_mask = torch.arange(m, device=dev)[None, :] >= total[:, None]
    return memory, pad_mask, type_id, index


class NodeMemory(nn.Module):
    r"""Node states of each graph as a padded memory sequence for attention.

    .. math::

        m_{b} = \big[\, s_0,\; h_{v_1} + e_{t(v_1)} + PE(k_{v_1}),\; \dots \big]

    where :math:`e_t` is a learned embedding of node type :math:`t`, :math:`k_v` the
    node's rank in its type's order for sequential types (``word`` order, ``frame``
    time; :math:`PE(k_v) = 0` for others, such as patches, whose grid position is
    already in their state) and :math:`s_0` a learned slot that every sample has. The
    extra slot keeps attention defined for a sample with no nodes at all.

    Args:
        ntypes: Node types to read, in order.
        dim: State width :math:`d`.

    Shapes:
        - Input: ``g`` with :math:`B` graphs, ``states`` ``dict[ntype, (N, d)]``.
        - Output: ``(B, 1 + M, d)`` memory and ``(B, 1 + M)`` bool padding mask.
    """

    def __init__(self, ntypes: Sequence[str], dim: int) -> None:
        super().__init__()
        if not ntypes:
            raise ValueError("NodeMemory needs at least one node type")
        self.ntypes = list(ntypes)
        self.dim = dim
        self.type_embed = nn.Embedding(len(self.ntypes), dim)
        self.null = nn.Parameter(torch.empty(dim))
        self.pos = SinusoidalPositionalEncoding(dim)
        self.register_buffer(
            "sequential", torch.tensor([nt in SEQUENTIAL_NTYPES for nt in self.ntypes]), persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Type embeddings and the null slot from :math:`\\mathcal{N}(0, 0.02^2)`."""
        nn.init.normal_(self.type_embed.weight, std=0.02)
        nn.init.normal_(self.null, std=0.02)

    def forward(self, g: dgl.DGLGraph, states: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Padded memory ``(B, 1 + M, d)`` and padding mask ``(B, 1 + M)``."""
        memory, pad, type_id, index = pack_node_states(g, states, self.ntypes)
        pe = self.pos(index) * self.sequential[type_id].unsqueeze(-1).to(memory.dtype)
        memory = (memory + self.type_embed(type_id) + pe).masked_fill(pad.unsqueeze(-1), 0.0)
        null = self.null.expand(memory.shape[0], 1, -1)
        keep = torch.zeros(memory.shape[0], 1, dtype=torch.bool, device=pad.device)
        return torch.cat([null, memory], 1), torch.cat([keep, pad], 1)


class GenerationHead(nn.Module):
    r"""Autoregressive Transformer decoder that cross-attends over a padded memory.

    From `Attention Is All You Need <https://arxiv.org/abs/1706.03762>`__ (pre-norm
    layers). For target tokens :math:`y_{<t}`:

    .. math::

        z^{0}_t &= \sqrt{d}\,E[y_{t-1}] + PE(t) \\
        z^{\ell} &= \mathrm{DecoderLayer}_\ell\big(z^{\ell-1}, m;\ \text{causal},\ \text{pad}(m)\big) \\
        p(y_t \mid y_{<t}, G) &= \mathrm{softmax}\big(W\,\mathrm{LN}(z^{L}_t) + b\big)

    where :math:`m` is the memory of the sample's own nodes (see :class:`NodeMemory`);
    padding slots, i.e. the nodes of every other sample of the batch, are masked out
    of cross-attention. Training uses teacher forcing (:meth:`forward` on the target
    shifted right); :meth:`greedy` and :meth:`beam_search` decode batches.

    Args:
        memory_dim: Width of the memory vectors.
        vocab_size: Target vocabulary size :math:`V` (special tokens included).
        d_model: Decoder width :math:`d`; the memory is projected to it when it differs.
            Default: ``None`` (= ``memory_dim``).
        num_layers: Decoder layers :math:`L`. Default: ``2``.
        nhead: Attention heads (must divide ``d_model``). Default: ``4``.
        dim_feedforward: Feed-forward width. Default: ``None`` (= ``4 * d_model``).
        dropout: Dropout in the decoder. Default: ``0.1``.
        max_len: Default decoding limit in generated tokens (``<eos>`` included).
            Default: ``32``.
        pad_id: Id of ``<pad>``. Default: ``0``.
        bos_id: Id of ``<bos>``. Default: ``1``.
        eos_id: Id of ``<eos>``. Default: ``2``.

    Example:
        >>> import torch
        >>> head = GenerationHead(16, vocab_size=12, num_layers=1, nhead=2)
        >>> memory, pad = torch.randn(3, 5, 16), torch.zeros(3, 5, dtype=torch.bool)
        >>> head(memory, pad, torch.randint(4, 12, (3, 7))).shape
        torch.Size([3, 7, 12])
        >>> head.eval().greedy(memory, pad, max_len=4).shape[0]
        3

    Shapes:
        - memory: ``(B, M, memory_dim)``, memory_pad_mask: ``(B, M)`` (True = padding).
        - tokens: ``(B, T)`` starting with ``<bos>``; output ``(B, T, V)``.
    """

    def __init__(
        self,
        memory_dim: int,
        vocab_size: int,
        *,
        d_model: int | None = None,
        num_layers: int = 2,
        nhead: int = 4,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        max_len: int = 32,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        d_model = d_model or memory_dim
        if vocab_size <= max(pad_id, bos_id, eos_id):
            raise ValueError(f"vocab_size={vocab_size} must exceed the special token ids")
        if d_model % nhead:
            raise ValueError(f"nhead={nhead} must divide d_model={d_model}")
        if num_layers < 1 or max_len < 1:
            raise ValueError(f"num_layers and max_len must be >= 1, got {num_layers}, {max_len}")
        self.memory_dim, self.vocab_size, self.d_model = memory_dim, vocab_size, d_model
        self.num_layers, self.nhead, self.max_len = num_layers, nhead, max_len
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.memory_proj = nn.Linear(memory_dim, d_model) if memory_dim != d_model else None
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos = SinusoidalPositionalEncoding(d_model)
        layer = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward or 4 * d_model, dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Embedding :math:`\\mathcal{N}(0, d^{-1})`, Glorot elsewhere (PyTorch defaults)."""
        nn.init.normal_(self.embed.weight, std=self.d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[self.pad_id].zero_()
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.out.reset_parameters()
        if self.memory_proj is not None:
            self.memory_proj.reset_parameters()

    def forward(self, memory: Tensor, memory_pad_mask: Tensor, tokens: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` of the next token after each prefix of ``tokens``.

        Target padding needs no mask: the causal mask keeps real positions from
        seeing the pads after ``<eos>``, and the loss ignores the pad positions.
        """
        if self.memory_proj is not None:
            memory = self.memory_proj(memory)
        t = tokens.shape[1]
        x = self.embed(tokens) * self.d_model**0.5 + self.pos(torch.arange(t, device=tokens.device))
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=tokens.device), 1)
        z = self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_pad_mask, tgt_is_causal=True)
        return self.out(z)

    def loss(self, memory: Tensor, memory_pad_mask: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        r"""Teacher-forced token cross-entropy, mean over non-pad target tokens.

        Args:
            targets: ``(B, T)`` ids ``[<bos>, y_1, ..., y_n, <eos>, <pad>...]``.
            label_smoothing: Mass spread uniformly over the vocabulary. Default: ``0``.
        """
        logits = self(memory, memory_pad_mask, targets[:, :-1])
        return F.cross_entropy(
            logits.reshape(-1, self.vocab_size), targets[:, 1:].reshape(-1),
            ignore_index=self.pad_id, label_smoothing=label_smoothing,
        )

    def _next_log_probs(self, memory: Tensor, pad: Tensor, tokens: Tensor) -> Tensor:
        return F.log_softmax(self(memory, pad, tokens)[:, -1].float(), -1)

    @torch.no_grad()
    def greedy(self, memory: Tensor, memory_pad_mask: Tensor, max_len: int | None = None) -> Tensor:
        """Most likely token at every step, for the whole batch at once.

        Returns:
            int64 ``(B, L)``: generated ids without ``<bos>``, each row ending at its
            first ``<eos>`` and padded with ``<pad>`` after it; :math:`L \\le` ``max_len``.
        """
        max_len = max_len or self.max_len
        bsz = memory.shape[0]
        tokens = torch.full((bsz, 1), self.bos_id, dtype=torch.int64, device=memory.device)
        done = torch.zeros(bsz, dtype=torch.bool, device=memory.device)
        for _ in range(max_len):
            nxt = self._next_log_probs(memory, memory_pad_mask, tokens).argmax(-1)
            nxt = nxt.masked_fill(done, self.pad_id)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
        return tokens[:, 1:]

    @torch.no_grad()
    def beam_search(
        self,
        memory: Tensor,
        memory_pad_mask: Tensor,
        beam_width: int = 4,
        max_len: int | None = None,
        length_penalty: float = 0.0,
    ) -> Tensor:
        r"""Batched beam search.

        Each sample keeps ``beam_width`` hypotheses; a hypothesis that emits ``<eos>`` is
        finished and carries its score unchanged. Search stops when every hypothesis is
        finished or after ``max_len`` steps. The answer is the hypothesis with the best
        length-normalised score (GNMT, `Wu et al. 2016 <https://arxiv.org/abs/1609.08144>`__):

        .. math::

            s(y) = \frac{\log p(y \mid G)}{\big((5 + |y|) / 6\big)^{\alpha}}

        with :math:`|y|` counting ``<eos>`` and :math:`\alpha` = ``length_penalty``
        (0: plain log-probability; larger values favour longer outputs). With
        ``beam_width=1`` the result equals :meth:`greedy`.

        Returns:
            int64 ``(B, L)`` as in :meth:`greedy`.
        """
        if beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {beam_width}")
        max_len = max_len or self.max_len
        bsz, k, dev = memory.shape[0], beam_width, memory.device
        mem = memory.repeat_interleave(k, 0)
        pad = memory_pad_mask.repeat_interleave(k, 0)
        tokens = torch.full((bsz * k, 1), self.bos_id, dtype=torch.int64, device=dev)
        scores = torch.zeros(bsz, k, device=dev)
        scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
        done = torch.zeros(bsz * k, dtype=torch.bool, device=dev)
        length = torch.zeros(bsz * k, device=dev)
        rows = torch.arange(bsz, device=dev)[:, None] * k
        for _ in range(max_len):
            logp = self._next_log_probs(mem, pad, tokens)  # (B*K, V)
            # a finished hypothesis may only continue with <pad>, at no cost
            logp[done] = float("-inf")
            logp[done, self.pad_id] = 0.0
            cand = (scores.reshape(-1, 1) + logp).reshape(bsz, -1)  # (B, K*V)
            scores, flat = cand.topk(k, dim=-1)
            src = (rows + torch.div(flat, self.vocab_size, rounding_mode="floor")).reshape(-1)
            tok = (flat % self.vocab_size).reshape(-1)
            tokens = torch.cat([tokens[src], tok[:, None]], 1)
            length = length[src] + (~done[src]).float()
            done = done[src] | (tok == self.eos_id)
            if bool(done.all()):
                break
        norm = ((5.0 + length) / 6.0) ** length_penalty
        best = (scores.reshape(-1) / norm).reshape(bsz, k).argmax(-1)
        out = tokens[(rows[:, 0] + best)][:, 1:]
        # a row cut off by max_len keeps its tokens; pads only ever follow <eos>
        return out


def _seq2seq_memory_ntypes(in_dims: Mapping[str, int], memory_ntypes: Sequence[str] | None) -> list[str]:
    ntypes = sorted(in_dims)
    chosen = sorted(str(t) for t in memory_ntypes) if memory_ntypes is not None else ntypes
    unknown = sorted(set(chosen) - set(ntypes))
    if unknown or not chosen:
        raise ValueError(f"memory_ntypes {unknown or chosen} must name node types of in_dims: {ntypes}")
    return chosen


class _Seq2SeqBase(nn.Module):
    """Shared decoding API of :class:`GraphSeq2Seq` and :class:`SequenceSeq2Seq`."""

    memory: NodeMemory
    head: GenerationHead

    def memory_of(self, g: dgl.DGLGraph) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, g: dgl.DGLGraph, tokens: Tensor) -> Tensor:
        """Teacher-forced logits ``(B, T, V)`` for target prefixes ``tokens (B, T)``."""
        return self.head(*self.memory_of(g), tokens)

    def loss(self, g: dgl.DGLGraph, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Token cross-entropy of padded targets ``(B, T)`` (see :meth:`GenerationHead.loss`)."""
        return self.head.loss(*self.memory_of(g), targets, label_smoothing)

    @torch.no_grad()
    def generate(
        self, g: dgl.DGLGraph, beam_width: int = 1, max_len: int | None = None, length_penalty: float = 0.0
    ) -> Tensor:
        """Decoded ids ``(B, L)`` (no ``<bos>``; ``<pad>`` after ``<eos>``): greedy for
        ``beam_width=1``, beam search otherwise."""
        memory, pad = self.memory_of(g)
        if beam_width == 1:
            return self.head.greedy(memory, pad, max_len)
        return self.head.beam_search(memory, pad, beam_width, max_len, length_penalty)


class GraphSeq2Seq(_Seq2SeqBase):
    r"""Generate text from multimodal heterographs: encoders -> HeteroGNN -> decoder.

    .. math::

        h^{0}_t = \mathrm{Enc}_t(x_t),\qquad h^{L} = \mathrm{HeteroGNN}(G, h^{0}),\qquad
        p(y \mid G) = \prod_t \mathrm{Dec}\big(y_t \mid y_{<t},\ \mathrm{Mem}(h^{L})\big)

    The decoder cross-attends over the final states of every node of the sample (of
    the types in ``memory_ntypes``); a missing modality simply contributes no nodes.

    Args:
        in_dims: Raw size per node type (see :class:`NodeEncoders`).
        canonical_etypes: Relations ``(src, rel, dst)`` of the graph schema.
        vocab_size: Target vocabulary size (see :class:`graphmm.data.TargetVocab`).
        hidden: Node state width. Default: ``64``.
        num_layers: Message-passing layers. Default: ``3``.
        conv: Registered relation conv. Default: ``"gat"``.
        conv_kwargs: Options for every relation conv. Default: ``None``.
        aggregate: Cross-relation aggregation. Default: ``"sum"``.
        dropout: Dropout in the GNN and the decoder. Default: ``0.1``.
        activation: GNN activation. Default: ``"relu"``.
        memory_ntypes: Node types the decoder reads. Default: ``None`` (all).
        decoder_layers: Decoder layers. Default: ``2``.
        decoder_heads: Decoder attention heads. Default: ``4``.
        decoder_ff: Decoder feed-forward width. Default: ``None`` (4 x hidden).
        max_len: Default decoding limit. Default: ``32``.
        pad_id, bos_id, eos_id: Special token ids. Default: ``0, 1, 2``.
        encoders: Per node type, where input features come from (see
            :class:`NodeEncoders`). Default: ``None`` (all learned).
        fused: Run each GNN layer's relations as one fused computation where the conv
            allows it (see :class:`HeteroGNN`). Default: ``True``.

    Example:
        >>> import torch
        >>> from graphmm.data import Sample
        >>> from graphmm.graphs import MultimodalGraphBuilder
        >>> builder = MultimodalGraphBuilder(text=False)
        >>> g = builder.batch([Sample(image=torch.rand(1, 8, 16)), Sample(audio=torch.randn(800) * .1, sample_rate=8000)])
        >>> model = GraphSeq2Seq(builder.in_dims, builder.canonical_etypes, vocab_size=14,
        ...                      hidden=16, conv_kwargs={"heads": 2}, decoder_heads=2)
        >>> model(g, torch.tensor([[1, 5, 6], [1, 7, 0]])).shape
        torch.Size([2, 3, 14])
        >>> model.eval().generate(g, beam_width=3, max_len=5).shape[0]
        2

    Shapes:
        - Input: batched heterograph with :math:`B` graphs, tokens ``(B, T)``.
        - Output: logits ``(B, T, vocab_size)``; :meth:`generate` ids ``(B, L)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        canonical_etypes: Sequence[Sequence[str]],
        vocab_size: int,
        *,
        hidden: int = 64,
        num_layers: int = 3,
        conv: str = "gat",
        conv_kwargs: Mapping[str, Any] | None = None,
        aggregate: str = "sum",
        dropout: float = 0.1,
        activation: str = "relu",
        memory_ntypes: Sequence[str] | None = None,
        decoder_layers: int = 2,
        decoder_heads: int = 4,
        decoder_ff: int | None = None,
        max_len: int = 32,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        encoders: Mapping[str, Mapping[str, Any]] | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("in_dims is empty; give the raw size of at least one node type.")
        in_dims = {str(k): int(v) for k, v in in_dims.items()}
        self.in_dims, self.hidden, self.vocab_size = in_dims, hidden, vocab_size
        self.memory_ntypes = _seq2seq_memory_ntypes(in_dims, memory_ntypes)
        self.canonical_etypes: list[CanonicalEType] = [
            cet for cet in as_canonical_etypes(canonical_etypes) if cet[0] in in_dims and cet[2] in in_dims
        ]
        self.encoders = NodeEncoders(in_dims, hidden, featurizers=encoders)
        self.gnn = HeteroGNN(
            self.canonical_etypes, hidden, num_layers=num_layers, conv=conv,
            conv_kwargs=dict(conv_kwargs) if conv_kwargs is not None else None,
            aggregate=aggregate, dropout=dropout, activation=activation, output_ntypes=self.memory_ntypes,
            fused=fused,
        )
        self.memory = NodeMemory(self.memory_ntypes, hidden)
        self.head = GenerationHead(
            hidden, vocab_size, num_layers=decoder_layers, nhead=decoder_heads, dim_feedforward=decoder_ff,
            dropout=dropout, max_len=max_len, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id,
        )

    def encode(self, g: dgl.DGLGraph) -> dict[str, Tensor]:
        """Node states after message passing, ``dict[ntype, (N_ntype, hidden)]``."""
        return self.gnn(g, self.encoders(g))

    def memory_of(self, g: dgl.DGLGraph) -> tuple[Tensor, Tensor]:
        """Decoder memory ``(B, 1 + M, hidden)`` and its padding mask ``(B, 1 + M)``."""
        return self.memory(g, self.encode(g))


class SequenceSeq2Seq(_Seq2SeqBase):
    r"""The no-graph baseline: the same nodes as one token sequence, a Transformer encoder.

    .. math::

        h^{0} = \mathrm{Mem}\big(\mathrm{Enc}(x)\big),\qquad
        h^{L} = \mathrm{TransformerEncoder}(h^{0}),\qquad
        p(y \mid x) = \prod_t \mathrm{Dec}(y_t \mid y_{<t},\ h^{L})

    Node features, encoders (with their position codes), memory layout and decoder
    are those of :class:`GraphSeq2Seq`; only the message passing over typed edges is
    replaced by full self-attention among the sample's nodes, so a comparison of the
    two measures what the graph adds. ``canonical_etypes`` is accepted and ignored, so
    both models take the same arguments.

    Args:
        in_dims: Raw size per node type.
        canonical_etypes: Ignored.
        vocab_size: Target vocabulary size.
        hidden: Width. Default: ``64``.
        num_layers: Encoder layers. Default: ``3``.
        heads: Encoder attention heads. Default: ``4``.
        dropout: Dropout. Default: ``0.1``.
        memory_ntypes, decoder_layers, decoder_heads, decoder_ff, max_len, pad_id,
        bos_id, eos_id: As in :class:`GraphSeq2Seq`.
        **_: Other :class:`GraphSeq2Seq` options (``conv``, ``aggregate``...), ignored.

    Shapes:
        - Input: batched heterograph with :math:`B` graphs, tokens ``(B, T)``.
        - Output: logits ``(B, T, vocab_size)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        canonical_etypes: Sequence[Sequence[str]] = (),
        vocab_size: int = 0,
        *,
        hidden: int = 64,
        num_layers: int = 3,
        heads: int = 4,
        dropout: float = 0.1,
        memory_ntypes: Sequence[str] | None = None,
        decoder_layers: int = 2,
        decoder_heads: int = 4,
        decoder_ff: int | None = None,
        max_len: int = 32,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        encoders: Mapping[str, Mapping[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        in_dims = {str(k): int(v) for k, v in in_dims.items()}
        self.in_dims, self.hidden, self.vocab_size = in_dims, hidden, vocab_size
        self.memory_ntypes = _seq2seq_memory_ntypes(in_dims, memory_ntypes)
        self.encoders = NodeEncoders(in_dims, hidden, featurizers=encoders)
        self.memory = NodeMemory(self.memory_ntypes, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True)
        # nested tensors would make padded outputs differ between train and eval
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.head = GenerationHead(
            hidden, vocab_size, num_layers=decoder_layers, nhead=decoder_heads, dim_feedforward=decoder_ff,
            dropout=dropout, max_len=max_len, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id,
        )

    def memory_of(self, g: dgl.DGLGraph) -> tuple[Tensor, Tensor]:
        """Encoded node sequence ``(B, 1 + M, hidden)`` and padding mask ``(B, 1 + M)``."""
        memory, pad = self.memory(g, self.encoders(g))
        return self.encoder(memory, src_key_padding_mask=pad), pad
