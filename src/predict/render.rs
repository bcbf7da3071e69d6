//! Drawing a small grayscale image in the terminal with Unicode half blocks: each character cell
//! shows two pixels, the upper one as '▀' and the lower one as '▄'. With colours allowed, each
//! half gets its own gray level (256-colour palette); without (NO_COLOR, TERM=dumb, not a
//! terminal) pixels at or above half intensity are drawn and the others left blank.

/// One string per pair of pixel rows; every line is `width` characters wide (without escapes).
pub fn render_half_blocks(pixels: &[u8], width: usize, height: usize, color: bool) -> Vec<String> {
    half_block_lines(
        pixels,
        width,
        height,
        color,
        |upper, lower| (gray_code(upper), gray_code(lower)),
        |upper, lower| match (upper >= 128, lower >= 128) {
            (true, true) => '█',
            (true, false) => '▀',
            (false, true) => '▄',
            (false, false) => ' ',
        },
    )
}

/// The half-block layout for any pixel type: with colours each cell is '▀' with the upper
/// pixel's palette code as foreground and the lower one's as background (`colors`); without,
/// `plain` picks one character for the pair. A missing last row reads as `T::default()`.
pub fn half_block_lines<T: Copy + Default>(
    pixels: &[T],
    width: usize,
    height: usize,
    color: bool,
    colors: impl Fn(T, T) -> (u8, u8),
    plain: impl Fn(T, T) -> char,
) -> Vec<String> {
    let at = |x: usize, y: usize| -> T {
        if y < height {
            pixels[y * width + x]
        } else {
            T::default()
        }
    };
    (0..height.div_ceil(2))
        .map(|pair| {
            let mut line = String::new();
            for x in 0..width {
                let (upper, lower) = (at(x, 2 * pair), at(x, 2 * pair + 1));
                if color {
                    let (foreground, background) = colors(upper, lower);
                    line.push_str(&format!("\x1b[38;5;{foreground}m\x1b[48;5;{background}m▀"));
                } else {
                    line.push(plain(upper, lower));
                }
            }
            if color {
                line.push_str("\x1b[0m");
            }
            line
        })
        .collect()
}

/// The 256-colour palette entry closest to a gray level: black (16), the ramp 232–255, white (231).
fn gray_code(value: u8) -> u8 {
    match value {
        0..=3 => 16,
        252..=255 => 231,
        _ => 232 + ((value as u16 - 4) * 24 / 248) as u8,
    }
}

/// Places `right` beside `left` (whose lines are `left_width` visible characters wide) with `gap`
/// spaces between; the longer side decides the number of lines.
pub fn side_by_side(
    left: &[String],
    left_width: usize,
    right: &[String],
    gap: usize,
) -> Vec<String> {
    let lines = left.len().max(right.len());
    (0..lines)
        .map(|index| {
            let left_part = left
                .get(index)
                .cloned()
                .unwrap_or_else(|| " ".repeat(left_width));
            match right.get(index) {
                Some(text) => format!("{left_part}{}{text}", " ".repeat(gap))
                    .trim_end()
                    .to_string(),
                None => left_part.trim_end().to_string(),
            }
        })
        .collect()
}

/// Lays out tiles (each a list of lines `tile_width` visible characters wide, captions included)
/// in rows of `per_row`, separated by two spaces and a blank line between rows.
pub fn tile_grid(tiles: &[Vec<String>], tile_width: usize, per_row: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (row_index, row) in tiles.chunks(per_row.max(1)).enumerate() {
        if row_index > 0 {
            out.push(String::new());
        }
        let height = row.iter().map(Vec::len).max().unwrap_or(0);
        for line in 0..height {
            let parts: Vec<String> = row
                .iter()
                .map(|tile| {
                    tile.get(line)
                        .cloned()
                        .unwrap_or_else(|| " ".repeat(tile_width))
                })
                .collect();
            out.push(parts.join("  ").trim_end().to_string());
        }
    }
    out
}

/// `text` cut or padded to exactly `width` characters.
pub fn fit_width(text: &str, width: usize) -> String {
    let cut: String = text.chars().take(width).collect();
    format!("{cut:<width$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_half_blocks_follow_the_pixels() {
        // 2×3 image: column 0 lit on top, column 1 lit at the bottom and on the odd last row.
        let pixels = [255, 0, 0, 255, 0, 200];
        let lines = render_half_blocks(&pixels, 2, 3, false);
        assert_eq!(lines, ["▀▄", " ▀"]);
    }

    #[test]
    fn colour_mode_uses_gray_levels_and_resets() {
        let lines = render_half_blocks(&[0, 255], 1, 2, true);
        assert_eq!(lines, ["\x1b[38;5;16m\x1b[48;5;231m▀\x1b[0m"]);
        assert_eq!(gray_code(128), 232 + (124 * 24 / 248) as u8);
    }

    #[test]
    fn tiles_are_laid_out_in_rows() {
        let tile = |c: &str| vec![c.repeat(2), c.repeat(2)];
        let grid = tile_grid(&[tile("a"), tile("b"), tile("c")], 2, 2);
        assert_eq!(grid, ["aa  bb", "aa  bb", "", "cc", "cc"]);
        assert_eq!(fit_width("abcdef", 4), "abcd");
        assert_eq!(fit_width("ab", 4), "ab  ");
    }

    #[test]
    fn side_by_side_pads_the_shorter_column() {
        let left = vec!["ab".to_string(), "cd".to_string()];
        let right = vec!["x".to_string(), "y".to_string(), "z".to_string()];
        assert_eq!(side_by_side(&left, 2, &right, 1), ["ab x", "cd y", "   z"]);
    }
}
