//! `sphere-lite`: the fleet server (being built; see the open issue).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("sphere-lite is not built yet")
}
