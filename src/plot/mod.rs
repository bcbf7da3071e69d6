//! Pictures for people: training curves and the confusion-matrix heat map, as SVG or PNG
//! (`plotters`). Text is drawn with an embedded DejaVu Sans, so PNGs look the same on every
//! machine and no system font library is needed. Files are written atomically like models.

pub mod attribution;
pub mod confusion;
pub mod curves;

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result, Setting};
use crate::model_file::write_atomic;

pub use attribution::AttributionFigure;
pub use confusion::ConfusionHeatMap;
pub use curves::{RunCurves, TrainingCurves};

/// The font every figure uses; registered once under this family name.
pub const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The picture formats `--plot` writes, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    Svg,
    Png,
}

impl PlotFormat {
    /// `.svg` or `.png` (any case); the error names the option.
    pub fn from_path(setting: Setting, path: &Path) -> Result<PlotFormat> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("svg") => Ok(PlotFormat::Svg),
            Some("png") => Ok(PlotFormat::Png),
            _ => Err(Error::setting(
                setting,
                format!("{}: the file name must end in .svg or .png", path.display()),
            )),
        }
    }
}

/// Something that can draw itself on any plotters backend.
pub trait Figure {
    /// Pixel size of the picture.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Renders `figure` to `path` (SVG or PNG by extension), atomically.
pub fn save_figure(setting: Setting, path: &Path, figure: &impl Figure) -> Result<()> {
    let format = PlotFormat::from_path(setting, path)?;
    let failed = |message: String| Error::io(path, std::io::Error::other(message));
    register_font();
    let (width, height) = figure.size();
    let bytes = match format {
        PlotFormat::Svg => {
            let mut svg = String::new();
            {
                let area = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
                figure.draw(&area).map_err(failed)?;
                area.present().map_err(|e| failed(e.to_string()))?;
            }
            svg.into_bytes()
        }
        PlotFormat::Png => {
            let mut pixels = vec![0u8; width as usize * height as usize * 3];
            {
                let area =
                    BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
                figure.draw(&area).map_err(failed)?;
                area.present().map_err(|e| failed(e.to_string()))?;
            }
            let image = image::RgbImage::from_raw(width, height, pixels)
                .ok_or_else(|| failed("pixel buffer has the wrong size".to_string()))?;
            let mut png = std::io::Cursor::new(Vec::new());
            image
                .write_to(&mut png, image::ImageFormat::Png)
                .map_err(|e| failed(e.to_string()))?;
            png.into_inner()
        }
    };
    write_atomic(path, &bytes)
}

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The embedded font is known to be valid; a failure would only lose the labels.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// Paints `area` white and titles it (`size`-point type); returns the area below the title.
pub(crate) fn titled_page<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    size: u32,
) -> std::result::Result<DrawingArea<DB, Shift>, String> {
    area.fill(&WHITE).map_err(drawing_error)?;
    area.titled(title, (FONT, size)).map_err(drawing_error)
}

/// Turns any plotters error into the message figures report.
pub(crate) fn drawing_error(error: impl std::fmt::Display) -> String {
    error.to_string()
}
