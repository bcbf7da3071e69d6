//! Options of the attribution methods, shared by `predict --explain` and `eval --explain-check`.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;

use crate::error::Result;
use crate::explain::{Quadrature, Settings};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Attribution (--explain, --explain-check)")]
pub struct ExplainSettingsArgs {
    /// Integrated gradients: gradient evaluations along the path from the baseline to the image
    #[arg(long, value_name = "N", default_value_t = Settings::default().ig_steps)]
    pub ig_steps: usize,
    /// Integrated gradients: the quadrature rule for the path integral
    #[arg(long, value_name = "RULE", default_value_t = Settings::default().quadrature,
          value_parser = PossibleValuesParser::new(Quadrature::NAMES)
              .try_map(|name| Quadrature::from_name(&name).ok_or("not a quadrature rule")))]
    pub ig_quadrature: Quadrature,
    /// Occlusion: side of the square patch slid over the image one pixel at a time, in pixels
    #[arg(long, value_name = "PIXELS", default_value_t = Settings::default().occlusion_patch)]
    pub occlusion_patch: usize,
    /// The pixel value (0 black … 1 white) a removed pixel takes: integrated gradients' starting
    /// image, occlusion's fill, and what the deletion check sets pixels to
    #[arg(long, value_name = "VALUE", default_value_t = Settings::default().baseline, allow_hyphen_values = true)]
    pub baseline: f32,
}

impl ExplainSettingsArgs {
    /// The validated settings for `width × height` images (errors name the setting, which the
    /// command line reports as its option).
    pub fn settings(&self, width: usize, height: usize) -> Result<Settings> {
        let settings = Settings {
            ig_steps: self.ig_steps,
            quadrature: self.ig_quadrature,
            occlusion_patch: self.occlusion_patch,
            baseline: self.baseline,
        };
        settings.validate(width, height)?;
        Ok(settings)
    }
}
