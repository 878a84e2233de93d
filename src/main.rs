//! The `zcoord` binary: parses the command line and hands off to `cli`, and guards the process
//! against libzmq's abort on `EMFILE` (`accept_guard`).

#[cfg(target_os = "linux")]
mod accept_guard;

/// jemalloc, for memory that goes back to the system after a spike (see Cargo.toml).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    std::process::exit(zcoord::cli::main());
}
