"""`python -m search.study` with the tests' tiny profile, for tests that need a separate process.

python tests/tiny_worker.py --train train.npz --profile tiny ...
"""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search import space, study  # noqa: E402
from search.stages import objective  # noqa: E402

# No finalist stage unless a test asks for one (--finalists): most tests look at the search alone.
# Epochs of 3 steps: a pass over the tiny training split is 2 batches, so epochs run into the next.
TINY = space.Profile("tiny", base=2, epochs=(1, 2), timeout=600, n_trials=3, finalists=0, epoch_steps=3)


HANGING = "hanging after the epoch"  # printed once the epoch's storage writes are done


def hang_after_first_epoch():
    """Make every trial hang after its first epoch, so a test can kill or interrupt the process mid-trial."""
    real_fit = objective.fit

    def fit(*args, on_epoch, **kwargs):
        def report(r):
            on_epoch(r)
            print(HANGING, flush=True)
            time.sleep(600)

        return real_fit(*args, on_epoch=report, **kwargs)

    objective.fit = fit


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny nets run faster on one thread
    space.PROFILES["tiny"] = TINY
    if os.environ.get("TINY_WORKER_HANG"):
        hang_after_first_epoch()
    sys.exit(study.main(sys.argv[1:]))
