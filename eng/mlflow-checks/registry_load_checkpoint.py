"""A checkpoint registered from EMA Lab's run page, loaded by the real MLflow client: mlflow.pytorch.load_model by alias
and by version returns the network, with exactly the weights of the checkpoint the run page downloads.

    MLFLOW_TRACKING_URI=http://127.0.0.1:5080 PYTHONPATH=$(../shared/tools/mlflow-reference/setup.sh | tail -n 1) \\
        python3 eng/mlflow-checks/registry_load_checkpoint.py <registered model> <alias> <checkpoint id>
"""
import os
import sys
import types
import urllib.request

# Debian's torch 1.13 has no torch.export, which mlflow.pytorch imports (only its pt2 format uses it).
torch_export = types.ModuleType("torch.export"); torch_export.Dim = object; sys.modules["torch.export"] = torch_export
import mlflow  # noqa: E402
import mlflow.pytorch  # noqa: E402
import torch  # noqa: E402

name, alias, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3]
server = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
model = mlflow.pytorch.load_model(f"models:/{name}@{alias}")
version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
same = mlflow.pytorch.load_model(f"models:/{name}/{version.version}")
content = urllib.request.urlopen(f"{server}/api/checkpoints/{checkpoint}/download").read()
sys.path.insert(0, os.path.dirname(mlflow.artifacts.download_artifacts(f"models:/{name}@{alias}/code/emalab_model.py")))
import emalab_model  # noqa: E402

state, meta = emalab_model.read_safetensors(content)
loaded = model.state_dict()
assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items()), "weights differ"
assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))
print(type(model).__name__, meta["track"], "version", version.version, "eval_accuracy", meta.get("eval_accuracy"), "— the checkpoint's weights")
