import torch

# Tests use tiny models: one thread is as fast, and avoids the spin-waiting of two torch
# threads on a shared 2-core machine (measured: 100x slowdowns of AutoAttack under load).
torch.set_num_threads(1)
