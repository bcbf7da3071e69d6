//! An attribution map as a picture: the input as the network saw it, the map (red raises the
//! explained score, blue lowers it, white is neutral), the map laid over the digit, and the
//! colour scale with its values.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::explain::render::{short_number, signed_level};
use crate::plot::{drawing_error, Figure, FONT};

#[derive(Debug, Clone)]
pub struct AttributionFigure {
    pub title: String,
    pub subtitle: String,
    /// The input image, one byte per pixel (0 black … 255 white), row-major.
    pub pixels: Vec<u8>,
    /// One attribution per pixel.
    pub values: Vec<f32>,
    pub width: usize,
    pub height: usize,
    /// The magnitude drawn at full colour ([`crate::explain::render::display_scale`]).
    pub scale: f32,
}

/// Screen pixels per image pixel.
const ZOOM: i32 = 8;
const MARGIN: i32 = 20;
const GAP: i32 = 30;
const TOP: i32 = 90;
const BAR_WIDTH: i32 = 18;
const LABELS: i32 = 90;
const BOTTOM: i32 = 44;
/// ColorBrewer RdBu's ends: positive and negative at full strength.
const RED: (f32, f32, f32) = (178.0, 24.0, 43.0);
const BLUE: (f32, f32, f32) = (33.0, 102.0, 172.0);
const DARK_GRAY: RGBColor = RGBColor(90, 90, 90);

/// White at 0, RdBu red towards +1, blue towards −1.
fn diverging(level: f32) -> (f32, f32, f32) {
    let (r, g, b) = if level >= 0.0 { RED } else { BLUE };
    let t = level.abs().min(1.0);
    let mix = |end: f32| 255.0 + (end - 255.0) * t;
    (mix(r), mix(g), mix(b))
}

fn rgb((r, g, b): (f32, f32, f32)) -> RGBColor {
    let byte = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    RGBColor(byte(r), byte(g), byte(b))
}

impl AttributionFigure {
    fn panel_size(&self) -> (i32, i32) {
        (self.width as i32 * ZOOM, self.height as i32 * ZOOM)
    }

    /// Draws one panel at `left`, colouring pixel `i` with `color(i)`.
    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        left: i32,
        caption: &str,
        color: impl Fn(usize) -> RGBColor,
    ) -> Result<(), String> {
        let (panel_width, panel_height) = self.panel_size();
        area.draw(&Text::new(
            caption.to_string(),
            (left + panel_width / 2, TOP - 14),
            TextStyle::from((FONT, 16).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(drawing_error)?;
        for i in 0..self.width * self.height {
            let (x, y) = ((i % self.width) as i32, (i / self.width) as i32);
            let corner = (left + x * ZOOM, TOP + y * ZOOM);
            area.draw(&Rectangle::new(
                [corner, (corner.0 + ZOOM, corner.1 + ZOOM)],
                color(i).filled(),
            ))
            .map_err(drawing_error)?;
        }
        area.draw(&Rectangle::new(
            [(left, TOP), (left + panel_width, TOP + panel_height)],
            DARK_GRAY.stroke_width(1),
        ))
        .map_err(drawing_error)
    }

    fn level(&self, i: usize) -> f32 {
        signed_level(self.values[i], self.scale)
    }
}

impl Figure for AttributionFigure {
    fn size(&self) -> (u32, u32) {
        let (panel_width, panel_height) = self.panel_size();
        let width = 2 * MARGIN + 3 * panel_width + 3 * GAP + BAR_WIDTH + LABELS;
        (width as u32, (TOP + panel_height + BOTTOM) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        area.fill(&WHITE).map_err(drawing_error)?;
        let (panel_width, panel_height) = self.panel_size();
        let left_aligned = |size: u32, color: &'static RGBColor| {
            TextStyle::from((FONT, size).into_font())
                .color(color)
                .pos(Pos::new(HPos::Left, VPos::Center))
        };
        area.draw(&Text::new(
            self.title.clone(),
            (MARGIN, 20),
            left_aligned(20, &BLACK),
        ))
        .map_err(drawing_error)?;
        area.draw(&Text::new(
            self.subtitle.clone(),
            (MARGIN, 46),
            left_aligned(14, &DARK_GRAY),
        ))
        .map_err(drawing_error)?;
        let column = |index: i32| MARGIN + index * (panel_width + GAP);
        self.draw_panel(area, column(0), "input", |i| {
            let p = self.pixels[i];
            RGBColor(p, p, p)
        })?;
        self.draw_panel(area, column(1), "attribution", |i| {
            rgb(diverging(self.level(i)))
        })?;
        // The digit as light-grey ink on white, tinted by the map (multiplied, so ink stays visible).
        self.draw_panel(area, column(2), "overlay", |i| {
            let base = 255.0 - 0.55 * self.pixels[i] as f32;
            let (r, g, b) = diverging(self.level(i));
            rgb((base * r / 255.0, base * g / 255.0, base * b / 255.0))
        })?;
        // The colour bar: +scale at the top, −scale at the bottom.
        let bar_left = column(3);
        for y in 0..panel_height {
            let level = 1.0 - 2.0 * (y as f32 + 0.5) / panel_height as f32;
            area.draw(&Rectangle::new(
                [(bar_left, TOP + y), (bar_left + BAR_WIDTH, TOP + y + 1)],
                rgb(diverging(level)).filled(),
            ))
            .map_err(drawing_error)?;
        }
        area.draw(&Rectangle::new(
            [(bar_left, TOP), (bar_left + BAR_WIDTH, TOP + panel_height)],
            DARK_GRAY.stroke_width(1),
        ))
        .map_err(drawing_error)?;
        for (label, y) in [
            (format!("≥ +{}", short_number(self.scale)), TOP),
            ("0".to_string(), TOP + panel_height / 2),
            (
                format!("≤ −{}", short_number(self.scale)),
                TOP + panel_height,
            ),
        ] {
            area.draw(&Text::new(
                label,
                (bar_left + BAR_WIDTH + 6, y),
                left_aligned(13, &BLACK),
            ))
            .map_err(drawing_error)?;
        }
        area.draw(&Text::new(
            "red raises the score, blue lowers it, white is neutral; the scale's ends are the 99th percentile of |attribution|".to_string(),
            (MARGIN, TOP + panel_height + BOTTOM / 2 + 4),
            left_aligned(13, &DARK_GRAY),
        ))
        .map_err(drawing_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_map_is_white_at_zero_and_brewer_red_blue_at_the_ends() {
        assert_eq!(rgb(diverging(0.0)), RGBColor(255, 255, 255));
        assert_eq!(rgb(diverging(1.0)), RGBColor(178, 24, 43));
        assert_eq!(rgb(diverging(-1.0)), RGBColor(33, 102, 172));
    }
}
