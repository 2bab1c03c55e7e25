//! The host's private secret files in its data folder (the admin token, the keys the server
//! backends derive their passwords from): read, or created once with mode 0600.

use std::io::Write as _;
use std::path::Path;

/// The secret kept in file `path` (at least 32 characters), or a new random one (256 bits,
/// hex) written there with mode 0600, its folder created if needed.
pub fn private_secret(path: &Path) -> std::io::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let t = existing.trim();
        if t.len() >= 32 {
            return Ok(t.to_string());
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret.as_bytes())?;
    Ok(secret)
}
