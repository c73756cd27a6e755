//! `tinylcm synth`: write labelled frames of the synthetic scene to disk.

/// Options of `tinylcm synth`.
#[derive(clap::Args)]
pub struct Args {}

/// Run the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("tinylcm synth: not built yet")
}
