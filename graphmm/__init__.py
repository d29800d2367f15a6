"""graphmm: graph-centric multimodal learning on DGL heterographs."""

import os as _os

# DGL picks its backend from this variable; set it before the first `import dgl`
# so that importing graphmm never prints DGL's backend notice.
_os.environ.setdefault("DGLBACKEND", "pytorch")

# Import DGL now, so a torch that this DGL has no compiled library for fails here with
# the matching versions and install commands instead of DGL's "Cannot find DGL C++ ...".
from graphmm._compat import import_dgl as _import_dgl  # noqa: E402

_import_dgl()

__version__ = "0.1.0"
