//! `serve`'s flags for who gets in.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use sandbox_process::http::{parse_host, parse_origin};

use super::token::{self, TokenFile};

/// Who may use the server.
#[derive(Args, Debug)]
#[command(next_help_heading = "Authentication")]
pub struct AuthArgs {
    /// The bearer token every request must carry (`Authorization: Bearer
    /// TOKEN`). On the command line it is visible to every local user (the
    /// process list): prefer the environment variable or --token-file.
    #[arg(long, env = "SANDBOX_PROCESS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from FILE (the whole file; one trailing newline
    /// is ignored).
    ///
    /// Without --token or --token-file a server on loopback generates a
    /// token (256 bits from the OS) and writes it to
    /// $XDG_RUNTIME_DIR/sandbox-process/ADDR.token, else
    /// $HOME/.local/state/sandbox-process/ADDR.token (ADDR: the listen
    /// address, e.g. 127.0.0.1:8080), mode 0600 in a 0700 directory; the
    /// log says where; the file is removed when the server stops.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve WITHOUT ANY AUTHENTICATION: every local user and program that
    /// can connect can run commands as this user. Loopback only; requests
    /// must name the listen address, localhost, 127.0.0.1 or [::1] (or an
    /// --allow-host) in `Host`.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Let requests with this `Origin` header in (e.g.
    /// http://localhost:3000); repeatable. Any other `Origin` is refused
    /// (403), whatever the authentication: browsers send it on cross-site
    /// requests, API clients don't. No CORS headers are sent.
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    pub allow_origins: Vec<String>,
    /// With --insecure-no-auth, also answer requests whose `Host` names
    /// NAME (no port); repeatable. Other names are refused (403): that is
    /// what stops DNS rebinding. With a token there is no `Host` check.
    #[arg(long = "allow-host", value_name = "NAME", value_parser = parse_host, requires = "insecure_no_auth")]
    pub allow_hosts: Vec<String>,
}

/// Where the server's token comes from.
pub enum TokenSource {
    /// --token, SANDBOX_PROCESS_TOKEN or --token-file.
    Given(String),
    /// Generated once the listen address is known, into this directory.
    Generate(PathBuf),
    /// --insecure-no-auth.
    None,
}

impl AuthArgs {
    /// Decides where the token comes from; every conflict is an error.
    pub fn token_source(&self) -> Result<TokenSource> {
        let given = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => bail!("both a token (--token or SANDBOX_PROCESS_TOKEN) and --token-file: give one"),
            (Some(t), None) if t.is_empty() => bail!(
                "the token (--token or SANDBOX_PROCESS_TOKEN) is empty: give one, or leave both unset to have \
                 one generated"
            ),
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(token::read_file(path)?),
            (None, None) => None,
        };
        match (given, self.insecure_no_auth) {
            (Some(_), true) => bail!("--insecure-no-auth and a token (--token, SANDBOX_PROCESS_TOKEN, --token-file)"),
            (Some(token), false) => Ok(TokenSource::Given(token)),
            (None, true) => Ok(TokenSource::None),
            (None, false) => Ok(TokenSource::Generate(token::default_dir()?)),
        }
    }
}

impl TokenSource {
    /// The token, generating and writing it for `listen` if it is to be.
    pub fn resolve(self, listen: std::net::SocketAddr) -> Result<(Option<String>, Option<TokenFile>)> {
        Ok(match self {
            TokenSource::Given(token) => (Some(token), None),
            TokenSource::None => (None, None),
            TokenSource::Generate(dir) => {
                let token = token::generate()?;
                let file = TokenFile::write(&dir, listen, &token)?;
                (Some(token), Some(file))
            }
        })
    }
}
