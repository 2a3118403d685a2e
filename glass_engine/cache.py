"""Embedding cache: patch embeddings of clean images, computed once per run.

The backbone is frozen, so the embeddings of the clean training and test images are identical in every
epoch. They are kept in RAM while they fit the configured bound; past it, in a memory-mapped float32 file
in the run folder (removed when the run ends), so large test sets never exhaust RAM.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


class EmbeddingCache:
    """(count, positions, dim) float32 store with a RAM budget shared through `budget`."""

    def __init__(self, name: str, count: int, positions: int, dim: int, budget: "CacheBudget", spill_dir: Path):
        self.name = name
        self.shape = (count, positions, dim)
        size = count * positions * dim * 4
        self.path: Path | None = None
        if budget.take(size):
            self._data: np.ndarray = np.empty(self.shape, dtype=np.float32)
            logger.info("Cache %s: %d images in RAM (%.0f MB)", name, count, size / 1e6)
        else:
            spill_dir.mkdir(parents=True, exist_ok=True)
            self.path = spill_dir / f"{name}.f32"
            self._data = np.memmap(self.path, dtype=np.float32, mode="w+", shape=self.shape)
            logger.warning(
                "Cache %s (%.0f MB) exceeds the RAM bound of %.0f MB; using the memory-mapped file %s",
                name,
                size / 1e6,
                budget.limit / 1e6,
                self.path,
            )

    def put(self, indices: list[int] | np.ndarray, embeddings: torch.Tensor) -> None:
        values = embeddings.detach().float().cpu().numpy().reshape(len(indices), *self.shape[1:])
        self._data[np.asarray(indices)] = values

    def get(self, indices: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Embeddings of the given images as a (len(indices) * positions, dim) tensor."""
        index = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self._data[index])).reshape(-1, self.shape[2])

    def close(self) -> None:
        if self.path is not None:
            del self._data
            self.path.unlink(missing_ok=True)
            self.path = None


class CacheBudget:
    """Bytes of RAM that caches may still take."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.remaining = limit_bytes

    def take(self, size: int) -> bool:
        if size <= self.remaining:
            self.remaining -= size
            return True
        return False
