//! Private training: the accountant against dp-accounting, ghost clipping, noise, and the CLI.

use mnist_train::optim::privacy::SampledGaussian;

/// Reference ε from Google's dp-accounting (scripts/dp-reference regenerates the table).
const REFERENCE: &str = include_str!("data/dp_reference.tsv");

#[test]
fn accountant_agrees_with_dp_accounting_within_one_percent() {
    let mut cases = 0;
    for line in REFERENCE.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let fields: Vec<f64> = line
            .split('\t')
            .map(|f| f.parse().expect("numeric field"))
            .collect();
        let [q, sigma, steps, delta, expected] = fields[..] else {
            panic!("bad reference line {line:?}");
        };
        let epsilon = SampledGaussian {
            sampling_rate: q,
            noise_multiplier: sigma,
        }
        .epsilon(steps as u64, delta);
        let error = (epsilon - expected).abs() / expected;
        assert!(
            error < 0.01,
            "q {q} σ {sigma} steps {steps} δ {delta}: ours {epsilon}, dp-accounting {expected}"
        );
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} reference cases");
}
