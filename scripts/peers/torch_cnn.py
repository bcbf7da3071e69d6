#!/usr/bin/env python3
"""The same network and training job as `mnist-train --arch cnn`, in PyTorch on the CPU.

nn.Sequential(Conv2d(1,32,3), ReLU, MaxPool2d(2), Conv2d(32,64,3), ReLU, MaxPool2d(2), Flatten,
Dropout(0.5), Linear(1600,10)) with Keras' initialization (Glorot-uniform weights, zero biases);
softmax cross-entropy; Adam (beta1 0.9, beta2 0.999, eps 1e-7) at 0.002 along a half cosine to 0
per step (our CNN recipe); batch 64, reshuffled every epoch; evaluation on the 10,000 test images
in batches of 1,000. float32, NCHW. Reads the same gzip IDX files from data/.

Prints one JSON line with the phase times and the test accuracy, for scripts/compare-peers.
"""

import math
import os
import time

import numpy as np
from peer_job import job_arguments, load_split, print_epoch, print_report
import torch
from torch import nn


def load(data_dir, stem):
    images, labels = load_split(data_dir, stem)
    # [N, 28, 28] u8 -> [N, 1, 28, 28] f32 in [0, 1]
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    return x.contiguous(), torch.from_numpy(labels)


def network():
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(1600, 10),
    )
    for layer in model:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def main():
    parser = job_arguments(__doc__, epochs=8, batch_size=64)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = load(args.data_dir, "train")
    x_test, y_test = load(args.data_dir, "t10k")
    load_seconds = time.perf_counter() - started

    model = network()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    n = len(x_train)
    steps_per_epoch = math.ceil(n / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    step = 0

    train_started = time.perf_counter()
    epoch_seconds = []
    for epoch in range(args.epochs):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, args.batch_size):
            idx = order[start : start + args.batch_size]
            x, y = x_train[idx], y_train[idx]
            for group in optimizer.param_groups:
                group["lr"] = args.learning_rate * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(dim=1) == y).sum())
        epoch_seconds.append(time.perf_counter() - epoch_started)
        print_epoch(epoch, args.epochs, epoch_seconds[-1], loss_sum / n, correct / n)
    train_seconds = time.perf_counter() - train_started

    eval_started = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x_test), 1000):
            logits = model(x_test[start : start + 1000])
            correct += int((logits.argmax(dim=1) == y_test[start : start + 1000]).sum())
    eval_seconds = time.perf_counter() - eval_started

    times = (load_seconds, train_seconds, epoch_seconds, eval_seconds)
    versions = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    print_report(started, times, correct / len(x_test), **versions)


if __name__ == "__main__":
    main()
