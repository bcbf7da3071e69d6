#!/usr/bin/env python3
"""Runs `mnist-train --arch cnn` and the PyTorch version of the same job (torch_cnn.py: the same
network, batch size, optimizer and epochs on the same data/ files) side by side, interleaved
(the order alternates every round), and prints each one's median training time per epoch and
whole-process wall time, and the ratios. Started by `scripts/compare-peers --torch-cnn`."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(command):
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1: minutes, not hours)")
    parser.add_argument("--batch-size", type=int, default=64, help="both sides (default: our CNN recipe's 64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="both sides (default: all cores)")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        ours = [args.binary, "--arch", "cnn", *common, "--quiet", "--json", "--output", os.path.join(tmp, "cnn.bin")]
        peer = [sys.executable, os.path.join(here, "torch_cnn.py"), *common]
        print(f"mnist-train: {' '.join(ours)}")
        print(f"pytorch:     {' '.join(peer)}")
        wall = {"mnist-train": [], "pytorch": []}
        epoch = {"mnist-train": [], "pytorch": []}
        accuracy = {}
        runs = {"mnist-train": ours, "pytorch": peer}
        torch_version = None
        for round_index in range(args.rounds):
            order = ["mnist-train", "pytorch"] if round_index % 2 == 0 else ["pytorch", "mnist-train"]
            for name in order:
                seconds, report = timed(runs[name])
                wall[name].append(seconds)
                epoch[name].append(report["train_seconds"] / args.epochs)
                accuracy[name] = report["test_accuracy"]
                torch_version = report.get("torch", torch_version)
            print(
                f"round {round_index + 1}/{args.rounds}: "
                f"mnist-train epoch {epoch['mnist-train'][-1]:.3f} s (process {wall['mnist-train'][-1]:.3f} s), "
                f"pytorch epoch {epoch['pytorch'][-1]:.3f} s (process {wall['pytorch'][-1]:.3f} s)",
                flush=True,
            )
    median = {name: (statistics.median(epoch[name]), statistics.median(wall[name])) for name in wall}
    print(f"PyTorch {torch_version}, {args.threads} thread(s) each, batch {args.batch_size}, {args.epochs} epoch(s) per run")
    for name in ("mnist-train", "pytorch"):
        print(
            f"{name + ':':<13}median epoch {median[name][0]:.3f} s (min {min(epoch[name]):.3f}), "
            f"median process {median[name][1]:.3f} s - test accuracy {accuracy[name]:.4f}"
        )
    epoch_ratio = median["pytorch"][0] / median["mnist-train"][0]
    wall_ratio = median["pytorch"][1] / median["mnist-train"][1]
    print(f"ratio (pytorch / mnist-train, medians): epoch {epoch_ratio:.2f}x, whole process {wall_ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "torch": torch_version,
                    "epoch_seconds": epoch,
                    "process_seconds": wall,
                    "test_accuracy": accuracy,
                    "epoch_ratio": epoch_ratio,
                    "process_ratio": wall_ratio,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
