"""EMA Lab's models for mlflow.pytorch.load_model: the classes of docs/training.md, as they stand there, and the loader
that data/model.pth names. An EMA Lab checkpoint registered in the model registry is logged as an MLflow model whose
data/model.pth is a pickle of one call, from_safetensors(<the checkpoint's bytes>): it rebuilds the network from the
file's "architecture" metadata and loads the track's weights into it. mlflow.pytorch puts this file's folder (code/) on
sys.path before loading; with torch >= 2.6 pass weights_only=False, as for any pickled model.
"""
import json, struct

import torch.nn as nn
import torch.nn.functional as F

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))

class ResNet(nn.Module):           # "resnet": channels per stage [16, 32, 64] and 3 blocks a stage = ResNet-20
    def __init__(self, arch):
        super().__init__()
        widths, c = arch["channels"], arch["channels"][0]
        self.stem = nn.Sequential(nn.Conv2d(arch["inputChannels"], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        blocks = []
        for stage, w in enumerate(widths):
            for b in range(arch["blocks"]):
                blocks.append(BasicBlock(c, w, 2 if stage > 0 and b == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, arch["classes"])

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))

def build(arch):  # arch = json.loads(metadata["architecture"])
    if arch["kind"] == "resnet":
        return ResNet(arch)
    if arch["kind"] == "mlp":                       # default hidden [256, 256]
        layers, n = [nn.Flatten()], arch["inputChannels"] * arch["height"] * arch["width"]
        for h in arch["hidden"]:
            layers += [nn.Linear(n, h), nn.ReLU()]
            n = h
        layers.append(nn.Linear(n, arch["classes"]))
    else:                                           # "cnn", default channels [16, 32]
        layers, c, h, w = [], arch["inputChannels"], arch["height"], arch["width"]
        for oc in arch["channels"]:
            layers += [nn.Conv2d(c, oc, 3, padding=1, bias=False), nn.BatchNorm2d(oc), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = oc, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, arch["classes"])]
    return nn.Sequential(*layers)

import math, torch
from torch import nn
import torch.nn.functional as F

def groups(channels):                       # GroupNorm's groups: 8 where they divide the width
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)

class ResidualBlock(nn.Module):
    def __init__(self, cin, cout, time_width):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_width, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, time):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(F.silu(time))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))

class SelfAttention(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm, self.qkv = nn.GroupNorm(groups(channels), channels), nn.Conv2d(channels, 3 * channels, 1)
        self.projection = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        weights = torch.softmax((q.transpose(1, 2) @ k) * torch.tensor(1 / math.sqrt(c), dtype=x.dtype), dim=2)
        return x + self.projection((v @ weights.transpose(1, 2)).reshape(b, c, h, w))

class DiffusionUNet(nn.Module):
    def __init__(self, in_channels=1, widths=(32, 64, 64), blocks=1, attention=True):
        super().__init__()
        e, self.levels, self.blocks = widths[0], len(widths), blocks
        half = e // 2
        self.register_buffer("frequencies", torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half).float(), persistent=False)
        self.time1, self.time2 = nn.Linear(e, 4 * e), nn.Linear(4 * e, 4 * e)
        self.stem = nn.Conv2d(in_channels, e, 3, padding=1)
        skips, ch, self.down, self.downsample = [e], e, nn.ModuleList(), nn.ModuleList()
        for level, width in enumerate(widths):
            for _ in range(blocks):
                self.down.append(ResidualBlock(ch, width, 4 * e)); ch = width; skips.append(ch)
            if level < self.levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1)); skips.append(ch)
        self.middle1 = ResidualBlock(ch, ch, 4 * e)
        self.attention = SelfAttention(ch) if attention else None
        self.middle2 = ResidualBlock(ch, ch, 4 * e)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(self.levels)):
            for _ in range(blocks + 1):
                self.up.append(ResidualBlock(ch + skips.pop(), widths[level], 4 * e)); ch = widths[level]
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.out_norm, self.out_conv = nn.GroupNorm(groups(ch), ch), nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x, t):                 # x [B, C, H, W], t [B] int64: the predicted noise ε
        angles = t.float()[:, None] * self.frequencies[None]
        time = self.time2(F.silu(self.time1(torch.cat([angles.sin(), angles.cos()], 1))))
        h = self.stem(x); skips = [h]; block = 0
        for level in range(self.levels):
            for _ in range(self.blocks):
                h = self.down[block](h, time); block += 1; skips.append(h)
            if level < self.levels - 1:
                h = self.downsample[level](h); skips.append(h)
        h = self.middle1(h, time)
        if self.attention is not None:
            h = self.attention(h)
        h = self.middle2(h, time); block = 0
        for level in reversed(range(self.levels)):
            for _ in range(self.blocks + 1):
                h = self.up[block](torch.cat([h, skips.pop()], 1), time); block += 1
            if level > 0:                    # up to the size of the next skip (odd sizes come back exactly)
                h = self.upsample[self.levels - 1 - level](F.interpolate(h, size=skips[-1].shape[2:], mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))

def build_unet(architecture):                # from an exported checkpoint's "architecture" metadata
    return DiffusionUNet(architecture["inputChannels"], architecture["channels"], architecture["blocks"], architecture["attention"])

def linear_alphas_cumprod(timesteps=1000, first=1e-4, last=0.02):    # DDPM's linear schedule, ᾱ_t
    betas = torch.tensor([first + (last - first) * t / (timesteps - 1) for t in range(timesteps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).tolist()

@torch.no_grad()
def ddim_sample(model, alphas_cumprod, noise, steps):               # DDIM, η = 0, diffusers' "leading" spacing
    ratio = len(alphas_cumprod) // steps
    times = [i * ratio for i in range(steps)][::-1]
    x = noise
    for i, t in enumerate(times):
        a = alphas_cumprod[t]
        previous = alphas_cumprod[times[i + 1]] if i + 1 < len(times) else 1.0
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long))
        clean = x * (1 / math.sqrt(a)) + eps * (-math.sqrt(1 - a) / math.sqrt(a))
        x = clean * math.sqrt(previous) + eps * math.sqrt(1 - previous)
    return x

# ---- the loader data/model.pth calls ----

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(content):
    """The tensors and the metadata of a .safetensors file's bytes (nothing but PyTorch)."""
    size = struct.unpack("<Q", content[:8])[0]
    header = json.loads(content[8:8 + size])
    meta = header.pop("__metadata__", {})
    data = content[8 + size:]
    state = {name: torch.frombuffer(bytearray(data[v["data_offsets"][0]:v["data_offsets"][1]]), dtype=_DTYPES[v["dtype"]]).reshape(v["shape"])
             for name, v in header.items()}
    return state, meta


def from_safetensors(content):
    """The network an EMA Lab checkpoint holds, its weights loaded, in eval mode."""
    state, meta = read_safetensors(content)
    architecture = json.loads(meta["architecture"])
    model = build_unet(architecture) if architecture["kind"] == "unet" else build(architecture)
    model.load_state_dict(state)
    return model.eval()
