"""The engine's ResNet training step in PyTorch, for the ratio the resnet benchmark prints.

The network is the documentation's own `ResNet` class (its "Models (PyTorch equivalents)" block, read from docs/training.md),
ResNet-20 by default (channels 16, 32, 64; 3 basic blocks a stage) on Fashion-MNIST's 60,000 training images
(Debian's dataset-fashion-mnist), normalised with the split's mean and deviation. Each step: a batch of 128 by
index_select from a seeded permutation, cross-entropy, backward, loss.item() (as the engine reads it), Adam
(PyTorch's default single-tensor implementation on CPU), then an EMA of every floating-point state_dict entry
(parameters and batch-norm statistics, as the engine's default "average" policy) for 3 decays with in-place lerp_,
and the step counters copied. Prints milliseconds per step (median of rounds).

    python3 bench/pytorch/resnet_step.py [threads] [steps] [channels] [blocks]
"""
import sys
from timing import median_ms_per_step
from workload import docs_block, idx, training_images
import numpy as np
import torch
import torch.nn as nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 70
channels = [int(c) for c in sys.argv[3].split(",")] if len(sys.argv) > 3 else [16, 32, 64]
blocks = int(sys.argv[4]) if len(sys.argv) > 4 else 3
torch.set_num_threads(threads)
torch.manual_seed(1)

exec(docs_block("## Models (PyTorch equivalents)"))  # defines BasicBlock, ResNet, build
x_all = training_images()
y_all = torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
model = build({"kind": "resnet", "inputChannels": 1, "height": 28, "width": 28, "classes": 10, "channels": channels, "blocks": blocks})
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
state = model.state_dict()
floats = [t for t in state.values() if t.is_floating_point()]
counters = [t for t in state.values() if not t.is_floating_point()]
shadows = [([t.detach().clone() for t in floats], [t.clone() for t in counters]) for _ in range(3)]
weights = [torch.tensor(1 - d) for d in (0.99, 0.999, 0.9999)]
order = torch.randperm(len(y_all))

def step(i):
    start = (i * 128) % (len(y_all) - 128)
    index = order[start:start + 128]
    x, y = x_all.index_select(0, index), y_all.index_select(0, index)
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    value = loss.item()
    optimizer.step()
    with torch.no_grad():
        for (averaged, copied), w in zip(shadows, weights):
            for s, t in zip(averaged, floats):
                s.lerp_(t, w)
            for s, t in zip(copied, counters):
                s.copy_(t)
    return value

print(f"{median_ms_per_step(step, warmup=10, steps=steps, rounds=5):.4f}")
