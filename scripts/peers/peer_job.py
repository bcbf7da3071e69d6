"""What the peer scripts share: their common options, reading the MNIST gzip IDX files, the epoch
line, the JSON report."""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np


def job_arguments(doc, epochs, batch_size):
    """A parser with the options every peer job takes; `epochs` and `batch_size` are its recipe's
    defaults. The job adds its own options before parsing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    return parser


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndims = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims)
    return data.reshape(dims)


def load_split(data_dir, stem):
    """(images [N, 28, 28] u8, labels [N] int64) of the split `stem` ("train" or "t10k")."""
    images = read_idx(os.path.join(data_dir, f"{stem}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{stem}-labels-idx1-ubyte.gz"))
    return images, labels.astype(np.int64)


def print_epoch(epoch, epochs, seconds, mean_loss, accuracy):
    """The Keras-style epoch line, on stderr."""
    print(
        f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - "
        f"loss: {mean_loss:.4f} - accuracy: {accuracy:.4f}",
        file=sys.stderr,
    )


def print_report(started, times, test_accuracy, **extra):
    """One JSON line for scripts/compare-peers. `times` = (load, train, per-epoch list, eval)
    seconds; total_seconds counts from `started` (time.perf_counter())."""
    load_seconds, train_seconds, epoch_seconds, eval_seconds = times
    report = {
        **extra,
        "load_seconds": load_seconds,
        "train_seconds": train_seconds,
        "epoch_seconds": epoch_seconds,
        "eval_seconds": eval_seconds,
        "total_seconds": time.perf_counter() - started,
        "test_accuracy": test_accuracy,
    }
    print(json.dumps(report))
