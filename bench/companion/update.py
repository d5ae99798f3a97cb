"""The companion's update of 8 tracks against the two floors it is built from, on this machine's CPU:

    /usr/bin/python3 bench/companion/update.py          (PYTHONPATH is set to clients/python by the script)

- copy_: 8 × (copy every tensor) — what any update must at least move through memory;
- lerp_ loop: 8 × (lerp_ every tensor), the loop timm's ModelEmaV2 and most scripts write;
- EmaTracks.update() with 8 tracks: emalab's rule ×3 (subtract form), timm, AveragedModel (lerp form), keras,
  lightning (blend form) and SWA — each rule with the arithmetic its library uses.
Printed: milliseconds per update (median of 30 after 5 warm-ups) and the ratio to each floor, at 1 and 2 threads.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

import torch  # noqa: E402

from emalab import EmaTracks  # noqa: E402

TRACKS = [0.99, 0.999, 0.9999, {"preset": "timm", "decay": 0.9998}, {"preset": "averaged-model"}, {"preset": "keras"},
          {"preset": "lightning"}, {"preset": "swa"}]


def model():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(1024, 1024) for _ in range(6)] + [torch.nn.Linear(1024, 10)]
    return torch.nn.Sequential(*layers)  # 6.3 M parameters in 14 tensors


def median_ms(fn, repeats=30, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    net = model()
    params = [p.detach() for p in net.parameters()]
    count = sum(p.numel() for p in params)
    shadows = [[p.clone() for p in params] for _ in TRACKS]
    tracks = EmaTracks(net, TRACKS)
    print(f"torch {torch.__version__}, {count / 1e6:.1f} M parameters in {len(params)} tensors, {len(TRACKS)} tracks")
    for threads in (1, 2):
        torch.set_num_threads(threads)

        def copy():
            for shadow in shadows:
                for s, w in zip(shadow, params):
                    s.copy_(w)

        def lerp():
            for shadow in shadows:
                for s, w in zip(shadow, params):
                    s.lerp_(w, 0.001)

        with torch.no_grad():
            c, l = median_ms(copy), median_ms(lerp)
        u = median_ms(tracks.update)
        print(f"{threads} thread(s): copy_ {c:7.2f} ms   lerp_ loop {l:7.2f} ms   EmaTracks.update {u:7.2f} ms   "
              f"= {u / c:.2f}x copy_, {u / l:.2f}x lerp_ loop")


if __name__ == "__main__":
    main()
