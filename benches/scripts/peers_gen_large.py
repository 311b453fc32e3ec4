#!/usr/bin/env python3
"""`peers.py gen` for dumps larger than memory (10M templates is 25.6 GB).

`peers.py gen` writes the gallery through a memory map, chunk by chunk, but takes
the exact top 10 with a faiss `IndexFlatIP`, which copies every row into memory.
This runs the same `cmd_gen` (so the gallery and probes are the same bytes) with
an exact inner-product index of the same interface that keeps only views of the
mapped rows and scores them a slice at a time (BLAS sgemm, as faiss does), merging
the running top 10. faiss is not needed.

    python peers_gen_large.py <path to peers.py> gen --out DIR --n 10000000 \
        --latent-dim 64 --resid 0.3
"""
import importlib.util
import sys
import types

import numpy as np

SLICE_ROWS = 1 << 16


class ChunkedFlatIP:
    """Exact top-k by inner product over row blocks added by reference."""

    def __init__(self, dim):
        self.dim = dim
        self.blocks = []

    def add(self, rows):
        assert rows.ndim == 2 and rows.shape[1] == self.dim
        self.blocks.append(rows)

    def search(self, queries, k):
        q = np.ascontiguousarray(queries, dtype=np.float32)
        best_d = np.full((len(q), k), -np.inf, np.float32)
        best_i = np.full((len(q), k), -1, np.int64)
        base = 0
        for block in self.blocks:
            for lo in range(0, len(block), SLICE_ROWS):
                rows = np.asarray(block[lo:lo + SLICE_ROWS])
                scores = q @ rows.T
                top = np.argpartition(scores, -k, axis=1)[:, -k:]
                cand_d = np.concatenate([best_d, np.take_along_axis(scores, top, 1)], 1)
                cand_i = np.concatenate([best_i, top + base + lo], 1)
                order = np.argsort(-cand_d, axis=1, kind="stable")[:, :k]
                best_d = np.take_along_axis(cand_d, order, 1)
                best_i = np.take_along_axis(cand_i, order, 1)
            base += len(block)
        return best_d, best_i


def main():
    peers_path, args = sys.argv[1], sys.argv[2:]
    faiss = types.ModuleType("faiss")
    faiss.IndexFlatIP = ChunkedFlatIP
    faiss.__version__ = "none (chunked numpy inner product)"
    sys.modules["faiss"] = faiss
    spec = importlib.util.spec_from_file_location("peers", peers_path)
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    sys.argv = [peers_path, *args]
    peers.main()


if __name__ == "__main__":
    main()
