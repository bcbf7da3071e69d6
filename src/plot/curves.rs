//! Loss and accuracy per epoch, side by side: training as solid lines, validation (when the run
//! had a validation split) dashed. Several runs can share one figure (one colour per run), which is
//! what `compare` needs.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::{drawing_error, titled_page, Figure, FONT};
use crate::train::EpochRecord;

/// One run's per-epoch history, with the name shown in the legend.
#[derive(Debug, Clone)]
pub struct RunCurves {
    pub name: String,
    pub history: Vec<EpochRecord>,
}

/// The figure: a loss panel and an accuracy panel.
#[derive(Debug, Clone)]
pub struct TrainingCurves {
    pub title: String,
    pub runs: Vec<RunCurves>,
}

/// Distinct, colour-blind-friendly line colours (Okabe–Ito).
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

#[derive(Clone, Copy)]
enum Metric {
    Loss,
    Accuracy,
}

impl Metric {
    fn train(self, record: &EpochRecord) -> Option<f64> {
        Some(match self {
            Metric::Loss => record.loss,
            Metric::Accuracy => record.accuracy,
        })
    }

    fn validation(self, record: &EpochRecord) -> Option<f64> {
        match self {
            Metric::Loss => record.val_loss,
            Metric::Accuracy => record.val_accuracy,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::Accuracy => "accuracy",
        }
    }
}

impl TrainingCurves {
    /// A figure of one run: its lines are labelled "train" and "validation".
    pub fn single(title: impl Into<String>, history: &[EpochRecord]) -> Self {
        TrainingCurves {
            title: title.into(),
            runs: vec![RunCurves {
                name: String::new(),
                history: history.to_vec(),
            }],
        }
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        metric: Metric,
    ) -> Result<(), String> {
        let epochs = self
            .runs
            .iter()
            .flat_map(|run| run.history.iter().map(|r| r.epoch))
            .max()
            .unwrap_or(1)
            .max(1);
        let values: Vec<f64> = self
            .runs
            .iter()
            .flat_map(|run| run.history.iter())
            .flat_map(|r| [metric.train(r), metric.validation(r)])
            .flatten()
            .filter(|v| v.is_finite())
            .collect();
        let (mut low, mut high) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if !low.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        let pad = ((high - low) * 0.08).max(1e-3);
        let (low, high) = (low - pad, high + pad);
        let (low, high) = match metric {
            Metric::Accuracy => (low.max(0.0), high.min(1.0)),
            Metric::Loss => (low.max(0.0), high),
        };
        let x_range = if epochs == 1 {
            0.5..1.5
        } else {
            1.0..epochs as f64
        };
        let mut chart = ChartBuilder::on(area)
            .caption(metric.name(), (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, low..high)
            .map_err(drawing_error)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(metric.name())
            .x_labels(epochs.min(12) + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.3}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(drawing_error)?;
        let single = self.runs.len() == 1;
        for (index, run) in self.runs.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            let train: Vec<(f64, f64)> = run
                .history
                .iter()
                .filter_map(|r| metric.train(r).map(|v| (r.epoch as f64, v)))
                .collect();
            let train_label = if single {
                "train".to_string()
            } else {
                run.name.clone()
            };
            draw_line(&mut chart, train, color, Line::Solid, train_label)?;
            let validation: Vec<(f64, f64)> = run
                .history
                .iter()
                .filter_map(|r| metric.validation(r).map(|v| (r.epoch as f64, v)))
                .collect();
            if !validation.is_empty() {
                // The validation line of a single run gets its own colour; in a comparison it keeps
                // its run's colour and is told apart by the dashes.
                let val_color = if single { PALETTE[1] } else { color };
                let val_label = if single {
                    "validation".to_string()
                } else {
                    format!("{} (val)", run.name)
                };
                draw_line(&mut chart, validation, val_color, Line::Dashed, val_label)?;
            }
        }
        chart
            .configure_series_labels()
            .position(match metric {
                Metric::Loss => SeriesLabelPosition::UpperRight,
                Metric::Accuracy => SeriesLabelPosition::LowerRight,
            })
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()
            .map_err(drawing_error)?;
        Ok(())
    }
}

/// Training lines are solid with filled dots, validation lines dashed with hollow dots.
#[derive(Clone, Copy, PartialEq)]
enum Line {
    Solid,
    Dashed,
}

/// One line of a panel with a dot per epoch, and its legend entry.
fn draw_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    line: Line,
    label: String,
) -> Result<(), String> {
    let style = color.stroke_width(2);
    let (series, legend_length, dot) = match line {
        Line::Solid => (
            chart.draw_series(LineSeries::new(points.clone(), style)),
            20,
            color.filled(),
        ),
        Line::Dashed => (
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style)),
            8,
            style,
        ),
    };
    series
        .map_err(drawing_error)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + legend_length, y)], style));
    chart
        .draw_series(points.iter().map(|&point| Circle::new(point, 3, dot)))
        .map_err(drawing_error)?;
    Ok(())
}

impl Figure for TrainingCurves {
    fn size(&self) -> (u32, u32) {
        (1200, 480)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let area = titled_page(area, &self.title, 20)?;
        let (width, _) = area.dim_in_pixel();
        let (left, right) = area.split_horizontally(width / 2);
        self.draw_panel(&left, Metric::Loss)?;
        self.draw_panel(&right, Metric::Accuracy)?;
        Ok(())
    }
}
