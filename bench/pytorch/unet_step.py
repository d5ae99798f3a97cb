"""The engine's diffusion training step in PyTorch, for the ratio the diffusion benchmark prints.

The network is the documentation's own `DiffusionUNet` class (docs/training.md, "The diffusion U-Net and DDIM sampler
in PyTorch"), on Fashion-MNIST's 60,000 training images (Debian's dataset-fashion-mnist) normalised with the split's
mean and deviation. Each step as the engine's: a batch by index_select from a seeded permutation, a timestep per image
drawn uniformly from 1,000 and Gaussian noise from a generator seeded for the step, the images noised with the linear
schedule's ᾱ, the ε-prediction's mean squared error, backward, loss.item(), Adam (PyTorch's default single-tensor
implementation on CPU), then an EMA of every floating-point state_dict entry for 3 decays with in-place lerp_.
Prints milliseconds per step (median of rounds).

    python3 bench/pytorch/unet_step.py [threads] [steps] [widths] [blocks] [attention 0|1] [batch]
"""
import sys
from timing import median_ms_per_step
from workload import docs_block, training_images
import torch
import torch.nn as nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
widths = [int(c) for c in sys.argv[3].split(",")] if len(sys.argv) > 3 else [16, 32]
blocks = int(sys.argv[4]) if len(sys.argv) > 4 else 1
attention = sys.argv[5] != "0" if len(sys.argv) > 5 else True
batch = int(sys.argv[6]) if len(sys.argv) > 6 else 64
torch.set_num_threads(threads)
torch.manual_seed(1)

exec(docs_block("## The diffusion U-Net and DDIM sampler in PyTorch"))  # defines DiffusionUNet, linear_alphas_cumprod, ddim_sample
x_all = training_images()
model = DiffusionUNet(1, widths, blocks, attention)
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
alphas = torch.tensor(linear_alphas_cumprod(), dtype=torch.float64)
signal, spread = alphas.sqrt().float(), (1 - alphas).sqrt().float()
floats = [t for t in model.state_dict().values() if t.is_floating_point()]
shadows = [[t.detach().clone() for t in floats] for _ in range(3)]
weights = [torch.tensor(1 - d) for d in (0.99, 0.999, 0.9999)]
order = torch.randperm(len(x_all))

def step(i):
    start = (i * batch) % (len(x_all) - batch)
    x = x_all.index_select(0, order[start:start + batch])
    generator = torch.Generator().manual_seed(i)
    t = torch.randint(0, 1000, (batch,), generator=generator)
    noise = torch.randn(x.shape, generator=generator)
    noised = x * signal[t][:, None, None, None] + noise * spread[t][:, None, None, None]
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(noised, t), noise)
    loss.backward()
    value = loss.item()
    optimizer.step()
    with torch.no_grad():
        for averaged, w in zip(shadows, weights):
            for s, t in zip(averaged, floats):
                s.lerp_(t, w)
    return value

print(f"{median_ms_per_step(step, warmup=3, steps=steps, rounds=5):.4f}")
