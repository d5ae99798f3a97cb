"""Loads a registered model from a live EMA Lab server as mlflow.pytorch.load_model does, with nothing but PyTorch (CI has
no MLflow): the version an alias names, its download URI, the files under it through the artifact proxy, then MLmodel's
pytorch flavor — code/ on sys.path, data/model.pth loaded with the pickle module data/pickle_module_info.txt names.
Checks the network holds exactly the checkpoint's tensors and prints its class, track and version.

    python3 tests/registered_model.py http://127.0.0.1:5080 <registered model> <alias>
"""
import importlib
import json
import os
import sys
import tempfile
import urllib.parse
import urllib.request

import torch

server, name, alias = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]


def get(path):
    with urllib.request.urlopen(server + path) as answer:
        return answer.read()


def query(**parameters):
    return urllib.parse.urlencode(parameters)


version = json.loads(get("/api/2.0/mlflow/registered-models/alias?" + query(name=name, alias=alias)))["model_version"]
uri = json.loads(get("/api/2.0/mlflow/model-versions/get-download-uri?" + query(name=name, version=version["version"])))["artifact_uri"]
root = uri[len("mlflow-artifacts:/"):]
local = tempfile.mkdtemp()


def download(folder):
    """MLflow's artifact repository: list a folder (names relative to it), fetch its files, recurse into its folders."""
    listing = json.loads(get("/api/2.0/mlflow-artifacts/artifacts?" + query(path=f"{root}/{folder}".rstrip("/"))))
    for entry in listing.get("files", []):
        path = f"{folder}/{entry['path']}".strip("/")
        if entry["is_dir"]:
            download(path)
        else:
            os.makedirs(os.path.dirname(os.path.join(local, path)), exist_ok=True)
            with open(os.path.join(local, path), "wb") as f:
                f.write(get(f"/api/2.0/mlflow-artifacts/artifacts/{root}/{path}"))


download("")

# The pytorch flavor's configuration, as _get_flavor_configuration reads it from MLmodel.
conf, section = {}, None
with open(os.path.join(local, "MLmodel")) as f:
    for line in f:
        if line.startswith("  ") and not line.startswith("    "):
            section = line.strip().rstrip(":")
        elif section == "pytorch" and line.startswith("    "):
            key, value = line.strip().split(": ", 1)
            conf[key] = value
sys.path.insert(0, os.path.join(local, conf["code"]))
data = os.path.join(local, conf["model_data"])
with open(os.path.join(data, "pickle_module_info.txt")) as f:
    pickle_module = importlib.import_module(f.read())
model = torch.load(os.path.join(data, "model.pth"), pickle_module=pickle_module)
model.eval()

import emalab_model  # noqa: E402  (from code/, on the path now)

with open(os.path.join(local, "model.safetensors"), "rb") as f:
    state, meta = emalab_model.read_safetensors(f.read())
loaded = model.state_dict()
assert set(loaded) == set(state), (sorted(loaded), sorted(state))
assert all(torch.equal(loaded[k], v) for k, v in state.items()), "the weights differ from the checkpoint's"
print(type(model).__name__, meta["track"], version["version"], conf["pytorch_version"])
