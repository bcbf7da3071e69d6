//! `mnist-train completions SHELL`: prints a completion script generated from the clap definitions,
//! so every option and value stays in sync with the program.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "mnist-train", &mut script);
    use std::io::Write;
    std::io::stdout()
        .write_all(&script)
        .map_err(|error| Error::io("<stdout>", error))
}
