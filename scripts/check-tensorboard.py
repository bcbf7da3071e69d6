#!/usr/bin/env python3
"""Proves `--tensorboard DIR` with the real reader: TensorBoard's EventAccumulator (which needs no
TensorFlow) loads the run folder, and every scalar must equal the `--json` epoch line of the same
run (as float32, TensorBoard's simple_value) — including a run resumed from a checkpoint that
redoes epochs an earlier run had already logged, which must leave each step once.

    scripts/check-tensorboard.py

Runs in its own virtualenv (.venv-tensorboard, created on first use: tensorboard, numpy).
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_support as support  # noqa: E402

support.ensure_venv("tensorboard", ["tensorboard", "numpy"], ["tensorboard", "numpy"])

import numpy as np  # noqa: E402
import tensorboard  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

EPOCH_TAGS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epsilon"]


def train(workdir: Path, *extra: str) -> list[dict]:
    common = ["train", "--data-dir", str(support.REPO / "data"), "--limit", "6000", "--validation-split", "0.1"]
    common += ["--tensorboard", str(workdir / "tb"), "--tensorboard-every", "50", "--json", "--quiet"]
    common += ["--keep-checkpoints", "5", "-o", str(workdir / "model.bin")]
    return support.json_lines(support.run(*common, *extra), "epoch")


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        first = train(workdir, "--epochs", "3", "--checkpoint-dir", str(workdir / "ck"))
        # Resume after epoch 1: epochs 2 and 3 are trained (and logged) again.
        resumed = train(workdir, "--epochs", "3", "--resume", str(workdir / "ck" / "ckpt-e0001-s0000000.ckpt"))
        expected = {line["epoch"]: line for line in first}
        expected.update({line["epoch"]: line for line in resumed})

        files = sorted(p.name for p in (workdir / "tb").iterdir())
        accumulator = event_accumulator.EventAccumulator(str(workdir / "tb"), size_guidance={event_accumulator.SCALARS: 0})
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        print(f"tensorboard {tensorboard.__version__}: EventAccumulator read {len(files)} event files, scalar tags {sorted(tags)}")
        failures = []
        compared = 0
        for tag in EPOCH_TAGS:
            wanted = {epoch: line[tag] for epoch, line in expected.items() if line.get(tag) is not None}
            if not wanted:
                if tag in tags:
                    failures.append(f"{tag} logged but not in the JSON lines")
                continue
            events = accumulator.Scalars(tag)
            steps = [event.step for event in events]
            if steps != sorted(set(steps)):
                failures.append(f"{tag}: steps {steps} repeat or are out of order")
            got = {event.step: event.value for event in events}
            if sorted(got) != sorted(wanted):
                failures.append(f"{tag}: steps {sorted(got)}, JSON epochs {sorted(wanted)}")
            for epoch, value in wanted.items():
                compared += 1
                if got.get(epoch) != float(np.float32(value)):
                    failures.append(f"{tag} epoch {epoch}: TensorBoard {got.get(epoch)}, JSON {value}")
        running = [event.step for event in accumulator.Scalars("running_loss")]
        if running != sorted(set(running)):
            failures.append(f"running_loss steps repeat: {running}")
        wall_times = [event.wall_time for tag in tags for event in accumulator.Scalars(tag)]
        print(f"compared {compared} epoch scalars over epochs {sorted(expected)} with the --json epoch lines "
              f"(first run {len(first)} epochs, resumed run {len(resumed)}); running_loss at {len(running)} "
              f"distinct steps {running[0]}..{running[-1]}; wall times {min(wall_times):.0f}..{max(wall_times):.0f}")
        if failures:
            sys.exit("tensorboard: FAILED:\n  " + "\n  ".join(failures))
        print("tensorboard: OK")


if __name__ == "__main__":
    main()
