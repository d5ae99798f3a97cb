import os
import tempfile
import unittest

import torch

from emalab import safetensors


class SafetensorsTests(unittest.TestCase):
    def test_tensors_of_every_dtype_and_metadata_come_back_unchanged(self):
        tensors = {
            "a/float": torch.randn(3, 5), "b/bf16": torch.randn(7).to(torch.bfloat16), "c/half": torch.randn(2, 2).half(),
            "d/long": torch.arange(4), "e/empty": torch.empty(0, 3), "f/scalar": torch.tensor(2.5),
        }
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "x.safetensors")
            safetensors.save(tensors, path, {"format": "test/1", "step": 12})
            loaded, metadata = safetensors.load(path)
            with open(path, "rb") as f:
                header_length = int.from_bytes(f.read(8), "little")
        self.assertEqual({"format": "test/1", "step": "12"}, metadata)
        self.assertEqual(0, header_length % 8)
        for name, tensor in tensors.items():
            self.assertEqual(tensor.dtype, loaded[name].dtype, name)
            self.assertTrue(torch.equal(tensor, loaded[name]), name)
