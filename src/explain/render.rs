//! Drawing an attribution map for people: the shared colour scale, and the terminal rendering
//! (Unicode half blocks like `predict --show`, red for positive, blue for negative).

use crate::predict::render::half_block_lines;

/// The magnitude drawn at full colour: the 99th percentile of |attribution|, so one extreme
/// pixel does not wash out the rest of the map (larger values are drawn at full colour too).
pub fn display_scale(values: &[f32]) -> f32 {
    let mut magnitudes: Vec<f32> = values
        .iter()
        .map(|v| v.abs())
        .filter(|v| v.is_finite())
        .collect();
    if magnitudes.is_empty() {
        return 1.0;
    }
    magnitudes.sort_by(f32::total_cmp);
    let index = ((magnitudes.len() - 1) as f64 * 0.99).round() as usize;
    let scale = magnitudes[index];
    if scale > 0.0 {
        scale
    } else {
        magnitudes[magnitudes.len() - 1].max(f32::MIN_POSITIVE)
    }
}

/// A number short enough for a scale label: three decimals, or three digits in scientific
/// notation when smaller than 0.01.
pub fn short_number(value: f32) -> String {
    if value != 0.0 && value.abs() < 0.01 {
        format!("{value:.2e}")
    } else {
        format!("{value:.3}")
    }
}

/// A value on the scale, clamped to [−1, 1].
pub fn signed_level(value: f32, scale: f32) -> f32 {
    (value / scale).clamp(-1.0, 1.0)
}

/// Positive attributions from dark to bright red in the 256-colour palette's cube.
const POSITIVE_CODES: [u8; 5] = [52, 88, 124, 160, 196];
/// Negative ones from dark to bright blue (a little green keeps the brightest visible on black).
const NEGATIVE_CODES: [u8; 5] = [17, 18, 19, 27, 33];

/// The palette code of one pixel: black near zero, red or blue by sign, brighter when stronger.
fn color_code(level: f32) -> u8 {
    let steps = POSITIVE_CODES.len();
    let bucket = (level.abs() * steps as f32).round() as usize;
    match bucket.min(steps) {
        0 => 16,
        strength if level > 0.0 => POSITIVE_CODES[strength - 1],
        strength => NEGATIVE_CODES[strength - 1],
    }
}

/// The character for a pair of pixels without colours: `#`/`+` strong/weak positive, `=`/`-`
/// strong/weak negative, blank below a sixth of the scale. The stronger pixel of the pair wins.
fn plain_char(upper: f32, lower: f32) -> char {
    let level = if upper.abs() >= lower.abs() {
        upper
    } else {
        lower
    };
    match level {
        l if l >= 0.5 => '#',
        l if l >= 1.0 / 6.0 => '+',
        l if l <= -0.5 => '=',
        l if l <= -1.0 / 6.0 => '-',
        _ => ' ',
    }
}

/// One string per pair of pixel rows, `width` characters wide (without escapes).
pub fn render_attribution(
    values: &[f32],
    width: usize,
    height: usize,
    scale: f32,
    color: bool,
) -> Vec<String> {
    let levels: Vec<f32> = values.iter().map(|&v| signed_level(v, scale)).collect();
    half_block_lines(
        &levels,
        width,
        height,
        color,
        |upper, lower| (color_code(upper), color_code(lower)),
        plain_char,
    )
}

/// How to read the terminal map.
pub fn legend(color: bool) -> &'static str {
    if color {
        "red raises the score, blue lowers it; brighter is stronger"
    } else {
        "# + raise the score, = - lower it (strong, weak)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_map_shows_sign_and_strength() {
        // 4×2 image: strong +, weak +, weak −, strong −, each over a zero pixel.
        let values = [1.0, 0.3, -0.3, -1.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(render_attribution(&values, 4, 2, 1.0, false), ["#+-="]);
    }

    #[test]
    fn colour_map_is_red_for_positive_blue_for_negative_black_for_zero() {
        let lines = render_attribution(&[1.0, -1.0, 0.0, 0.0], 2, 2, 1.0, true);
        assert_eq!(
            lines,
            ["\x1b[38;5;196m\x1b[48;5;16m▀\x1b[38;5;33m\x1b[48;5;16m▀\x1b[0m"]
        );
    }

    #[test]
    fn scale_ignores_the_top_percent() {
        let mut values = vec![1.0f32; 200];
        values[7] = -50.0;
        assert_eq!(display_scale(&values), 1.0);
        assert_eq!(display_scale(&[0.0, 0.0]), f32::MIN_POSITIVE);
    }
}
