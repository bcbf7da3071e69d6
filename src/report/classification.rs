//! What a confusion matrix says class by class: precision, recall, F1 and support (the figures
//! scikit-learn's `classification_report` prints), and which classes are mistaken for which.

use serde::Serialize;

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub index: usize,
    pub class: String,
    /// Of the examples predicted as this class, the fraction that are (0 when none was predicted).
    pub precision: f64,
    /// Of the examples of this class, the fraction predicted as it (0 when there are none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Examples of this class.
    pub support: u64,
}

/// Averages over classes: `macro` weighs each class equally, `weighted` by support.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AverageMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    pub per_class: Vec<ClassMetrics>,
    pub macro_avg: AverageMetrics,
    pub weighted_avg: AverageMetrics,
}

/// One off-diagonal cell of the confusion matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfusedPair {
    pub true_index: usize,
    pub predicted_index: usize,
    #[serde(rename = "true")]
    pub true_class: String,
    #[serde(rename = "predicted")]
    pub predicted_class: String,
    pub count: u64,
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

impl ClassificationReport {
    /// From `confusion[true][predicted]`.
    pub fn from_confusion(confusion: &[Vec<u64>], class_names: &[String]) -> Self {
        let classes = confusion.len();
        let per_class: Vec<ClassMetrics> = (0..classes)
            .map(|class| {
                let true_positives = confusion[class][class];
                let support: u64 = confusion[class].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[class]).sum();
                let precision = ratio(true_positives, predicted);
                let recall = ratio(true_positives, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    index: class,
                    class: class_names
                        .get(class)
                        .cloned()
                        .unwrap_or_else(|| class.to_string()),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let total: u64 = per_class.iter().map(|m| m.support).sum();
        let average = |weight: &dyn Fn(&ClassMetrics) -> f64, denominator: f64| AverageMetrics {
            precision: per_class
                .iter()
                .map(|m| m.precision * weight(m))
                .sum::<f64>()
                / denominator,
            recall: per_class.iter().map(|m| m.recall * weight(m)).sum::<f64>() / denominator,
            f1: per_class.iter().map(|m| m.f1 * weight(m)).sum::<f64>() / denominator,
        };
        let macro_avg = average(&|_| 1.0, classes.max(1) as f64);
        let weighted_avg = average(&|m| m.support as f64, total.max(1) as f64);
        ClassificationReport {
            per_class,
            macro_avg,
            weighted_avg,
        }
    }

    /// A fixed-width table like scikit-learn's.
    pub fn format_table(&self) -> String {
        let name_width = self
            .per_class
            .iter()
            .map(|m| m.class.chars().count())
            .max()
            .unwrap_or(5)
            .max("weighted avg".len());
        let mut out = format!(
            "{:>name_width$}  {:>9}  {:>9}  {:>9}  {:>7}\n",
            "class", "precision", "recall", "f1", "support"
        );
        for m in &self.per_class {
            out.push_str(&format!(
                "{:>name_width$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}\n",
                m.class, m.precision, m.recall, m.f1, m.support
            ));
        }
        let total: u64 = self.per_class.iter().map(|m| m.support).sum();
        for (label, avg) in [
            ("macro avg", &self.macro_avg),
            ("weighted avg", &self.weighted_avg),
        ] {
            out.push_str(&format!(
                "{label:>name_width$}  {:>9.4}  {:>9.4}  {:>9.4}  {total:>7}\n",
                avg.precision, avg.recall, avg.f1
            ));
        }
        out
    }
}

/// The `count` largest off-diagonal cells, largest first (ties: by true, then predicted class).
pub fn most_confused_pairs(
    confusion: &[Vec<u64>],
    class_names: &[String],
    count: usize,
) -> Vec<ConfusedPair> {
    let name = |index: usize| {
        class_names
            .get(index)
            .cloned()
            .unwrap_or_else(|| index.to_string())
    };
    let mut pairs: Vec<ConfusedPair> = Vec::new();
    for (true_index, row) in confusion.iter().enumerate() {
        for (predicted_index, &cell) in row.iter().enumerate() {
            if true_index != predicted_index && cell > 0 {
                pairs.push(ConfusedPair {
                    true_index,
                    predicted_index,
                    true_class: name(true_index),
                    predicted_class: name(predicted_index),
                    count: cell,
                });
            }
        }
    }
    pairs.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.true_index.cmp(&b.true_index))
            .then(a.predicted_index.cmp(&b.predicted_index))
    });
    pairs.truncate(count);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // true 0: 8 right, 2 as class 1; true 1: 1 as class 0, 4 right, 0 as class 2; class 2 never occurs.
        let confusion = vec![vec![8, 2, 0], vec![1, 4, 0], vec![0, 0, 0]];
        let report = ClassificationReport::from_confusion(&confusion, &names(3));
        let c0 = &report.per_class[0];
        assert!((c0.precision - 8.0 / 9.0).abs() < 1e-12);
        assert!((c0.recall - 0.8).abs() < 1e-12);
        let f1 = 2.0 * (8.0 / 9.0) * 0.8 / (8.0 / 9.0 + 0.8);
        assert!((c0.f1 - f1).abs() < 1e-12);
        assert_eq!(c0.support, 10);
        let c1 = &report.per_class[1];
        assert!((c1.precision - 4.0 / 6.0).abs() < 1e-12);
        assert!((c1.recall - 0.8).abs() < 1e-12);
        let c2 = &report.per_class[2];
        assert_eq!(
            (c2.precision, c2.recall, c2.f1, c2.support),
            (0.0, 0.0, 0.0, 0)
        );
        let macro_recall = (0.8 + 0.8 + 0.0) / 3.0;
        assert!((report.macro_avg.recall - macro_recall).abs() < 1e-12);
        // Weighted recall is plain accuracy: 12 of 15.
        assert!((report.weighted_avg.recall - 12.0 / 15.0).abs() < 1e-12);
        assert!(report.format_table().contains("weighted avg"));
    }

    #[test]
    fn most_confused_pairs_are_sorted_and_skip_the_diagonal() {
        let confusion = vec![vec![50, 3, 7], vec![3, 40, 0], vec![9, 1, 60]];
        let pairs = most_confused_pairs(&confusion, &names(3), 3);
        let cells: Vec<(usize, usize, u64)> = pairs
            .iter()
            .map(|p| (p.true_index, p.predicted_index, p.count))
            .collect();
        assert_eq!(cells, [(2, 0, 9), (0, 2, 7), (0, 1, 3)]);
        assert_eq!(pairs[0].true_class, "c2");
        assert_eq!(pairs[0].predicted_class, "c0");
    }
}
