//! The `mnist-train` program. The command line (`cli/`) belongs to the program, not to the
//! library: it parses arguments into the library's plain specs (`mnist_train::run::RunSpec`),
//! calls the library and turns an error into one line and an exit code.

mod cli;

// The command-line modules name the library's modules as `crate::data`, `crate::run`, … .
#[allow(unused_imports)]
use mnist_train::*;

/// Large buffers start on a cache line, so threads owning neighbouring blocks of a weight
/// matrix never write the same line (see `kernels::CacheLineAllocator`).
#[global_allocator]
static ALLOCATOR: mnist_train::kernels::CacheLineAllocator =
    mnist_train::kernels::CacheLineAllocator;

fn main() {
    std::process::exit(cli::main(std::env::args_os()));
}
