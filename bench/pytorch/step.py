"""The engine's training step in PyTorch, for the ratio the step benchmark prints.

MLP 784-256-256-10 on an 8,000 x 28 x 28 training set, batch 128 by index_select from a permutation,
cross-entropy, Adam (PyTorch's default single-tensor implementation on CPU), then an EMA of every
parameter for 3 decays with in-place lerp_ (what a PyTorch user writes), reading the loss with .item()
each step as the engine does. Prints milliseconds per step (median of rounds).

    python3 bench/pytorch/step.py [threads] [steps]
"""
import sys
from timing import median_ms_per_step
import torch
import torch.nn as nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 400
torch.set_num_threads(threads)
torch.manual_seed(1)

x_all = torch.randn(8000, 1, 28, 28)
y_all = torch.randint(0, 10, (8000,))
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
params = list(model.parameters())
shadows = [[p.detach().clone() for p in params] for _ in range(3)]
weights = [torch.tensor(1 - d) for d in (0.99, 0.999, 0.9999)]
order = torch.randperm(8000)

def step(i):
    start = (i * 128) % (8000 - 128)
    idx = order[start:start + 128]
    x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    value = loss.item()
    optimizer.step()
    with torch.no_grad():
        for k in range(3):
            for s, p in zip(shadows[k], params):
                s.lerp_(p, weights[k])
    return value

print(f"{median_ms_per_step(step, warmup=50, steps=steps, rounds=7):.4f}")
