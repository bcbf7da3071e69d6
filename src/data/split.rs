//! Holding out a validation set: a seeded, stratified random sample of the training set.
//!
//! Stratified means every class keeps its share: class `c` with `n_c` examples gives
//! `⌊n_c·f⌋` or `⌈n_c·f⌉` of them to validation (largest remainders get the extra one, so the
//! total is exactly `round(n·f)`). Which examples go is drawn per class from the run's seed, so
//! the same seed always holds out the same images.

use rand::seq::SliceRandom;

use crate::data::Dataset;
use crate::error::{Error, Result, Setting};
use crate::rng::{stream, Stream};

/// Which examples (dataset indices, ascending) train and which validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    /// Validation examples per class.
    pub validation_per_class: Vec<usize>,
}

/// Splits `labels` (class indices below `classes`) into training and validation indices,
/// holding out the fraction `fraction` (in (0, 1)) of every class.
pub fn stratified_split(labels: &[u8], classes: usize, fraction: f64, seed: u64) -> SplitIndices {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (index, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(index);
    }
    let quotas = class_quotas(&by_class, fraction, labels.len());

    let mut train = Vec::with_capacity(labels.len());
    let mut validation = Vec::new();
    for (class, (mut members, &quota)) in by_class.into_iter().zip(&quotas).enumerate() {
        let mut rng = stream(seed, Stream::ValidationSplit, class as u64, 0);
        members.shuffle(&mut rng);
        validation.extend_from_slice(&members[..quota]);
        train.extend_from_slice(&members[quota..]);
    }
    train.sort_unstable();
    validation.sort_unstable();
    SplitIndices {
        train,
        validation,
        validation_per_class: quotas,
    }
}

/// How many of each class to hold out: floor of the exact share, plus one for the classes with
/// the largest remainders until the total is `round(total·fraction)`.
fn class_quotas(by_class: &[Vec<usize>], fraction: f64, total: usize) -> Vec<usize> {
    let exact: Vec<f64> = by_class.iter().map(|m| m.len() as f64 * fraction).collect();
    let mut quotas: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let target = (total as f64 * fraction).round() as usize;
    let assigned: usize = quotas.iter().sum();
    let remainder = |class: usize| exact[class] - exact[class].floor();
    // Only classes with a fractional share can round up (and never past their size, as f < 1).
    let mut by_remainder: Vec<usize> = (0..quotas.len()).filter(|&c| remainder(c) > 0.0).collect();
    // Largest remainder first; ties go to the lower class index (a stable sort keeps the order).
    by_remainder.sort_by(|&a, &b| remainder(b).total_cmp(&remainder(a)));
    for class in by_remainder
        .into_iter()
        .take(target.saturating_sub(assigned))
    {
        quotas[class] += 1;
    }
    quotas
}

/// A dataset split into the part that trains and the part that validates.
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub train: Dataset,
    pub validation: Dataset,
    pub validation_per_class: Vec<usize>,
}

/// Holds out `fraction` of `dataset` for validation (see [`stratified_split`]). Fails, naming
/// the validation split, when either part would be empty.
pub fn hold_out_validation(dataset: &Dataset, fraction: f64, seed: u64) -> Result<HeldOut> {
    let split = stratified_split(&dataset.labels, dataset.num_classes(), fraction, seed);
    let empty = if split.validation.is_empty() {
        Some("no validation images; use a larger fraction")
    } else if split.train.is_empty() {
        Some("nothing to train on; use a smaller fraction")
    } else {
        None
    };
    if let Some(what) = empty {
        return Err(Error::setting(
            Setting::ValidationSplit,
            format!(
                "{fraction} of {} training images leaves {what} or more data",
                dataset.len()
            ),
        ));
    }
    Ok(HeldOut {
        train: dataset.subset(&split.train),
        validation: dataset.subset(&split.validation),
        validation_per_class: split.validation_per_class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unbalanced labels: class c appears 10 + 7·c times, in an interleaved order.
    fn labels() -> Vec<u8> {
        let mut labels = Vec::new();
        for round in 0..80 {
            for class in 0..10u8 {
                if round < 10 + 7 * class as usize {
                    labels.push(class);
                }
            }
        }
        labels
    }

    #[test]
    fn parts_are_disjoint_and_cover_everything() {
        let labels = labels();
        let split = stratified_split(&labels, 10, 0.2, 7);
        let mut all: Vec<usize> = split
            .train
            .iter()
            .chain(&split.validation)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        assert!(split
            .train
            .iter()
            .all(|i| split.validation.binary_search(i).is_err()));
    }

    #[test]
    fn every_class_keeps_its_share_within_one_example() {
        let labels = labels();
        for fraction in [0.05, 0.1, 0.2, 0.37, 0.5, 0.9] {
            let split = stratified_split(&labels, 10, fraction, 3);
            assert_eq!(
                split.validation.len(),
                (labels.len() as f64 * fraction).round() as usize
            );
            for class in 0..10u8 {
                let total = labels.iter().filter(|&&l| l == class).count();
                let held = split
                    .validation
                    .iter()
                    .filter(|&&i| labels[i] == class)
                    .count();
                assert_eq!(held, split.validation_per_class[class as usize]);
                let exact = total as f64 * fraction;
                assert!(
                    (held as f64 - exact).abs() <= 1.0,
                    "class {class}: {held} held out, exact share {exact}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let labels = labels();
        let a = stratified_split(&labels, 10, 0.25, 42);
        let b = stratified_split(&labels, 10, 0.25, 42);
        let c = stratified_split(&labels, 10, 0.25, 43);
        assert_eq!(a, b);
        assert_ne!(a.validation, c.validation);
        // Stratification fixes the counts, not the members.
        assert_eq!(a.validation_per_class, c.validation_per_class);
    }

    #[test]
    fn empty_parts_are_refused() {
        let dataset = Dataset {
            images: vec![0; 3 * 4],
            labels: vec![0, 1, 1],
            rows: 2,
            cols: 2,
            class_names: vec!["a".into(), "b".into()],
        };
        let error = hold_out_validation(&dataset, 0.1, 1).unwrap_err();
        assert!(matches!(
            error,
            Error::Setting {
                setting: Setting::ValidationSplit,
                ..
            }
        ));
        let error = error.to_string();
        assert!(error.contains("validation split") && error.contains("no validation"));
        let error = hold_out_validation(&dataset, 0.9, 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("nothing to train on"), "{error}");
        let held = hold_out_validation(&dataset, 0.34, 1).unwrap();
        assert_eq!((held.train.len(), held.validation.len()), (2, 1));
    }
}
