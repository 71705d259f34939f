import os

# Tests run on the CPU with few threads: the suite must fit 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
