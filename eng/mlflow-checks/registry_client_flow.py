"""The real MLflow client's registry flow, as a user's script runs it: log_model(registered_model_name=…), register_model
from runs:/ and models:/, aliases, load_model by alias, version, latest and model id, model_id metrics, both searches,
stages, delete (the number stays taken), rename, delete. Run it against MLflow's own server and EMA Lab: the lines printed
must be the same (model ids and run ids aside).

    MLFLOW_TRACKING_URI=http://127.0.0.1:5080 PYTHONPATH=$(../shared/tools/mlflow-reference/setup.sh | tail -n 1) \
        python3 eng/mlflow-checks/registry_client_flow.py
"""
import sys, types, json
# Debian's torch 1.13 has no torch.export, which mlflow.pytorch imports (only its pt2 format uses it).
torch_export = types.ModuleType("torch.export"); torch_export.Dim = object; sys.modules["torch.export"] = torch_export
import torch, mlflow, mlflow.pytorch
from mlflow import MlflowClient
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
x = torch.randn(5, 4)
mlflow.set_experiment("registry-flow")
client = MlflowClient()
with mlflow.start_run() as run:
    mlflow.log_metric("loss", 0.5, step=1)
    info = mlflow.pytorch.log_model(net, name="ema_model", registered_model_name="flow-model")
    mlflow.log_metric("eval_acc", 0.91, step=1, model_id=info.model_id, dataset=None)
print("v1", info.registered_model_version)
mv2 = mlflow.register_model(f"runs:/{run.info.run_id}/ema_model", "flow-model")
print("v2", mv2.version, mv2.source, mv2.run_id)
mv3 = mlflow.register_model(f"models:/{info.model_id}", "flow-model")
print("v3", mv3.version, mv3.source)
client.set_registered_model_alias("flow-model", "champion", "1")
client.set_registered_model_alias("flow-model", "champion", "2")
print("alias ->", client.get_model_version_by_alias("flow-model", "champion").version)
for uri in ["models:/flow-model@champion", "models:/flow-model/2", "models:/flow-model/latest", f"models:/{info.model_id}"]:
    loaded = mlflow.pytorch.load_model(uri)
    print(uri, bool(torch.allclose(loaded(x), net(x))))
lm = client.get_logged_model(info.model_id)
print("logged model metrics", [(m.key, m.value, m.step) for m in lm.metrics])
print("search_logged_models", len(mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string="metrics.eval_acc > 0.9", output_format="list")))
print("rm search", [m.name for m in client.search_registered_models(filter_string="name LIKE 'flow%'")])
print("mv search", sorted(v.version for v in client.search_model_versions("name = 'flow-model'")))
print("latest", [(v.version, v.current_stage) for v in client.get_latest_versions("flow-model")])
client.transition_model_version_stage("flow-model", "1", "Staging")
print("download uri", client.get_model_version_download_uri("flow-model", "1"))
client.delete_model_version("flow-model", "3")
mv4 = client.create_model_version("flow-model", f"models:/{info.model_id}", model_id=info.model_id)
print("v4 after delete", mv4.version)
print("tag on logged model", client.get_logged_model(info.model_id).tags.get("mlflow.modelVersions"))
client.rename_registered_model("flow-model", "flow-renamed")
print("after rename alias", client.get_model_version_by_alias("flow-renamed", "champion").version)
client.delete_registered_model("flow-renamed")
try:
    client.get_registered_model("flow-renamed")
except mlflow.exceptions.MlflowException as e:
    print("deleted:", e.error_code)
print("OK")
