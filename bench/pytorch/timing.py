"""The timing the PyTorch step scripts print, so that both measure alike.

Imported by step.py, resnet_step.py and unet_step.py (Python puts a script's own directory on its path).
"""
import statistics, time


def median_ms_per_step(step, warmup, steps, rounds):
    """Runs step(i) warmup times, then steps // rounds steps in each of rounds rounds; the median round's ms per step."""
    for i in range(warmup):
        step(i)
    per_step = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(steps // rounds):
            step(i)
        per_step.append((time.perf_counter() - start) / (steps // rounds))
    return statistics.median(per_step) * 1e3
