use mnist_train::cli;
use mnist_train::error::exit_code;

fn main() {
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(error) => std::process::exit(cli::report_parse_error(error)),
    };
    if let Err(error) = cli::run(cli) {
        eprintln!("error: {error}");
        std::process::exit(error.exit_code());
    }
    std::process::exit(exit_code::SUCCESS);
}
