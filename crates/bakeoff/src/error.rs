//! The library's error type. Every variant renders as one line naming the file, field, flag or
//! position at fault; [`Error::hint`] adds an optional second line telling the user what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The user gave us something we cannot use (a flag value, a config file, a model file).
    #[error("{message}")]
    Input {
        message: String,
        hint: Option<String>,
    },

    /// An engine could not be found, started, or kept running.
    #[error("{message}")]
    Engine {
        message: String,
        hint: Option<String>,
    },

    /// An HTTP exchange with an engine failed or returned something unexpected.
    #[error("{url}: {message}")]
    Http { url: String, message: String },

    /// The result store could not be opened or written (the source is the database driver's
    /// error, boxed so that only `store` names the driver).
    #[error("database {}: {source}", path.display())]
    Store {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Another measuring bakeoff command holds the machine-wide lock.
    #[error("{message}")]
    Locked { message: String },

    /// A GGUF file is malformed; the message names the offset and field.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn input(message: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            hint: None,
        }
    }

    pub fn engine(message: impl Into<String>) -> Self {
        Error::Engine {
            message: message.into(),
            hint: None,
        }
    }

    pub fn http(url: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Http {
            url: url.into(),
            message: message.into(),
        }
    }

    /// Attach a `hint:` line to an input or engine error (other kinds keep theirs).
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            Error::Input { message, .. } => Error::Input {
                message,
                hint: Some(hint.into()),
            },
            Error::Engine { message, .. } => Error::Engine {
                message,
                hint: Some(hint.into()),
            },
            other => other,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Input { hint, .. } | Error::Engine { hint, .. } => hint.clone(),
            Error::Locked { .. } => Some(
                "wait for it to finish, or stop it; only one measuring command runs per machine"
                    .into(),
            ),
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the path".into())
            }
            _ => None,
        }
    }

    /// Exit code: 2 for bad input, 3 when the machine is busy, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. } | Error::Gguf(_) => 2,
            Error::Locked { .. } => 3,
            _ => 1,
        }
    }
}

/// A malformed GGUF file: the byte offset and the field being read (`formats::gguf` raises it).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufError {
    pub path: Option<PathBuf>,
    pub offset: u64,
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for GgufError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        write!(
            f,
            "malformed GGUF at byte {} ({}): {}",
            self.offset, self.field, self.reason
        )
    }
}

impl std::error::Error for GgufError {}
