//! `tinylcm config`: print the effective configuration (defaults, file and
//! environment merged), which doubles as a reference of every key.

use std::path::PathBuf;

use tinylcm::config::Config;

/// Options of `tinylcm config`.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file to merge over the defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Run the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    print!("{}", config.to_toml());
    Ok(())
}
