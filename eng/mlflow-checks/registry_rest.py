"""MLflow's model registry REST API, call by call, against two servers — MLflow's own (reference_server.py) and EMA Lab —
on empty data directories: every answer's status and body, compared after leaving out what differs by nature (times,
run ids, MLflow's extra error fields). Prints each difference; EMA Lab's known, intended ones are listed in
docs/registry.md. Needs only `requests`.

    python3 eng/mlflow-checks/registry_rest.py http://127.0.0.1:5599 http://127.0.0.1:5080
"""
import json
import re
import sys

import requests


def answers(server):
    base = server.rstrip("/") + "/api/2.0/mlflow"
    out = []

    def call(method, path, body=None, params=None, label=None):
        r = requests.request(method, base + path, json=body, params=params)
        try:
            j = r.json()
        except ValueError:
            j = r.text[:200]
        out.append({"call": label or f"{method} {path}", "status": r.status_code, "body": j})
        return j

    exp = call("POST", "/experiments/create", {"name": "reg-probe"})["experiment_id"]
    run = call("POST", "/runs/create", {"experiment_id": exp, "start_time": 1})["run"]["info"]["run_id"]
    call("POST", "/registered-models/create", {"name": "m1", "tags": [{"key": "t", "value": "v"}], "description": "d"})
    call("POST", "/registered-models/create", {"name": "m1"}, label="create again")
    call("POST", "/registered-models/create", {}, label="create no name")
    call("POST", "/registered-models/create", {"name": "a/b"}, label="create slash")
    call("POST", "/registered-models/create", {"name": "a:b"}, label="create colon")
    call("POST", "/registered-models/create", {"name": "  "}, label="create blank")
    call("POST", "/registered-models/create", {"name": "x", "tags": [{"key": "", "value": "v"}]}, label="create bad tag")
    call("GET", "/registered-models/get", params={"name": "m1"})
    call("GET", "/registered-models/get", params={"name": "nope"}, label="get missing")
    call("GET", "/registered-models/get", label="get no name")
    call("POST", "/model-versions/create", {"name": "m1", "source": f"runs:/{run}/model", "run_id": run, "tags": [{"key": "k", "value": "1"}], "description": "first"})
    call("POST", "/model-versions/create", {"name": "m1", "source": "mlflow-artifacts:/1/abc", "run_id": run})
    call("POST", "/model-versions/create", {"name": "m1", "source": "/etc/passwd"}, label="create local source")
    call("POST", "/model-versions/create", {"name": "m1", "source": "mlflow-artifacts:/../../x"}, label="create dotdot")
    call("POST", "/model-versions/create", {"name": "m1"}, label="create mv no source")
    call("POST", "/model-versions/create", {"name": "nope", "source": "s3://b/k"}, label="create mv missing model")
    call("POST", "/model-versions/create", {"name": "m1", "source": "s3://b/k"})
    call("GET", "/model-versions/get", params={"name": "m1", "version": "1"})
    call("GET", "/model-versions/get", params={"name": "m1", "version": "9"}, label="get mv missing")
    call("GET", "/model-versions/get", params={"name": "m1", "version": "x"}, label="get mv non-int")
    call("PATCH", "/model-versions/update", {"name": "m1", "version": "2", "description": "second"})
    call("POST", "/registered-models/alias", {"name": "m1", "alias": "champion", "version": "1"})
    call("POST", "/registered-models/alias", {"name": "m1", "alias": "champion", "version": "2"}, label="move alias")
    call("POST", "/registered-models/alias", {"name": "m1", "alias": "latest", "version": "2"}, label="alias latest")
    call("POST", "/registered-models/alias", {"name": "m1", "alias": "v3", "version": "2"}, label="alias v3")
    call("POST", "/registered-models/alias", {"name": "m1", "alias": "a b", "version": "2"}, label="alias space")
    call("POST", "/registered-models/alias", {"name": "m1", "alias": "ok", "version": "7"}, label="alias missing version")
    call("GET", "/registered-models/alias", params={"name": "m1", "alias": "champion"})
    call("GET", "/registered-models/alias", params={"name": "m1", "alias": "latest"}, label="by alias latest")
    call("GET", "/registered-models/alias", params={"name": "m1", "alias": "none"}, label="by alias missing")
    call("POST", "/model-versions/transition-stage", {"name": "m1", "version": "1", "stage": "production", "archive_existing_versions": False})
    call("POST", "/model-versions/transition-stage", {"name": "m1", "version": "2", "stage": "Production", "archive_existing_versions": True}, label="transition archive")
    call("POST", "/model-versions/transition-stage", {"name": "m1", "version": "2", "stage": "bogus", "archive_existing_versions": False}, label="transition bogus")
    call("POST", "/model-versions/transition-stage", {"name": "m1", "version": "2", "stage": "None", "archive_existing_versions": True}, label="transition archive none")
    call("POST", "/registered-models/get-latest-versions", {"name": "m1"})
    call("POST", "/registered-models/get-latest-versions", {"name": "m1", "stages": ["Production"]}, label="latest production")
    call("GET", "/registered-models/get-latest-versions", params={"name": "m1", "stages": "archived"}, label="latest archived GET")
    call("GET", "/model-versions/get-download-uri", params={"name": "m1", "version": "1"})
    call("POST", "/registered-models/set-tag", {"name": "m1", "key": "team", "value": "vision"})
    call("POST", "/model-versions/set-tag", {"name": "m1", "version": "1", "key": "q", "value": "good"})
    call("DELETE", "/registered-models/delete-tag", {"name": "m1", "key": "absent"}, label="delete absent rm tag")
    call("DELETE", "/model-versions/delete-tag", {"name": "m1", "version": "1", "key": "q"})
    call("PATCH", "/registered-models/update", {"name": "m1", "description": "new"})
    call("GET", "/registered-models/search", params={"filter": "name LIKE 'm%'"})
    call("GET", "/registered-models/search", params={"filter": "tags.team = 'vision'", "max_results": 1})
    call("GET", "/registered-models/search", params={"filter": "version_number = 1"}, label="rm search bad attr")
    call("GET", "/registered-models/search", params={"max_results": 1001}, label="rm search too many")
    call("GET", "/registered-models/search", params={"order_by": "bogus"}, label="rm search bad order")
    call("GET", "/model-versions/search", params={"filter": "name = 'm1'"})
    call("GET", "/model-versions/search", params={"filter": f"run_id = '{run}'", "order_by": "version_number ASC"})
    call("GET", "/model-versions/search", params={"filter": "version_number > 1", "max_results": 1})
    call("GET", "/model-versions/search", params={"filter": "tags.k = '1'"})
    call("GET", "/model-versions/search", params={"filter": "description = 'x'"}, label="mv search bad attr")
    call("POST", "/registered-models/create", {"name": "m2"})
    call("POST", "/registered-models/rename", {"name": "m2", "new_name": "m1"}, label="rename onto existing")
    call("POST", "/registered-models/rename", {"name": "m1", "new_name": "m3"})
    call("GET", "/registered-models/alias", params={"name": "m3", "alias": "champion"}, label="alias after rename")
    call("DELETE", "/model-versions/delete", {"name": "m3", "version": "1"})
    call("GET", "/model-versions/get", params={"name": "m3", "version": "1"}, label="get deleted mv")
    call("POST", "/model-versions/create", {"name": "m3", "source": "s3://b/k4"}, label="create after delete")
    call("DELETE", "/registered-models/alias", {"name": "m3", "alias": "champion"})
    call("DELETE", "/registered-models/alias", {"name": "m3", "alias": "champion"}, label="delete alias again")
    call("DELETE", "/registered-models/delete", {"name": "m3"})
    call("DELETE", "/registered-models/delete", {"name": "m3"}, label="delete again")
    call("GET", "/registered-models/search")
    return out


VARYING = {"creation_timestamp", "last_updated_timestamp", "run_id", "run_uuid", "sqlstate", "error_class", "experiment_id",
           "artifact_uri", "run_name", "start_time"}


def normal(x):
    if isinstance(x, dict):
        return {k: normal(v) for k, v in x.items() if k not in VARYING}
    if isinstance(x, list):
        return [normal(v) for v in x]
    return re.sub(r"[0-9a-f]{32}", "<id>", x) if isinstance(x, str) else x


if __name__ == "__main__":
    reference, candidate = answers(sys.argv[1]), answers(sys.argv[2])
    differences = 0
    for a, b in zip(reference, candidate):
        if normal(a) != normal(b):
            differences += 1
            print("==", a["call"])
            print("  reference:", json.dumps(normal(a))[:700])
            print("  candidate:", json.dumps(normal(b))[:700])
    print(f"{len(reference)} calls, {differences} differing answers")
