//! The confusion matrix as a heat map: one cell per (true, predicted) pair with its count written
//! in it. A cell's colour is the share of its true class (its row) on a square-root scale, so the
//! few dozen confusions of a good model are visible next to a diagonal of thousands.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plot::{drawing_error, Figure, FONT};

#[derive(Debug, Clone)]
pub struct ConfusionHeatMap {
    pub title: String,
    pub class_names: Vec<String>,
    /// `confusion[true][predicted]`
    pub confusion: Vec<Vec<u64>>,
}

const CELL: u32 = 78;
const ROW_LABELS: u32 = 130;
const TOP: u32 = 100;
const MARGIN: u32 = 30;
const DARK_GRAY: RGBColor = RGBColor(90, 90, 90);

/// White → dark blue as `share` goes 0 → 1.
fn cell_color(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0).sqrt();
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

impl Figure for ConfusionHeatMap {
    fn size(&self) -> (u32, u32) {
        let n = self.class_names.len() as u32;
        (ROW_LABELS + n * CELL + MARGIN, TOP + n * CELL + 60)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        area.fill(&WHITE).map_err(drawing_error)?;
        let n = self.class_names.len() as i32;
        let (cell, left, top) = (CELL as i32, ROW_LABELS as i32, TOP as i32);
        let centered = |size: u32, color: &'static RGBColor| {
            TextStyle::from((FONT, size).into_font())
                .color(color)
                .pos(Pos::new(HPos::Center, VPos::Center))
        };
        let right_aligned = TextStyle::from((FONT, 15).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        area.draw(&Text::new(
            self.title.clone(),
            (left + n * cell / 2, 22),
            centered(20, &BLACK),
        ))
        .map_err(drawing_error)?;
        area.draw(&Text::new(
            "predicted class".to_string(),
            (left + n * cell / 2, 52),
            centered(16, &DARK_GRAY),
        ))
        .map_err(drawing_error)?;
        area.draw(&Text::new(
            "true class ↓".to_string(),
            (left - 10, 52),
            TextStyle::from((FONT, 16).into_font())
                .color(&DARK_GRAY)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(drawing_error)?;
        for (column, name) in self.class_names.iter().enumerate() {
            area.draw(&Text::new(
                name.clone(),
                (left + column as i32 * cell + cell / 2, top - 18),
                centered(14, &BLACK),
            ))
            .map_err(drawing_error)?;
        }
        for (row, counts) in self.confusion.iter().enumerate() {
            let y = top + row as i32 * cell;
            area.draw(&Text::new(
                self.class_names.get(row).cloned().unwrap_or_default(),
                (left - 10, y + cell / 2),
                right_aligned.clone(),
            ))
            .map_err(drawing_error)?;
            let total: u64 = counts.iter().sum();
            for (column, &count) in counts.iter().enumerate() {
                let x = left + column as i32 * cell;
                let share = if total > 0 {
                    count as f64 / total as f64
                } else {
                    0.0
                };
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    cell_color(share).filled(),
                ))
                .map_err(drawing_error)?;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(200, 200, 200).stroke_width(1),
                ))
                .map_err(drawing_error)?;
                let ink: &'static RGBColor = if share.sqrt() > 0.55 { &WHITE } else { &BLACK };
                area.draw(&Text::new(
                    count.to_string(),
                    (x + cell / 2, y + cell / 2),
                    centered(17, ink),
                ))
                .map_err(drawing_error)?;
            }
        }
        area.draw(&Text::new(
            "colour: share of the true class (square-root scale)".to_string(),
            (left + n * cell / 2, top + n * cell + 30),
            centered(13, &DARK_GRAY),
        ))
        .map_err(drawing_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_darken_with_the_share() {
        assert_eq!(cell_color(0.0), RGBColor(247, 251, 255));
        assert_eq!(cell_color(1.0), RGBColor(8, 48, 107));
        assert!(cell_color(0.5).0 < cell_color(0.1).0);
    }
}
