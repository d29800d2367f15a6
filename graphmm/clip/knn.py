"""Cross-modal top-k by cosine similarity, batched over the samples of a graph batch.

The function lives with the other batch kernels in :mod:`graphmm.graphs._util` (torch
only); it is named here too because the ``clip_knn`` relation uses it on CLIP's joint
embeddings.

Example:
    >>> import torch
    >>> from graphmm.clip.knn import cross_topk
    >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> b = torch.tensor([[0.0, 2.0], [3.0, 0.1], [1.0, 1.0]])
    >>> cross_topk(a, torch.tensor([2]), b, torch.tensor([3]), k=1)[1].tolist()
    [1, 0]
"""

from graphmm.graphs._util import cross_topk

__all__ = ["cross_topk"]
