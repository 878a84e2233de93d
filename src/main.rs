//! The `zcoord` binary: parses the command line and hands off to `cli`. Nothing else.

fn main() {
    std::process::exit(zcoord::cli::main());
}
