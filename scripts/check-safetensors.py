#!/usr/bin/env python3
"""Independent check of `mnist-train export`: load the safetensors file with the reference Python
library, run the network the way PyTorch's nn.Sequential(Flatten, Linear, ReLU, Dropout, Linear)
does in eval mode (x @ W.T + b), and print the test accuracy, which must equal `mnist-train eval`'s.
If PyTorch is installed, also load the tensors into that nn.Sequential with load_state_dict.

    python3 -m venv .venv && .venv/bin/pip install numpy safetensors   # (torch optional)
    mnist-train export --model weights.bin --format safetensors weights.safetensors
    .venv/bin/python scripts/check-safetensors.py weights.safetensors [DATA_DIR]
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_support as support  # noqa: E402


def main() -> None:
    model_path = Path(sys.argv[1])
    with safe_open(str(model_path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
    tensors = load_file(str(model_path))
    dataset = metadata.get("dataset", "mnist")
    default_dir = "data" if dataset == "mnist" else "/usr/share/datasets/fashion-mnist"
    data_dir = Path(sys.argv[2] if len(sys.argv) > 2 else default_dir)
    images, labels = support.test_set(data_dir)
    images = images.reshape(-1, 784)

    indices = sorted(int(key.split(".")[0]) for key in tensors if key.endswith(".weight"))
    x = images.astype(np.float32) / 255.0
    for position, index in enumerate(indices):
        x = x @ tensors[f"{index}.weight"].T + tensors[f"{index}.bias"]
        if position + 1 < len(indices):
            x = np.maximum(x, 0.0)
    accuracy = float((x.argmax(axis=1) == labels).mean())
    print(f"keys: {sorted(tensors)}")
    print(f"metadata: dataset={dataset}, classes={json.loads(metadata.get('class_names', '[]'))}")
    print(f"numpy forward pass (x @ W.T + b): test accuracy {accuracy:.4f}")

    try:
        import torch
        from torch import nn
    except ImportError:
        print("PyTorch not installed: load_state_dict check skipped")
        return
    module = eval(metadata["pytorch_module"], {"nn": nn})
    module.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(images.astype(np.float32) / 255.0))
    torch_accuracy = float((logits.argmax(dim=1).numpy() == labels).mean())
    print(f"PyTorch {module}: load_state_dict ok, test accuracy {torch_accuracy:.4f}")


if __name__ == "__main__":
    main()
