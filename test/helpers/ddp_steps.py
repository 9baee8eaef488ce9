"""Child process for the DDP test: 4 PK training steps on a fixed global batch.

Run alone (one process, whole batch) or as rank RANK of WORLD_SIZE (gloo); saves
the global mean reconstruction loss of each step to the .npy path given.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from affective_memory_ros.pk.data import CropSet
from affective_memory_ros.pk.model import PKConfig
from affective_memory_ros.pk.train import TrainConfig, Trainer


def main() -> int:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 8
    crops = np.repeat(np.repeat(rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8), 24, axis=1), 24, axis=2)
    labels = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    labels[::3] = np.nan
    data = CropSet(crops, labels, [str(i) for i in range(n)], ["t"] * n)
    trainer = Trainer(TrainConfig(model=PKConfig(width=8), device="cpu", batch_size=8, seed=3, out_dir="/tmp/unused"),
                      data)
    gen = torch.Generator().manual_seed(11)
    xb, yb = next(trainer.batches(0))
    losses = []
    for _ in range(4):
        logs = trainer.train_step(xb, yb, gen)
        rec = torch.tensor(logs["rec"])
        if trainer.world > 1:
            dist.all_reduce(rec)
            rec /= trainer.world
        losses.append(float(rec))
    if trainer.rank == 0:
        np.save(sys.argv[1], np.array(losses))
    if trainer.world > 1:
        # Both ranks finish their collectives before either tears gloo down: a rank that
        # exits while its peer's last all_reduce is still in flight aborts gloo's threads
        # ("terminate called without an active exception"), which a loaded machine makes likely.
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
