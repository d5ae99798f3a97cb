"""What the PyTorch step scripts share: the documentation's Python code, and Fashion-MNIST as the engine reads it.

Imported by resnet_step.py and unet_step.py (Python puts a script's own directory on its path).
"""
import gzip, os, re, sys
import numpy as np
import torch


def docs_block(heading):
    """The first python block after `heading` in the repository's docs/training.md, found above this file (bench/pytorch,
    or the benchmark's build output inside bench/EmaLab.Bench): the caller exec()s it."""
    root = os.path.dirname(os.path.abspath(__file__))
    while not os.path.exists(os.path.join(root, "docs", "training.md")) or not os.path.isdir(os.path.join(root, "src", "TrainingEngine")):
        if os.path.dirname(root) == root:
            sys.exit("docs/training.md of the repository not found above " + __file__)
        root = os.path.dirname(root)
    docs = open(os.path.join(root, "docs", "training.md"), encoding="utf-8").read()
    return re.search(r"```python\n(.*?)```", docs[docs.index(heading):], re.S).group(1)


def idx(name):
    """One of Debian's dataset-fashion-mnist IDX files as a uint8 array (its header skipped)."""
    with gzip.open(f"/usr/share/datasets/fashion-mnist/{name}") as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16 if "images" in name else 8)


def training_images():
    """The 60,000 training images [N, 1, 28, 28], normalised with the split's mean and deviation (as the engine does)."""
    pixels = torch.from_numpy(idx("train-images-idx3-ubyte.gz").astype(np.float32).reshape(-1, 1, 28, 28) / 255)
    return (pixels - pixels.mean()) / pixels.std()
