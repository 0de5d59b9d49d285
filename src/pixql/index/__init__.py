"""Vector search kernels and indexes behind SEARCH.

* :mod:`pixql.index.exact` — exact cosine scores and top-k selection (numpy/BLAS);
* :mod:`pixql.index.ann` — approximate (HNSW / IVF) indexes with faiss, re-ranked exactly;
* :mod:`pixql.index.compressed` — exact top-k over 8-bit codes with an exact fp32 re-rank;
  :mod:`pixql.index.compressed_build` builds, saves and loads those codes;
* :mod:`pixql.index.vector_files` — a large column's unit rows and codes on disk;
* :mod:`pixql.index.store` — where built indexes are saved in a workspace.

faiss is imported only when an approximate index is used.
"""

from __future__ import annotations

__all__ = ["INDEX_KINDS"]

#: SEARCH ``index=`` values: "exact" scores every row; the others are approximate
INDEX_KINDS = ("exact", "hnsw", "ivf")
