#!/usr/bin/env python3
"""Proves `mnist-train export --format onnx` with the real runtime: onnx's checker validates the
file (with shape inference), onnxruntime runs it on all 10,000 MNIST test images, and every image
must get the class `mnist-train predict` gives, probabilities within 1e-5, and the accuracy
`mnist-train eval` reports.

    scripts/check-onnx.py [--model MODEL]    # without --model: trains a 1-epoch model first

Runs in its own virtualenv (.venv-onnx, created on first use: onnxruntime, onnx, numpy).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_support as support  # noqa: E402

support.ensure_venv("onnx", ["onnxruntime", "onnx", "numpy"], ["onnxruntime", "onnx", "numpy"])

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402


def main() -> None:
    with support.model_in_workdir(__doc__) as (model, workdir):
        exported = workdir / "model.onnx"
        print(support.run("export", "--model", str(model), "--format", "onnx", str(exported)).strip())

        proto = onnx.load(str(exported))
        onnx.checker.check_model(proto, full_check=True)
        opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        ops = [node.op_type for node in proto.graph.node]
        metadata = {p.key: p.value for p in proto.metadata_props}
        print(f"onnx {onnx.__version__}: check_model(full_check=True) ok; IR {proto.ir_version}, opset {opset}, nodes {ops}")
        print(f"metadata_props: {sorted(metadata)} (dataset={metadata.get('dataset')})")
        if opset < 13:
            sys.exit(f"opset {opset} < 13")

        images, labels = support.test_set()
        session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
        inputs = session.get_inputs()[0]
        print(f"onnxruntime {onnxruntime.__version__}: input {inputs.name} {inputs.shape}, outputs {[o.name for o in session.get_outputs()]}")
        pixels = images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
        probabilities, logits = session.run(None, {inputs.name: pixels})
        ours, our_predicted, our_accuracy = support.our_predictions(model, len(labels))
        support.compare_predictions("onnxruntime", probabilities.astype(np.float64), ours, our_predicted, labels, our_accuracy)
        if not (logits.argmax(axis=1) == probabilities.argmax(axis=1)).all():
            sys.exit("logits and probabilities disagree")


if __name__ == "__main__":
    main()
