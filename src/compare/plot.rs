//! The comparison's picture, one SVG: training loss (left) and test error (right) per epoch,
//! one line per variant, both on log scales so that the slow variants (far from the optimum)
//! and the fast ones (a few percent apart near it) are readable in the same chart; one legend
//! below both.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::compare::{Variant, VariantResult};
use crate::optim::OptimizerConfig;
use crate::plot::curves::PALETTE;
use crate::plot::{drawing_error, titled_page, Figure, FONT};
use crate::train::BatchSize;

const LEGEND_HEIGHT: u32 = 44;

/// The comparison figure; save it with [`crate::plot::save_figure`] (SVG or PNG).
pub struct ComparisonFigure<'a> {
    pub title: String,
    pub results: &'a [VariantResult],
}

/// How a variant's line looks: the colour says the batch regime (full batch, one example,
/// mini-batch; adaptive optimizers black), dashes say momentum — so each momentum variant is the
/// dashed twin of its plain counterpart.
#[derive(Debug, Clone, Copy)]
struct LineLook {
    color: RGBColor,
    dashed: bool,
}

fn look(variant: &Variant) -> LineLook {
    let (blue, vermillion, green, black) = (PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[6]);
    let (color, dashed) = match variant.optimizer {
        OptimizerConfig::Adam { .. } | OptimizerConfig::Rmsprop { .. } => (black, false),
        optimizer => {
            let color = match variant.batch_size {
                BatchSize::Full => blue,
                BatchSize::Examples(1) => vermillion,
                BatchSize::Examples(_) => green,
            };
            (color, !matches!(optimizer, OptimizerConfig::Sgd))
        }
    };
    LineLook { color, dashed }
}

/// One panel: a log-scale y axis over epochs 1..=epochs, a line with dots per series.
struct Panel<'a> {
    caption: &'a str,
    y_label: &'a str,
    /// Per variant: (epoch, value) points, all positive.
    series: Vec<Vec<(f64, f64)>>,
    y_format: &'a dyn Fn(&f64) -> String,
}

impl Figure for ComparisonFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1400, 620)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let root = titled_page(area, &self.title, 22)?;
        let (width, height) = root.dim_in_pixel();
        let (charts, legend) = root.split_vertically(height.saturating_sub(LEGEND_HEIGHT));
        let (left, right) = charts.split_horizontally(width / 2);
        let results = self.results;
        let epochs = results
            .iter()
            .map(|r| r.history.len())
            .max()
            .unwrap_or(1)
            .max(1);

        let loss = Panel {
            caption: "Training loss (mean over each epoch, log scale)",
            y_label: "loss",
            series: results
                .iter()
                .map(|r| {
                    r.history
                        .iter()
                        .map(|e| (e.epoch as f64, e.loss))
                        .filter(|&(_, loss)| loss.is_finite() && loss > 0.0)
                        .collect()
                })
                .collect(),
            y_format: &|y| trim_number(*y),
        };
        let looks: Vec<LineLook> = results.iter().map(|r| look(&r.variant)).collect();
        draw_panel(&left, &loss, &looks, epochs)?;
        let error = Panel {
            caption: "Test error after each epoch (1 - accuracy, log scale)",
            y_label: "test error",
            series: results
                .iter()
                .map(|r| {
                    r.history
                        .iter()
                        .filter_map(|e| e.val_accuracy.map(|a| (e.epoch as f64, 1.0 - a)))
                        .filter(|&(_, error)| error > 0.0)
                        .collect()
                })
                .collect(),
            y_format: &|y| format!("{}%", trim_number(y * 100.0)),
        };
        draw_panel(&right, &error, &looks, epochs)?;
        draw_legend(&legend, results, width)
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    looks: &[LineLook],
    epochs: usize,
) -> Result<(), String> {
    let values = panel.series.iter().flatten().map(|&(_, y)| y);
    let (low, high) = values.fold((f64::INFINITY, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (low, high) = if low.is_finite() {
        (low / 1.25, high * 1.25)
    } else {
        (0.01, 1.0)
    };
    // A single epoch still needs a non-empty x range.
    let x_range = 1f64..(epochs as f64).max(1.5);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, (FONT, 17))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(
            x_range,
            (low..high)
                .log_scale()
                .with_key_points(log_ticks(low, high)),
        )
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_label)
        .x_labels(epochs.clamp(2, 11))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(panel.y_format)
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(210, 210, 210))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(drawing_error)?;
    for (points, look) in panel.series.iter().zip(looks) {
        let style = ShapeStyle::from(look.color).stroke_width(2);
        if look.dashed {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 7, 5, style))
                .map_err(drawing_error)?;
        } else {
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(drawing_error)?;
        }
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, style.filled())))
            .map_err(drawing_error)?;
    }
    Ok(())
}

/// One row: a line sample and the variant's name, evenly spaced.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    results: &[VariantResult],
    width: u32,
) -> Result<(), String> {
    let slot = (width as i32 - 40) / results.len().max(1) as i32;
    for (index, result) in results.iter().enumerate() {
        let x = 30 + slot * index as i32;
        let y = (LEGEND_HEIGHT / 2) as i32;
        let look = look(&result.variant);
        let style = ShapeStyle::from(look.color).stroke_width(3);
        let segments = if look.dashed {
            vec![(x, x + 8), (x + 13, x + 21), (x + 26, x + 30)]
        } else {
            vec![(x, x + 30)]
        };
        for (from, to) in segments {
            area.draw(&PathElement::new(vec![(from, y), (to, y)], style))
                .map_err(drawing_error)?;
        }
        area.draw(&Circle::new((x + 15, y), 3, style.filled()))
            .map_err(drawing_error)?;
        area.draw(&Text::new(
            result.variant.name.clone(),
            (x + 36, y - 8),
            (FONT, 15),
        ))
        .map_err(drawing_error)?;
    }
    Ok(())
}

/// Round tick values for a log axis: 1-2-5 in every decade, or every integer mantissa when
/// the range is too narrow for that to give three ticks.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let ticks = |mantissas: &[f64]| -> Vec<f64> {
        let first_decade = low.log10().floor() as i32;
        let last_decade = high.log10().ceil() as i32;
        (first_decade..=last_decade)
            .flat_map(|decade| mantissas.iter().map(move |m| m * 10f64.powi(decade)))
            .filter(|&tick| tick >= low && tick <= high)
            .collect()
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// `3`, `2.5`, `0.005`: tick values without float noise or trailing zeros.
fn trim_number(value: f64) -> String {
    let rounded = (value * 1e6).round() / 1e6;
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_round_and_inside_the_range() {
        assert_eq!(log_ticks(0.04, 3.0), vec![0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
        // Too narrow for 1-2-5: every mantissa.
        let narrow = log_ticks(0.019, 0.045);
        assert_eq!(narrow.len(), 3);
        assert!((narrow[0] - 0.02).abs() < 1e-12 && (narrow[2] - 0.04).abs() < 1e-12);
        assert_eq!(trim_number(0.1 * 3.0), "0.3");
        assert_eq!(trim_number(2.0000000000000004), "2");
    }
}
