//! Machine-readable and file outputs: JSON lines on stdout, the CSV training history, and where
//! human-readable result text goes when JSON owns stdout.
//!
//! Every JSON document this program prints is one line (JSON Lines) with a `"type"` field naming
//! its schema (`epoch`, `summary`, `evaluation`, `prediction`, …); the schemas are documented in
//! the README ("JSON output").

pub mod classification;
pub mod history;
pub mod json;

pub use history::CsvHistory;
pub use json::{print_json_line, EpochJson, JsonLines};

/// Where human-readable results go: stdout normally, stderr when `--json` owns stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanOutput {
    pub to_stderr: bool,
}

impl HumanOutput {
    pub fn new(json: bool) -> Self {
        HumanOutput { to_stderr: json }
    }

    /// Prints text that already ends in a newline (or an empty string). A closed pipe (`| head`)
    /// is not an error worth a message: the reader has seen what it wanted.
    pub fn print(&self, text: &str) {
        use std::io::Write;
        let _ = if self.to_stderr {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
    }

    pub fn line(&self, line: &str) {
        self.print(&format!("{line}\n"));
    }
}

/// Whether terminal output may use ANSI colours: only on a terminal, and never when `NO_COLOR` is
/// set (to anything non-empty, see no-color.org) or `TERM` is `dumb`.
pub fn colors_allowed(is_terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
    is_terminal && !no_color && !dumb
}
