"""The training data stream of both stages: a seeded, endless, resumable, shardable stream of
``(index, augmentation seed)`` keys (:class:`SeedStream`), the loader that draws a rank's batches from it, and the
normalisation of a batch's frames into the network's input."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor


class SeedStream(torch.utils.data.Sampler):
    """An endless stream of ``(index, augmentation seed)``: epoch ``e`` is a permutation drawn from
    ``(seed, e)``; ``start`` skips the first ``start`` draws (a resumed run picks up where it stopped).

    Data-parallel runs shard the one stream: with ``world_size`` ranks taking ``shard_batch`` draws each per
    step, rank ``r`` yields the ``r``-th run of ``shard_batch`` draws of every ``world_size * shard_batch``, so
    the ranks' batches of a step together are the single-process batch of that step (``start`` is then a
    multiple of ``world_size * shard_batch``)."""

    def __init__(
        self, n: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1, shard_batch: int = 1
    ) -> None:
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.n, self.seed, self.start = int(n), int(seed), int(start)
        self.rank, self.world_size, self.shard_batch = int(rank), int(world_size), max(1, int(shard_batch))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, pos = divmod(self.start, self.n)
        g = self.start  # position in the global stream
        while True:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            for i in range(pos, self.n):
                if (g // self.shard_batch) % self.world_size == self.rank:
                    yield int(perm[i]), int(self.seed * 1_000_003 + epoch * self.n + i) & 0x7FFFFFFF
                g += 1
            epoch, pos = epoch + 1, 0


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def stream_loader(
    dataset: Any,
    seed: int,
    start: int,
    rank: int,
    world_size: int,
    shard_batch: int,
    workers: int = 0,
    pin_memory: bool = False,
    generator_seed: Optional[int] = None,
) -> torch.utils.data.DataLoader:
    """Batches of ``shard_batch`` items of ``dataset`` keyed by this rank's share of the :class:`SeedStream`
    from draw ``start``. ``generator_seed``: the loader draws its base seed from its own generator, so the
    global RNG (dropout) is left alone; without it the loader takes that seed from the global RNG."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=shard_batch,
        sampler=SeedStream(len(dataset), seed, start, rank, world_size, shard_batch),
        num_workers=workers,
        worker_init_fn=_worker_init if workers > 0 else None,
        drop_last=False,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=pin_memory,
        # fork after OpenCV/OpenMP threads have run can deadlock the worker; spawn is safe
        multiprocessing_context="spawn" if workers > 0 else None,
        generator=torch.Generator().manual_seed(generator_seed) if generator_seed is not None else None,
    )


def normalise(frames: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (or 0-255 float) ``(..., 3, h, w)`` RGB -> the network's normalised float input."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0
    return (frames.float() - m) / s
