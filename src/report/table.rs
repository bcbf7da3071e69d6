//! Aligned plain-text tables: names left-aligned, numbers right-aligned, two spaces between
//! columns, every line ending in a newline.

/// The header and rows as aligned lines; the first `left_aligned` columns are left-aligned
/// (names), the others right-aligned (numbers). Widths count characters, not bytes.
pub fn aligned_table<R: AsRef<[String]>>(
    header: &[&str],
    rows: &[R],
    left_aligned: usize,
) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row.as_ref()[column].chars().count())
                .chain([header[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                // format!'s width counts characters, as the widths above do.
                if column < left_aligned {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.as_ref().iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_left_numbers_right_and_widths_count_characters() {
        let rows = [
            ["α".to_string(), "1".to_string()],
            ["beta".to_string(), "100".to_string()],
        ];
        assert_eq!(
            aligned_table(&["name", "n"], &rows, 1),
            "name    n\nα       1\nbeta  100\n"
        );
    }
}
