"""The model registry through MLflow's own client, against one server (EMA Lab or MLflow's): 1,000 registered models with
10 versions each and an alias, then the timed reads a team's tooling makes — search_registered_models (every page at the
default size and at 1,000; a name prefix; a tag), search_model_versions by name, get_model_version_by_alias and
get_latest_versions. Medians of repeated calls, in milliseconds; --out writes them as JSON, --table prints two side by side.

    PYTHONPATH=$(../shared/tools/mlflow-reference/setup.sh | tail -n 1) python3 bench/registry/bench_registry.py \\
        http://127.0.0.1:5080 --label emalab --out /tmp/emalab.json
    python3 bench/registry/bench_registry.py --table /tmp/mlflow.json /tmp/emalab.json
"""
import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

MODELS, VERSIONS = 1000, 10


def populate(base):
    """Models and versions through the REST API in parallel (setting up is not what is measured)."""
    import requests
    session = requests.Session()

    def model(i):
        name = f"bench-{i:04d}"
        session.post(f"{base}/api/2.0/mlflow/registered-models/create",
                     json={"name": name, "tags": [{"key": "team", "value": "vision" if i % 2 else "audio"}]}).raise_for_status()
        for v in range(VERSIONS):
            session.post(f"{base}/api/2.0/mlflow/model-versions/create",
                         json={"name": name, "source": f"s3://bench/{name}/{v}"}).raise_for_status()
        session.post(f"{base}/api/2.0/mlflow/registered-models/alias",
                     json={"name": name, "alias": "champion", "version": str(VERSIONS - 2)}).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(model, range(MODELS)))
    return time.perf_counter() - started


def median_ms(call, repeats):
    call()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(base, label):
    import mlflow
    client = mlflow.MlflowClient(tracking_uri=base, registry_uri=base)
    setup = populate(base)

    def every_page(size, filter_string=None):
        def call():
            token, count = None, 0
            while True:
                page = client.search_registered_models(filter_string=filter_string, max_results=size, page_token=token)
                count += len(page)
                token = page.token
                if not token:
                    break
            assert count == (MODELS if filter_string is None else count), count
            return count
        return call

    figures = {
        "label": label,
        "setup_s (1,000 models x 10 versions, 4 threads)": setup,
        "search_registered_models, all 1,000 (pages of 100)": median_ms(every_page(100), 5),
        "search_registered_models, all 1,000 (one page of 1,000)": median_ms(every_page(1000), 5),
        "search_registered_models name LIKE 'bench-01%' (100)": median_ms(lambda: client.search_registered_models("name LIKE 'bench-01%'"), 20),
        "search_registered_models tags.team = 'vision' (500, pages of 100)": median_ms(every_page(100, "tags.team = 'vision'"), 5),
        "search_model_versions name = 'bench-0500' (10)": median_ms(lambda: client.search_model_versions("name = 'bench-0500'"), 20),
        "get_model_version_by_alias": median_ms(lambda: client.get_model_version_by_alias("bench-0500", "champion"), 200),
        "get_latest_versions": median_ms(lambda: client.get_latest_versions("bench-0500"), 100),
    }
    assert client.get_model_version_by_alias("bench-0500", "champion").version == str(VERSIONS - 2)
    return figures


def table(files):
    runs = [json.load(open(f)) for f in files]
    keys = [k for k in runs[0] if k != "label"]
    print("| operation | " + " | ".join(r["label"] for r in runs) + (" | ratio |" if len(runs) == 2 else " |"))
    print("|---|" + "---|" * len(runs) + ("---|" if len(runs) == 2 else ""))
    for key in keys:
        cells = [f"{r[key]:.1f}" for r in runs]
        ratio = f" | {runs[1][key] / runs[0][key]:.2f}" if len(runs) == 2 and runs[0][key] else ""
        print(f"| {key} | " + " | ".join(cells) + ratio + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("base", nargs="?")
    parser.add_argument("--label", default="server")
    parser.add_argument("--out")
    parser.add_argument("--table", nargs="+")
    args = parser.parse_args()
    if args.table:
        table(args.table)
        sys.exit(0)
    figures = measure(args.base.rstrip("/"), args.label)
    print(json.dumps(figures, indent=1))
    if args.out:
        json.dump(figures, open(args.out, "w"), indent=1)
