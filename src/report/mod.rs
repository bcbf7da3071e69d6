//! Machine-readable and file outputs: JSON lines on stdout, the CSV training history, TensorBoard
//! event files, and where
//! human-readable result text goes when JSON owns stdout.
//!
//! Every JSON document this program prints is one line (JSON Lines) with a `"type"` field naming
//! its schema (`epoch`, `summary`, `evaluation`, `prediction`, …); the schemas are documented in
//! the README ("JSON output").

pub mod classification;
pub mod history;
pub mod json;
pub mod summary;
pub mod table;
pub mod tensorboard;

pub use history::CsvHistory;

use crate::choice::choices;
pub use json::{print_json_line, EpochJson, JsonLines};
pub use tensorboard::TensorBoard;

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

choices! {
    /// `--color`: whether drawings in the terminal use ANSI grey levels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum ColorChoice {
        #[default]
        Auto = "auto": "Colours on a terminal, unless NO_COLOR is set or TERM is dumb",
        Always = "always",
        Never = "never",
    }
}

impl HumanOutput {
    /// Whether the stream this output goes to should get colours under `choice`.
    pub fn use_color(&self, choice: ColorChoice) -> bool {
        use std::io::IsTerminal;
        let is_terminal = if self.to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => auto_color(
                is_terminal,
                std::env::var_os("NO_COLOR"),
                std::env::var("TERM").ok(),
            ),
        }
    }
}

/// `--color auto`: only on a terminal, and never when `NO_COLOR` is set to anything non-empty
/// (see no-color.org) or `TERM` is `dumb`.
pub fn auto_color(
    is_terminal: bool,
    no_color: Option<std::ffi::OsString>,
    term: Option<String>,
) -> bool {
    let no_color = no_color.is_some_and(|value| !value.is_empty());
    let dumb = term.is_some_and(|term| term == "dumb");
    is_terminal && !no_color && !dumb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_color_honours_no_color_and_dumb_terminals() {
        let xterm = || Some("xterm-256color".to_string());
        assert!(auto_color(true, None, xterm()));
        assert!(!auto_color(false, None, xterm()), "not a terminal");
        assert!(!auto_color(true, Some("1".into()), xterm()), "NO_COLOR=1");
        assert!(
            auto_color(true, Some("".into()), xterm()),
            "empty NO_COLOR is unset"
        );
        assert!(
            !auto_color(true, None, Some("dumb".to_string())),
            "TERM=dumb"
        );
    }
}
