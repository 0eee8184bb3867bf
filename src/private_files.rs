//! Files only sam's user may read: the link-signing key, a registered App's credentials,
//! the setup link. They are created with mode 0600 from the start, never widened later,
//! so there is no moment in which another user could open them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// Creates `path` holding `bytes`; fails if it exists already.
pub fn create(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` with `bytes` atomically: a crash leaves the old file or the new one,
/// never half of one.
pub fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = Path::new(&partial);
    let _ = std::fs::remove_file(partial);
    create(partial, bytes)?;
    std::fs::rename(partial, path).with_context(|| format!("moving {} into place", path.display()))
}

/// The 32-byte secret at `path`, made at random the first time it is asked for (and its
/// directory with it). `what_breaks` says, in the error for a damaged file, what deleting
/// it costs.
pub fn key(path: &Path, what_breaks: &str) -> anyhow::Result<[u8; 32]> {
    use rand::RngExt;
    match std::fs::read(path) {
        Ok(bytes) => {
            return bytes.try_into().map_err(|_| {
                anyhow::anyhow!(
                    "{} is not 32 bytes; delete it to make a new one ({what_breaks})",
                    path.display()
                )
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key: [u8; 32] = rand::rng().random();
    create(path, &key)?;
    Ok(key)
}
