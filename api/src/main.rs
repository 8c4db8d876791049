//! `flashsale`: parse the command line and the configuration, then run the role.

use clap::Parser;

/// mimalloc, not glibc's malloc: the hot paths allocate ~90 (reserve) to ~200 (join)
/// times a request, and glibc's allocator was a fifth of their CPU under load
/// (`loadtests/bench/PROFILE.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = flashsale::cli::Cli::parse();
    let config = match flashsale::config::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flashsale: {e}");
            std::process::exit(2);
        }
    };
    flashsale::telemetry::init(config.log_format);
    if let Err(e) = flashsale::cli::run(cli, config).await {
        eprintln!("flashsale: {e:#}");
        std::process::exit(1);
    }
}
