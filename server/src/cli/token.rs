//! The server's bearer token when none is given on the command line: read
//! from `--token-file`, or generated and written to a file only this user
//! can read, removed again when the server stops.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Bytes of OS randomness in a generated token (256 bits).
const TOKEN_BYTES: usize = 32;

/// A token from the operating system's randomness, as lower-case hex (so
/// it is safe in a header, a URL, a shell variable).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error).context("reading the OS's randomness (getrandom) for a token");
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads `--token-file`: its text, one trailing line ending removed.
pub fn read_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if token.is_empty() {
        bail!("--token-file {}: the file is empty; write the token in it", path.display());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "--token-file {}: the token holds whitespace, a control character or more than one line; \
             the file must hold the token alone",
            path.display()
        );
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the token file can be read by other users: chmod 600 it");
    }
    Ok(token.to_owned())
}

/// Where generated tokens go: `$XDG_RUNTIME_DIR/sandbox-process` (private
/// to the user, emptied at logout), else
/// `$HOME/.local/state/sandbox-process`.
pub fn default_dir() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(runtime) = var("XDG_RUNTIME_DIR") {
        return Ok(runtime.join("sandbox-process"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".local/state/sandbox-process"));
    }
    bail!(
        "no place for a generated token: neither XDG_RUNTIME_DIR nor HOME is set. \
         Pass --token-file PATH (or --token, or set one of those variables)"
    )
}

/// A generated token's file; removed on drop if it still holds the token.
pub struct TokenFile {
    path: PathBuf,
    token: String,
}

impl TokenFile {
    /// Writes `token` to `dir/<listen address>.token`, mode 0600, in `dir`
    /// made (or found) private: mode 0700, owned by this user, no symlink.
    pub fn write(dir: &Path, listen: std::net::SocketAddr, token: &str) -> Result<TokenFile> {
        private_dir(dir)?;
        let path = dir.join(format!("{listen}.token"));
        // A file left by a server that was killed: replaced, not appended to.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the stale token file {}", path.display()));
            }
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("creating the token file {}", path.display()))?;
        // Exactly 0600, whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(format!("{token}\n").as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        Ok(TokenFile { path, token: token.to_owned() })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        // Another server may have replaced it since: leave that one's token.
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim_end() == self.token);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "removing the token file: {e}");
        }
    }
}

fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the token directory {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        bail!("the token directory {} is not a directory of this user (uid {me}): refusing to use it", dir.display());
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making the token directory {} private (0700)", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sandbox-process-token-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generated_tokens_are_long_hex_and_differ() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn token_files_are_read_with_clear_errors() {
        let dir = scratch("read");
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        assert_eq!(read_file(&file("lf", "abc\n")).unwrap(), "abc");
        assert_eq!(read_file(&file("crlf", "abc\r\n")).unwrap(), "abc");
        assert_eq!(read_file(&file("bare", "abc")).unwrap(), "abc");
        let error = |path: &Path| format!("{:#}", read_file(path).unwrap_err());
        assert!(error(&file("empty", "")).contains("is empty"));
        assert!(error(&file("newline", "\n")).contains("is empty"));
        assert!(error(&file("two", "abc\ndef\n")).contains("more than one line"));
        assert!(error(&dir.join("missing")).contains("No such file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_token_file_is_private_and_removed_on_drop() {
        let dir = scratch("write").join("sandbox-process");
        let written = TokenFile::write(&dir, "127.0.0.1:8080".parse().unwrap(), "t0k3n").unwrap();
        let path = written.path().to_owned();
        assert_eq!(path, dir.join("127.0.0.1:8080.token"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "t0k3n\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        drop(written);
        assert!(!path.exists());
        // A file another server wrote since is left alone.
        let written = TokenFile::write(&dir, "127.0.0.1:8080".parse().unwrap(), "first").unwrap();
        std::fs::write(&path, "second\n").unwrap();
        drop(written);
        assert!(path.exists());
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
