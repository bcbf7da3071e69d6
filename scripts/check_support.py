"""Shared by the scripts/check-*.py interoperability checks (standard library only).

Each check runs in its own virtualenv, .venv-<name> at the repository root (git-ignored; or
under $CHECK_VENV_DIR): `ensure_venv` creates it, installs the packages from PyPI and re-runs the
script with the virtualenv's Python. The mnist-train binary is the release build (built if missing,
or $MNIST_TRAIN_BIN); a check trains its own small model unless given --model.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ensure_venv(name: str, packages: list[str], modules: list[str]) -> None:
    """Re-executes the calling script inside .venv-<name>, creating it and installing `packages`
    (checked by importing `modules`) on first use. Prints how long the install took."""
    base = Path(os.environ.get("CHECK_VENV_DIR", REPO))
    venv = (base / f".venv-{name}").resolve()
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv:
        return
    started = time.monotonic()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = "import " + ", ".join(modules)
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        print(f"[{name}] installing {' '.join(packages)} into {venv} ...", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run(pip + packages, check=True)
        print(f"[{name}] virtualenv ready in {time.monotonic() - started:.0f} s", flush=True)
    os.execv(str(python), [str(python), *sys.argv])


def binary() -> str:
    """The mnist-train release binary ($MNIST_TRAIN_BIN, else `cargo build --release`)."""
    if "MNIST_TRAIN_BIN" in os.environ:
        return os.environ["MNIST_TRAIN_BIN"]
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "release" / "mnist-train")


def run(*args: str, cwd: Path | None = None) -> str:
    """Runs the binary and returns its stdout; its stderr is shown only if it fails."""
    result = subprocess.run([binary_path(), *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"mnist-train {' '.join(args)[:200]} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


_binary = None


def binary_path() -> str:
    global _binary
    if _binary is None:
        _binary = binary()
    return _binary


def json_lines(text: str, kind: str) -> list[dict]:
    """The JSON lines of `text` whose "type" is `kind`."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("type") == kind]


def train_model(workdir: Path, *extra: str) -> Path:
    """Trains a small model (1 epoch on MNIST, or as `extra` says) into workdir/model.bin."""
    model = workdir / "model.bin"
    run("train", "--data-dir", str(REPO / "data"), "--epochs", "1", "--quiet", "-o", str(model), *extra)
    return model


@contextmanager
def model_in_workdir(doc: str):
    """Parses a check's command line (`--model MODEL`, described by the first line of `doc`) and
    yields (model, workdir): a temporary folder for the check's files, and the given model or
    one trained there."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        yield args.model or train_model(workdir), workdir


def read_idx(path: Path):
    """An IDX file (gzip or raw) as a NumPy uint8 array."""
    import numpy as np

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_set(data_dir: Path = REPO / "data"):
    """(images [N, 28, 28] uint8, labels [N] uint8) of the MNIST test split."""
    def find(name: str) -> Path:
        for candidate in (data_dir / f"{name}.gz", data_dir / name):
            if candidate.exists():
                return candidate
        sys.exit(f"{data_dir}: missing {name}[.gz]")

    return read_idx(find("t10k-images-idx3-ubyte")), read_idx(find("t10k-labels-idx1-ubyte"))


def our_predictions(model: Path, count: int):
    """mnist-train's class probabilities [count, classes] for the first `count` test images, via
    `predict --json`, and its test accuracy via `eval --json`."""
    import numpy as np

    indices = ",".join(str(i) for i in range(count))
    lines = json_lines(
        run("predict", "--model", str(model), "--data-dir", str(REPO / "data"), "--index", indices, "--top", "1", "--json"),
        "prediction",
    )
    probabilities = np.array([line["probabilities"] for line in lines], dtype=np.float64)
    predicted = np.array([line["predicted_index"] for line in lines])
    evaluation = json_lines(run("eval", "--model", str(model), "--data-dir", str(REPO / "data"), "--json"), "evaluation")[0]
    return probabilities, predicted, evaluation["accuracy"]


def compare_predictions(name: str, theirs, ours, our_predicted, labels, our_accuracy) -> None:
    """Asserts the same class for every image, probabilities within 1e-5 and the same accuracy;
    prints the figures."""
    import numpy as np

    their_predicted = theirs.argmax(axis=1)
    worst = float(np.abs(theirs - ours).max())
    same_class = int((their_predicted == our_predicted).sum())
    their_accuracy = float((their_predicted == labels).mean())
    print(f"{name}: {len(labels)} images, same predicted class for {same_class}/{len(labels)}")
    print(f"{name}: largest probability difference {worst:.3g} (limit 1e-5)")
    print(f"{name}: accuracy {their_accuracy:.4f}, mnist-train eval {our_accuracy:.4f}")
    failures = []
    if same_class != len(labels):
        failures.append("predicted classes differ")
    if worst > 1e-5:
        failures.append("probabilities differ by more than 1e-5")
    if abs(their_accuracy - our_accuracy) > 1e-12:
        failures.append("accuracies differ")
    if failures:
        sys.exit(f"{name}: FAILED: {', '.join(failures)}")
    print(f"{name}: OK")
