//! `serve`'s flags: where it listens, who gets in, how long connections
//! may take, and (shared with `exec`) the policy and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use sandbox_process_server::HttpConfig;
use sandbox_process_server::http::{ConnectionLimits, Deadlines, parse_host, parse_origin};

use super::args::HostArgs;

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
    /// The token: the one given, a new one if it is to be generated, or
    /// none. Known before the server binds, so that the policy can keep it
    /// out of children's environments whatever its source.
    pub fn token(&self) -> Result<Option<String>> {
        Ok(match self {
            TokenSource::Given(token) => Some(token.clone()),
            TokenSource::Generate(_) => Some(token::generate()?),
            TokenSource::None => None,
        })
    }

    /// Writes a generated `token` to its file, named by the address the
    /// server listens on; `None` when the token was given (or there is none).
    pub fn write_file(&self, listen: std::net::SocketAddr, token: Option<&str>) -> Result<Option<TokenFile>> {
        match (self, token) {
            (TokenSource::Generate(dir), Some(token)) => Ok(Some(TokenFile::write(dir, listen, token)?)),
            _ => Ok(None),
        }
    }
}

/// How many connections, and how long each may take.
#[derive(Args, Debug)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionArgs {
    /// A connection must send a whole request head within this time of
    /// opening, or of its first byte after an idle spell; else it is closed.
    /// (DURATION: 500ms, 10s, 2m; a bare number is seconds.)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A request body must arrive within this time of the server starting to
    /// read it; else 408 and the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after
    /// this long. A connection answering a request or sending a stream
    /// (follow, run) is not idle, however quiet the stream.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// The most connections open at once. At the limit a new connection
    /// takes the place of the one that has waited longest for a request;
    /// when every one is busy with a request, it is closed at once.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::default().max_connections as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

impl ConnectionArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            deadlines: Deadlines { header: self.header_timeout, idle: self.idle_timeout },
            max_connections: self.max_connections as usize,
        }
    }
}

/// `500ms`, `10s`, `2m`, or a bare number of seconds; more than zero.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let (number, unit_ms) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60_000)
    } else {
        (value, 1000)
    };
    let bad = || format!("`{value}` is not a duration like 500ms, 10s or 2m");
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if ms == 0 {
        return Err(format!("`{value}`: the duration must be more than zero"));
    }
    Ok(Duration::from_millis(ms))
}

/// `sandbox-process serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on. Anything but loopback needs a token given
    /// (--token-file, SANDBOX_PROCESS_TOKEN or --token).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The largest JSON request body, in bytes (413 past it).
    #[arg(long, value_name = "BYTES", default_value_t = HttpConfig::default().max_json_body)]
    pub max_body_bytes: usize,
    /// The largest body of one stdin write, in bytes (413 past it).
    #[arg(long, value_name = "BYTES", default_value_t = HttpConfig::default().max_stdin_body)]
    pub max_stdin_bytes: usize,
    /// Authentication and cross-site requests.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Connection limits and deadlines.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Policy and limits.
    #[command(flatten)]
    pub host: HostArgs,
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_duration("1h").unwrap_err().contains("not a duration"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }
}

#[cfg(test)]
mod flag_defaults {
    use clap::Parser;
    use sandbox_process::{GuestLimits, Limits};
    use sandbox_process_server::HttpConfig;
    use sandbox_process_server::http::ConnectionLimits;

    use crate::cli::args::{Cli, Command};

    /// Each default lives in the library; a flag's default that says
    /// otherwise (a duration written as text, say) is caught here.
    #[test]
    fn every_flag_default_is_the_librarys() {
        let Command::Serve(args) = Cli::try_parse_from(["sandbox-process", "serve"]).unwrap().command else {
            panic!("serve parses as serve");
        };
        let http = HttpConfig::default();
        let connections = ConnectionLimits::default();
        let limits = Limits::default();
        let guest = GuestLimits::default();
        assert_eq!(args.max_body_bytes, http.max_json_body);
        assert_eq!(args.max_stdin_bytes, http.max_stdin_body);
        assert_eq!(args.connections.body_timeout, http.body_timeout);
        assert_eq!(args.connections.limits().deadlines, connections.deadlines);
        assert_eq!(args.connections.limits().max_connections, connections.max_connections);
        assert_eq!(args.host.max_processes, None, "the default is lowered to fit: see descriptors");
        assert_eq!(args.host.capture_bytes, limits.capture_bytes);
        assert_eq!(args.host.max_line_bytes, limits.max_line_bytes);
        assert_eq!(args.host.max_retained_exited, limits.max_retained_exited);
        assert_eq!(args.host.guest.guest_limits().memory_bytes, guest.memory_bytes);
        assert_eq!(args.host.guest.guest_limits().call_budget, guest.call_budget);
    }
}
