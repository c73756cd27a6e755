//! `tinylcm`: the edge runtime's command line.

use clap::Parser;

/// TinyLCM edge runtime.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
