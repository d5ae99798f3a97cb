"""The safetensors file format (8-byte little-endian header length, a JSON header, the raw tensors), read and written with
torch alone: what the engine's checkpoints and post-hoc snapshots use, without the ``safetensors`` package."""
from __future__ import annotations

import ctypes
import json
import struct

import torch

_CODES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
_DTYPES = {code: dtype for dtype, code in _CODES.items()}


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""


def save(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """Writes ``tensors`` (name → tensor, on any device) to ``path``; ``metadata`` is a dict of strings."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _CODES:
            raise ValueError(f"{name}: dtype {t.dtype} has no safetensors code")
        data = _bytes(t)
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for data in blobs:
            f.write(data)


def load(path: str) -> tuple:
    """``(tensors, metadata)`` of a safetensors file, on the CPU."""
    with open(path, "rb") as f:
        return loads(f.read())


def loads(content: bytes) -> tuple:
    """``(tensors, metadata)`` of safetensors bytes (a downloaded checkpoint), on the CPU."""
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8:8 + length])
    data = content[8 + length:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        chunk = bytearray(data[start:end])
        flat = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"]).clone()
    return tensors, metadata
