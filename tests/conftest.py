"""Shared test setup."""

import torch

# Small tensor ops are faster on one thread, and on a shared 2-core machine OpenMP
# spin-waiting under contention slowed this suite down eightfold.
torch.set_num_threads(1)
