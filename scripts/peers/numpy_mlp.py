#!/usr/bin/env python3
"""The same network and training job as `mnist-train --epochs 5`, from scratch in NumPy.

784 -> Dense(128, ReLU) -> Dropout(0.2) -> Dense(10) -> softmax cross-entropy; Glorot-uniform
weights and zero biases; Adam (lr 0.001, beta1 0.9, beta2 0.999, eps 1e-7, Keras' formulation);
batch 32, reshuffled every epoch; 5 epochs; evaluation on the 10,000 test images in batches of
1,000. float32 throughout. Reads the same gzip IDX files from data/.

Prints one JSON line with the phase times and the test accuracy, for scripts/compare-peers.
"""

import os
import time

import numpy as np
from peer_job import job_arguments, load_split, print_epoch, print_report


def load(data_dir, stem):
    images, labels = load_split(data_dir, stem)
    return images.reshape(len(images), -1), labels


def glorot(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def main():
    parser = job_arguments(__doc__, epochs=5, batch_size=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    x_train_u8, y_train = load(args.data_dir, "train")
    x_test_u8, y_test = load(args.data_dir, "t10k")
    load_seconds = time.perf_counter() - started

    rng = np.random.default_rng(args.seed)
    w1, b1 = glorot(rng, 784, 128), np.zeros(128, np.float32)
    w2, b2 = glorot(rng, 128, 10), np.zeros(10, np.float32)
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, beta1, beta2, eps, rate = 0.001, 0.9, 0.999, 1e-7, 0.2
    keep_scale = np.float32(1.0 / (1.0 - rate))
    step = 0

    train_started = time.perf_counter()
    n = len(x_train_u8)
    epoch_seconds = []
    for epoch in range(args.epochs):
        epoch_started = time.perf_counter()
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, args.batch_size):
            idx = order[start : start + args.batch_size]
            x = x_train_u8[idx].astype(np.float32) * np.float32(1.0 / 255.0)
            y = y_train[idx]
            rows = len(idx)
            # Forward: x: [b, 784] -> h: [b, 128] -> logits: [b, 10]
            h = x @ w1 + b1
            np.maximum(h, 0, out=h)
            mask = (rng.random(h.shape, dtype=np.float32) >= rate) * keep_scale
            h *= mask
            logits = h @ w2 + b2
            logits -= logits.max(axis=1, keepdims=True)
            exp = np.exp(logits)
            probs = exp / exp.sum(axis=1, keepdims=True)
            loss_sum += float(-np.log(probs[np.arange(rows), y] + 1e-12).sum())
            correct += int((probs.argmax(axis=1) == y).sum())
            # Backward
            grad_logits = probs
            grad_logits[np.arange(rows), y] -= 1.0
            grad_logits /= rows
            grad_w2 = h.T @ grad_logits
            grad_b2 = grad_logits.sum(axis=0)
            grad_h = grad_logits @ w2.T
            grad_h *= mask
            grad_h *= h > 0
            grad_w1 = x.T @ grad_h
            grad_b1 = grad_h.sum(axis=0)
            # Adam (bias correction folded into the step size, as Keras does)
            step += 1
            alpha = lr * np.sqrt(1 - beta2**step) / (1 - beta1**step)
            for p, g, m_i, v_i in zip(params, (grad_w1, grad_b1, grad_w2, grad_b2), m, v):
                m_i += (g - m_i) * (1 - beta1)
                v_i += (g * g - v_i) * (1 - beta2)
                p -= np.float32(alpha) * m_i / (np.sqrt(v_i) + eps)
        epoch_seconds.append(time.perf_counter() - epoch_started)
        print_epoch(epoch, args.epochs, epoch_seconds[-1], loss_sum / n, correct / n)
    train_seconds = time.perf_counter() - train_started

    eval_started = time.perf_counter()
    correct = 0
    for start in range(0, len(x_test_u8), 1000):
        x = x_test_u8[start : start + 1000].astype(np.float32) * np.float32(1.0 / 255.0)
        h = np.maximum(x @ w1 + b1, 0)
        correct += int(((h @ w2 + b2).argmax(axis=1) == y_test[start : start + 1000]).sum())
    eval_seconds = time.perf_counter() - eval_started

    times = (load_seconds, train_seconds, epoch_seconds, eval_seconds)
    print_report(started, times, correct / len(x_test_u8))


if __name__ == "__main__":
    main()
