//! Where the result store is: a SQLite file, or a PostgreSQL database named by a URL
//! (`postgres://user@host:port/db`). A URL's password, a password file (`passfile=` in the URL,
//! `PGPASSFILE`, `~/.pgpass`) or `PGPASSWORD` supply the credentials, and `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGDATABASE` fill what the URL leaves out, as libpq does. The password is never part
//! of what is displayed or recorded: [`Location::display`] and [`redact`] drop it.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(Box<PgTarget>),
}

#[derive(Debug, Clone)]
pub struct PgTarget {
    pub config: postgres::Config,
    /// The URL as given, password included: handed to a worker's child in its environment,
    /// never displayed or stored.
    url: String,
    /// `postgres://user@host:port/db`, without the password.
    pub display: String,
}

impl Location {
    /// `--db` as given: a `postgres://` or `postgresql://` URL, else a file path.
    pub fn parse(text: &Path) -> Result<Location> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Location::parse_with(text, &env)
    }

    /// [`Location::parse`] with the PG* environment given (tests pass their own).
    pub fn parse_with(text: &Path, env: &HashMap<String, String>) -> Result<Location> {
        match text.to_str() {
            Some(url) if is_url(url) => {
                Ok(Location::Postgres(Box::new(PgTarget::parse(url, env)?)))
            }
            _ => Ok(Location::Sqlite(text.to_path_buf())),
        }
    }

    /// What `--db` (or `BAKEOFF_DB`) must say to open this store again, password included.
    pub fn to_db_arg(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(target) => target.url.clone(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// The path of a SQLite store, the password-less URL of a PostgreSQL one.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(target) => target.display.clone(),
        }
    }

    /// Where the runs' local files (engine logs) go: `NAME.runs/` beside a SQLite file; for a
    /// PostgreSQL store, a folder per server and database under the local data directory (logs
    /// stay on the host that made them; their excerpts are in the store).
    pub fn runs_dir(&self) -> PathBuf {
        match self {
            Location::Sqlite(path) => crate::system::paths::runs_dir(path),
            Location::Postgres(target) => {
                let name: String = target
                    .display
                    .trim_start_matches("postgres://")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let data = crate::system::paths::default_db();
                data.with_file_name("postgres").join(format!("{name}.runs"))
            }
        }
    }
}

pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

impl PgTarget {
    fn parse(url: &str, env: &HashMap<String, String>) -> Result<PgTarget> {
        let shown = redact(url);
        let bad = |why: String| {
            Error::input(format!("--db {shown}: {why}")).with_hint(
                "the form is postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?passfile=FILE]",
            )
        };
        // `passfile` is libpq's; the client library does not know it, so it is taken out here.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut passfile = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("passfile", file)) => passfile = Some(PathBuf::from(file)),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: postgres::Config = rebuilt.parse().map_err(|e| bad(format!("{e}")))?;
        if config.get_hosts().is_empty() {
            match env.get("PGHOST").filter(|h| !h.is_empty()) {
                Some(host) => config.host(host),
                None if Path::new("/var/run/postgresql").is_dir() => {
                    config.host("/var/run/postgresql")
                }
                None => config.host("localhost"),
            };
        }
        if config.get_ports().is_empty() {
            if let Some(port) = env.get("PGPORT").filter(|p| !p.is_empty()) {
                let port = port
                    .parse()
                    .map_err(|_| bad(format!("PGPORT={port} is not a port number")))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env
                .get("PGUSER")
                .or_else(|| env.get("USER"))
                .cloned()
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = env
                .get("PGDATABASE")
                .cloned()
                .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_string());
            config.dbname(&db);
        }
        if config.get_password().is_none() {
            let password = env.get("PGPASSWORD").cloned().or_else(|| {
                let file = passfile
                    .clone()
                    .or_else(|| env.get("PGPASSFILE").map(PathBuf::from))
                    .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".pgpass")))?;
                password_from_file(&file, &config)
            });
            if let Some(password) = password {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("bakeoff");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let display = display_of(&config);
        Ok(PgTarget {
            config,
            url: url.to_string(),
            display,
        })
    }
}

fn display_of(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "postgres://{}@{host}{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// The password of a `~/.pgpass`-format file (`host:port:database:user:password`, `*` matching
/// anything, `\:` an escaped colon) for this connection.
fn password_from_file(file: &Path, config: &postgres::Config) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first()? {
        postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        postgres::config::Host::Unix(_) => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().unwrap().extend(chars.next()),
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// Text with the password of every `postgres://user:password@` URL in it replaced by `***`
/// (a command line, an error message).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn target(url: &str, env: &HashMap<String, String>) -> PgTarget {
        match Location::parse_with(Path::new(url), env).unwrap() {
            Location::Postgres(t) => *t,
            other => panic!("not a URL: {other:?}"),
        }
    }

    #[test]
    fn a_path_is_sqlite_and_a_url_postgres() {
        let none = env(&[]);
        let file = Location::parse_with(Path::new("/tmp/a.db"), &none).unwrap();
        assert!(!file.is_postgres());
        assert_eq!(file.runs_dir(), PathBuf::from("/tmp/a.runs"));
        let t = target("postgres://ann:secret@db.lan:6543/team", &none);
        assert_eq!(t.display, "postgres://ann@db.lan:6543/team");
        assert_eq!(t.config.get_password(), Some(&b"secret"[..]));
    }

    #[test]
    fn pg_environment_fills_what_the_url_leaves_out() {
        let vars = env(&[
            ("PGHOST", "h"),
            ("PGPORT", "7000"),
            ("PGUSER", "u"),
            ("PGDATABASE", "d"),
            ("PGPASSWORD", "p"),
        ]);
        let t = target("postgres://", &vars);
        assert_eq!(t.display, "postgres://u@h:7000/d");
        assert_eq!(t.config.get_password(), Some(&b"p"[..]));
        let bad = Location::parse_with(Path::new("postgres://"), &env(&[("PGPORT", "x")]));
        assert!(bad.unwrap_err().to_string().contains("PGPORT=x"));
    }

    #[test]
    fn a_password_file_supplies_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:no\ndb.lan:6543:team:ann:s\\:cret\n",
        )
        .unwrap();
        let url = format!(
            "postgres://ann@db.lan:6543/team?passfile={}",
            file.display()
        );
        let t = target(&url, &env(&[]));
        assert_eq!(t.config.get_password(), Some(&b"s:cret"[..]));
        let via_env = target(
            "postgres://ann@db.lan:6543/team",
            &env(&[("PGPASSFILE", file.to_str().unwrap())]),
        );
        assert_eq!(via_env.config.get_password(), Some(&b"s:cret"[..]));
        assert!(!via_env.display.contains("cret"));
    }

    #[test]
    fn redact_hides_passwords_and_keeps_the_rest() {
        assert_eq!(
            redact("bakeoff bench --db postgres://ann:secret@h:5/db -m x.gguf"),
            "bakeoff bench --db postgres://ann:***@h:5/db -m x.gguf"
        );
        assert_eq!(redact("postgres://ann@h/db"), "postgres://ann@h/db");
        assert_eq!(
            redact("http://127.0.0.1:8080/v1"),
            "http://127.0.0.1:8080/v1"
        );
        let bad = Location::parse_with(Path::new("postgres://ann:secret@h:notaport/db"), &env(&[]));
        let message = bad.unwrap_err().to_string();
        assert!(!message.contains("secret"), "{message}");
    }
}
