//! `lifeboat keygen --out FILE`.

use std::path::Path;
use std::process::ExitCode;

pub fn run(out: &Path) -> anyhow::Result<ExitCode> {
    let recipient = lifeboat_core::keys::generate_identity_file(out)?;
    eprintln!(
        "wrote identity {} (mode 0600); keep it where restores run, never next to the backups",
        out.display()
    );
    println!("{recipient}");
    Ok(ExitCode::SUCCESS)
}
