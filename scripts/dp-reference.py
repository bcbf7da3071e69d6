#!/usr/bin/env python3
"""Reference ε values for the privacy accountant (src/optim/privacy/accountant.rs), computed by
Google's dp-accounting package: RdpAccountant, PoissonSampledDpEvent(q, GaussianDpEvent(σ))
composed `steps` times, get_epsilon(δ). Writes tests/data/dp_reference.tsv, which the Rust test
`privacy::accountant_agrees_with_dp_accounting` compares against (within 1 % of ε).

Run it through its wrapper, which makes a git-ignored virtualenv and installs dp-accounting:
    scripts/dp-reference            # regenerate the table
    scripts/dp-reference --check    # regenerate into a temporary file and diff with the committed one
"""
import sys

import dp_accounting
from importlib.metadata import version

DP_ACCOUNTING_VERSION = version("dp-accounting")

# (sampling rate q, noise multiplier σ, steps, δ): MNIST-sized runs (N = 60,000) from tiny to
# generous budgets, plus edge cases (q = 1, a single step, large σ, small δ).
CASES = [
    (256 / 60000, 1.0, 30 * 235, 1e-5),
    (256 / 60000, 1.0, 10 * 235, 1e-5),
    (1024 / 60000, 2.0, 40 * 59, 1e-5),
    (256 / 60000, 0.62, 30 * 235, 1e-5),
    (600 / 60000, 4.0, 10000, 1e-5),
    (600 / 60000, 2.0, 5000, 1e-5),
    (0.01, 1.1, 1000, 1e-5),
    (0.001, 0.8, 100000, 1e-6),
    (0.05, 1.5, 2000, 1e-5),
    (0.1, 3.0, 500, 1e-5),
    (1.0, 5.0, 10, 1e-5),
    (1.0, 10.0, 1, 1e-5),
    (0.02, 0.7, 300, 1e-3),
    (4096 / 60000, 5.0, 60 * 15, 1e-5),
]


def epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    accountant = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(event, steps)
    return accountant.get_epsilon(delta)


def main() -> None:
    out = open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout
    out.write(f"# dp-accounting {DP_ACCOUNTING_VERSION}"
              " RdpAccountant (default orders), PoissonSampledDpEvent(q, GaussianDpEvent(sigma))\n")
    out.write("q\tsigma\tsteps\tdelta\tepsilon\n")
    for q, sigma, steps, delta in CASES:
        out.write(f"{q!r}\t{sigma!r}\t{steps}\t{delta!r}\t{float(epsilon(q, sigma, steps, delta))!r}\n")


if __name__ == "__main__":
    main()
