"""graphmm: graph-centric multimodal learning on DGL heterographs."""

import os as _os

# DGL picks its backend from this variable; set it before the first `import dgl`
# so that importing graphmm never prints DGL's backend notice.
_os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
