#!/usr/bin/env python3
"""Runs mnist-train and the NumPy version of the same job side by side, interleaved, and prints
each one's median wall time (whole process) and the ratio. Started by scripts/compare-peers."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(command, env):
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument(
        "--numpy-threads",
        type=int,
        help="limit NumPy's BLAS to N threads (default: its own choice, all cores)",
    )
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    ours_env = dict(os.environ)
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on this machine for old OpenBLAS builds;
    # they slow a current NumPy down, so the NumPy runs get neither (ours uses no BLAS).
    numpy_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if args.numpy_threads:
        numpy_env["OPENBLAS_NUM_THREADS"] = str(args.numpy_threads)
        numpy_env["OMP_NUM_THREADS"] = str(args.numpy_threads)
    with tempfile.TemporaryDirectory() as tmp:
        ours = [args.binary, "--epochs", "5", "--quiet", "--output", os.path.join(tmp, "weights.bin")]
        peer = [sys.executable, os.path.join(here, "numpy_mlp.py")]
        blas = subprocess.run(
            [sys.executable, "-c", "import numpy, threadpoolctl, json; "
             "print(json.dumps([(i.get('internal_api'), i.get('architecture'), i.get('num_threads')) "
             "for i in threadpoolctl.threadpool_info()]))"],
            env=numpy_env, capture_output=True, text=True,
        ).stdout.strip()
        print(f"NumPy BLAS (threadpoolctl): {blas}")
        results = {"mnist-train": [], "numpy": []}
        accuracies = {"mnist-train": None, "numpy": None}
        for round_index in range(args.rounds):
            seconds, out = timed(ours, ours_env)
            results["mnist-train"].append(seconds)
            accuracies["mnist-train"] = out.strip().splitlines()[-1]
            seconds, out = timed(peer, numpy_env)
            results["numpy"].append(seconds)
            accuracies["numpy"] = json.loads(out.strip().splitlines()[-1])["test_accuracy"]
            print(
                f"round {round_index + 1}/{args.rounds}: mnist-train {results['mnist-train'][-1]:.3f} s, "
                f"numpy {results['numpy'][-1]:.3f} s"
            )
    ours_median = statistics.median(results["mnist-train"])
    numpy_median = statistics.median(results["numpy"])
    print(f"mnist-train: median {ours_median:.3f} s (min {min(results['mnist-train']):.3f}) - {accuracies['mnist-train']}")
    print(f"numpy:       median {numpy_median:.3f} s (min {min(results['numpy']):.3f}) - test accuracy {accuracies['numpy']:.4f}")
    print(f"ratio (numpy / mnist-train, medians): {numpy_median / ours_median:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": results, "ratio": numpy_median / ours_median}, f, indent=2)


if __name__ == "__main__":
    main()
