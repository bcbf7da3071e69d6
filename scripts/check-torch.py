#!/usr/bin/env python3
"""Proves the safetensors export with PyTorch itself: builds the nn.Sequential the README
documents (Flatten, then Linear, ReLU, Dropout per hidden layer, then Linear), loads the exported
file with load_state_dict(strict=True), and runs it in eval mode on all 10,000 MNIST test images:
every image must get the class `mnist-train predict` gives, probabilities within 1e-5, and the
accuracy `mnist-train eval` reports.

    scripts/check-torch.py [--model MODEL]    # without --model: trains a 1-epoch model first

Runs in its own virtualenv (.venv-torch, created on first use: torch from PyPI, safetensors,
numpy). PyPI's Linux torch wheel pulls the CUDA libraries (about 5 GB); the check runs on the CPU.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_support as support  # noqa: E402

support.ensure_venv("torch", ["torch", "safetensors", "numpy"], ["torch", "safetensors", "numpy"])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402


def documented_sequential(widths: list[int], dropout: float) -> nn.Sequential:
    """The README's module: nn.Flatten(), then per hidden layer nn.Linear, nn.ReLU, nn.Dropout,
    then the output nn.Linear."""
    modules: list[nn.Module] = [nn.Flatten()]
    for index, (inputs, outputs) in enumerate(zip(widths, widths[1:])):
        modules.append(nn.Linear(inputs, outputs))
        if index + 2 < len(widths):
            modules += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*modules)


def main() -> None:
    with support.model_in_workdir(__doc__) as (model, workdir):
        exported = workdir / "model.safetensors"
        support.run("export", "--model", str(model), "--format", "safetensors", str(exported))
        summary = support.json_lines(support.run("summary", "--model", str(model), "--json"), "model_summary")[0]
        architecture = summary["architecture"]
        widths = [architecture["inputs"], *architecture["hidden"], architecture["outputs"]]

        module = documented_sequential(widths, architecture["dropout"])
        state = load_file(str(exported))
        result = module.load_state_dict(state, strict=True)
        print(f"torch {torch.__version__} (CPU): {module}")
        print(f"load_state_dict(strict=True): {result}; keys {sorted(state)}")
        module.eval()

        images, labels = support.test_set()
        with torch.no_grad():
            pixels = torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
            probabilities = torch.softmax(module(pixels), dim=1).numpy()
        ours, our_predicted, our_accuracy = support.our_predictions(model, len(labels))
        support.compare_predictions("torch", probabilities.astype(np.float64), ours, our_predicted, labels, our_accuracy)


if __name__ == "__main__":
    main()
