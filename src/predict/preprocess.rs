//! Turning an arbitrary image of one digit into the 28×28 input MNIST was made of.
//!
//! MNIST's digits are light strokes on a black background, size-normalized so the digit's bounding
//! box fits a 20×20 box (aspect ratio preserved, anti-aliased), then placed in a 28×28 frame so that
//! their center of mass sits at the frame's center. A user's image (a scan, a photo, a drawing with
//! dark ink on white paper) is brought into the same form:
//!
//! 1. grayscale; transparent pixels are composited onto white (drawing programs leave them);
//! 2. invert when the background is light: in `auto` mode when the mean of the border pixels is
//!    above mid-gray;
//! 3. stretch the contrast so the background (the median border pixel) becomes 0 and the brightest
//!    stroke 255, which also removes a grey paper tone;
//! 4. crop to the bounding box of the pixels above 10 % of full ink;
//! 5. scale that box so its longer side is 20 pixels, preserving the aspect ratio (triangle-filter
//!    resampling, which averages when shrinking), and stretch again so the darkest ink is 255;
//! 6. paste it into a black 28×28 frame so that its center of mass lands on the frame's center.

use std::path::Path;

use image::imageops::FilterType;
use image::{ImageBuffer, ImageReader, Limits, Luma};

use crate::choice::choices;
use crate::error::{Error, Result};

/// Side of MNIST's frame and of the box the digit is scaled into.
pub const FRAME: usize = 28;
pub const DIGIT_BOX: usize = 20;
/// Pixels above this fraction of full ink count as part of the digit when finding its bounding box.
const INK_THRESHOLD: f32 = 0.1;
/// Below this contrast (of 255) between background and the strongest stroke, there is no digit.
const MIN_CONTRAST: f32 = 24.0;
/// Images larger than this are refused before decoding (a header could claim anything).
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// A grayscale image, row-major, one byte per pixel (0 black, 255 white).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

choices! {
    /// Whether to invert an image before classifying it (MNIST digits are light on dark).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum InvertMode {
        #[default]
        Auto = "auto": "Invert when the image's border is light (dark ink on light paper)",
        Yes = "yes": "Always invert",
        No = "no": "Never invert (the image is already light on dark, like MNIST)",
    }
}

/// Reads a PNG, JPEG or PGM/PNM file (format detected by content) as grayscale, transparent
/// areas composited onto white.
pub fn load_grayscale(path: &Path) -> Result<GrayImage> {
    let bad = |message: String| Error::data(path, message);
    let mut reader = ImageReader::open(path)
        .map_err(|error| Error::io(path, error))?
        .with_guessed_format()
        .map_err(|error| Error::io(path, error))?;
    if reader.format().is_none() {
        return Err(bad(
            "is not a PNG, JPEG or PGM image (unrecognized content)".to_string(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|error| bad(format!("cannot decode image: {error}")))?;
    let with_alpha = decoded.to_luma_alpha8();
    let (width, height) = (with_alpha.width() as usize, with_alpha.height() as usize);
    if width == 0 || height == 0 {
        return Err(bad("image has no pixels".to_string()));
    }
    let pixels = with_alpha
        .pixels()
        .map(|pixel| {
            let [luma, alpha] = pixel.0;
            let alpha = alpha as f32 / 255.0;
            (luma as f32 * alpha + 255.0 * (1.0 - alpha)).round() as u8
        })
        .collect();
    Ok(GrayImage {
        width,
        height,
        pixels,
    })
}

/// The 28×28 MNIST-style frame (light digit on black, row-major) for `image`; see the module
/// documentation for the steps. Fails when the image holds no visible digit.
pub fn to_mnist_frame(
    image: &GrayImage,
    invert: InvertMode,
) -> std::result::Result<Vec<u8>, String> {
    let (width, height) = (image.width, image.height);
    if width == 0 || height == 0 || image.pixels.len() != width * height {
        return Err("image has no pixels".to_string());
    }
    let border = border_pixels(image);
    let border_mean = border.iter().map(|&p| p as f32).sum::<f32>() / border.len() as f32;
    let invert = match invert {
        InvertMode::Auto => border_mean > 127.5,
        InvertMode::Yes => true,
        InvertMode::No => false,
    };
    let oriented: Vec<f32> = image
        .pixels
        .iter()
        .map(|&p| if invert { 255.0 - p as f32 } else { p as f32 })
        .collect();
    // Step 3: background → 0, strongest stroke → 1.
    let mut border: Vec<f32> = border
        .iter()
        .map(|&p| if invert { 255.0 - p as f32 } else { p as f32 })
        .collect();
    border.sort_by(f32::total_cmp);
    let background = border[border.len() / 2];
    let peak = oriented.iter().copied().fold(0.0, f32::max);
    if peak - background < MIN_CONTRAST {
        return Err(format!(
            "no digit found: the image is nearly uniform (contrast {:.0} of 255){}",
            (peak - background).max(0.0),
            if invert {
                ""
            } else {
                "; dark ink on light paper needs inverting (invert: yes or auto)"
            }
        ));
    }
    let ink: Vec<f32> = oriented
        .iter()
        .map(|&p| ((p - background) / (peak - background)).clamp(0.0, 1.0))
        .collect();
    // Step 4: the bounding box of the ink.
    let (mut left, mut right, mut top, mut bottom) = (width, 0, height, 0);
    for y in 0..height {
        for x in 0..width {
            if ink[y * width + x] > INK_THRESHOLD {
                left = left.min(x);
                right = right.max(x);
                top = top.min(y);
                bottom = bottom.max(y);
            }
        }
    }
    let (box_width, box_height) = (right - left + 1, bottom - top + 1);
    let cropped =
        ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(box_width as u32, box_height as u32, |x, y| {
            let value = ink[(top + y as usize) * width + left + x as usize];
            Luma([(value * 255.0).round() as u8])
        });
    // Step 5: longer side → 20 pixels, aspect ratio kept.
    let longer = box_width.max(box_height) as f32;
    let scaled_width =
        ((box_width as f32 * DIGIT_BOX as f32 / longer).round() as usize).clamp(1, DIGIT_BOX);
    let scaled_height =
        ((box_height as f32 * DIGIT_BOX as f32 / longer).round() as usize).clamp(1, DIGIT_BOX);
    let scaled = image::imageops::resize(
        &cropped,
        scaled_width as u32,
        scaled_height as u32,
        FilterType::Triangle,
    );
    let scaled_peak = scaled.pixels().map(|p| p.0[0]).max().unwrap_or(0).max(1) as f32;
    let digit: Vec<f32> = scaled
        .pixels()
        .map(|p| p.0[0] as f32 * 255.0 / scaled_peak)
        .collect();
    // Step 6: center of mass to the frame's center (13.5, 13.5 in pixel-center coordinates).
    let (mut mass, mut mass_x, mut mass_y) = (0.0f32, 0.0f32, 0.0f32);
    for y in 0..scaled_height {
        for x in 0..scaled_width {
            let value = digit[y * scaled_width + x];
            mass += value;
            mass_x += value * x as f32;
            mass_y += value * y as f32;
        }
    }
    let center = (FRAME as f32 - 1.0) / 2.0;
    let place = |mass_axis: f32, size: usize| -> usize {
        let offset = (center - mass_axis / mass.max(1e-6)).round();
        // Keep the whole digit inside the frame even if that moves the center of mass a little.
        offset.clamp(0.0, (FRAME - size) as f32) as usize
    };
    let (offset_x, offset_y) = (place(mass_x, scaled_width), place(mass_y, scaled_height));
    let mut frame = vec![0u8; FRAME * FRAME];
    for y in 0..scaled_height {
        for x in 0..scaled_width {
            frame[(offset_y + y) * FRAME + offset_x + x] =
                digit[y * scaled_width + x].round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(frame)
}

/// The outermost rows and columns of the image.
fn border_pixels(image: &GrayImage) -> Vec<u8> {
    let (width, height) = (image.width, image.height);
    let at = |x: usize, y: usize| image.pixels[y * width + x];
    let mut border = Vec::with_capacity(2 * (width + height));
    for x in 0..width {
        border.push(at(x, 0));
        if height > 1 {
            border.push(at(x, height - 1));
        }
    }
    for y in 1..height.saturating_sub(1) {
        border.push(at(0, y));
        if width > 1 {
            border.push(at(width - 1, y));
        }
    }
    border
}

/// The center of mass (x, y) of a 28×28 frame, in pixel coordinates.
pub fn center_of_mass(frame: &[u8]) -> (f32, f32) {
    let (mut mass, mut sum_x, mut sum_y) = (0.0f32, 0.0f32, 0.0f32);
    for (index, &value) in frame.iter().enumerate() {
        let value = value as f32;
        mass += value;
        sum_x += value * (index % FRAME) as f32;
        sum_y += value * (index / FRAME) as f32;
    }
    (sum_x / mass.max(1e-6), sum_y / mass.max(1e-6))
}

/// The bounding box (left, top, width, height) of the nonzero pixels of a 28×28 frame.
pub fn ink_box(frame: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let lit: Vec<usize> = (0..frame.len()).filter(|&i| frame[i] > 0).collect();
    let xs = lit.iter().map(|i| i % FRAME);
    let ys = lit.iter().map(|i| i / FRAME);
    let (left, right) = (xs.clone().min()?, xs.max()?);
    let (top, bottom) = (ys.clone().min()?, ys.max()?);
    Some((left, top, right - left + 1, bottom - top + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `width`×`height` canvas of `background` with a filled rectangle of `ink`.
    fn canvas(
        width: usize,
        height: usize,
        background: u8,
        ink: u8,
        rect: (usize, usize, usize, usize),
    ) -> GrayImage {
        let (rx, ry, rw, rh) = rect;
        let pixels = (0..width * height)
            .map(|i| {
                let (x, y) = (i % width, i / width);
                if (rx..rx + rw).contains(&x) && (ry..ry + rh).contains(&y) {
                    ink
                } else {
                    background
                }
            })
            .collect();
        GrayImage {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn dark_ink_on_light_paper_is_inverted_scaled_to_20_and_centered() {
        // A tall 10×40 stroke in the top-left corner of a 100×100 white page.
        let image = canvas(100, 100, 250, 10, (5, 3, 10, 40));
        let frame = to_mnist_frame(&image, InvertMode::Auto).unwrap();
        let (_, _, width, height) = ink_box(&frame).unwrap();
        assert_eq!(height, 20, "the longer side fills the 20-pixel box");
        assert_eq!(width, 5, "the aspect ratio 1:4 is kept");
        assert_eq!(frame[0], 0, "the background became black");
        assert_eq!(*frame.iter().max().unwrap(), 255, "the ink became white");
        let (cx, cy) = center_of_mass(&frame);
        assert!(
            (cx - 13.5).abs() <= 0.5 && (cy - 13.5).abs() <= 0.5,
            "{cx} {cy}"
        );
    }

    #[test]
    fn light_on_dark_is_not_inverted_in_auto_mode() {
        let image = canvas(28, 28, 0, 200, (2, 2, 8, 8));
        let frame = to_mnist_frame(&image, InvertMode::Auto).unwrap();
        assert_eq!(ink_box(&frame).unwrap().2, 20);
        assert_eq!(frame[0], 0);
    }

    #[test]
    fn invert_modes_override_the_border_test() {
        // A mid-gray stroke on a dark page: auto keeps it, forcing inversion makes the page the
        // brightest thing, so nothing stands out from the background any more.
        let image = canvas(40, 40, 0, 160, (10, 10, 5, 10));
        assert_eq!(
            to_mnist_frame(&image, InvertMode::No).unwrap(),
            to_mnist_frame(&image, InvertMode::Auto).unwrap()
        );
        assert!(to_mnist_frame(&image, InvertMode::Yes).is_err());
        // Dark ink on white with inversion disabled is refused with a hint.
        let paper = canvas(40, 40, 255, 0, (10, 10, 5, 5));
        let error = to_mnist_frame(&paper, InvertMode::No).unwrap_err();
        assert!(error.contains("invert: yes or auto"), "{error}");
        let forced = to_mnist_frame(&paper, InvertMode::Yes).unwrap();
        assert_eq!(forced, to_mnist_frame(&paper, InvertMode::Auto).unwrap());
    }

    #[test]
    fn grey_paper_tone_is_removed() {
        let image = canvas(60, 60, 180, 20, (20, 10, 12, 30));
        let frame = to_mnist_frame(&image, InvertMode::Auto).unwrap();
        let lit = frame.iter().filter(|&&p| p > 0).count();
        let (_, _, width, height) = ink_box(&frame).unwrap();
        assert_eq!(
            lit,
            width * height,
            "only the stroke is lit, not the grey page"
        );
    }

    #[test]
    fn blank_image_is_refused() {
        let error =
            to_mnist_frame(&canvas(50, 50, 255, 255, (0, 0, 0, 0)), InvertMode::Auto).unwrap_err();
        assert!(error.contains("no digit"), "{error}");
    }

    #[test]
    fn tiny_images_are_scaled_up() {
        let image = canvas(5, 5, 0, 255, (1, 1, 3, 3));
        let frame = to_mnist_frame(&image, InvertMode::No).unwrap();
        let (_, _, width, height) = ink_box(&frame).unwrap();
        assert_eq!((width, height), (20, 20));
    }
}
