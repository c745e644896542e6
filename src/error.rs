//! The library's error type. Every recoverable failure says what was wrong
//! and where; `main.rs` maps [`Error::exit_code`] to the process exit status.

use std::path::PathBuf;

/// Errors returned by the gradfree library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter matched the request.
    #[error(
        "no GPU adapter found{detail}. Install a Vulkan driver (on Debian: `apt-get install -y mesa-vulkan-drivers libvulkan1` gives the lavapipe software adapter), or use the CPU backend"
    )]
    NoAdapter {
        /// What was asked for (backend, name filter).
        detail: String,
    },
    /// The adapter exists but a device could not be opened on it.
    #[error("could not open a device on adapter '{adapter}': {reason}")]
    DeviceRequest {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// f64 was asked for on an adapter without SHADER_F64.
    #[error(
        "adapter '{adapter}' has no f64 shader support (SHADER_F64); use f32 precision or the CPU backend"
    )]
    NoF64 {
        /// Adapter name.
        adapter: String,
    },
    /// A WGSL shader failed to compile or a pipeline failed validation.
    #[error("shader '{kernel}' failed: {reason}")]
    Shader {
        /// Kernel name.
        kernel: String,
        /// Validation message.
        reason: String,
    },
    /// A GPU operation failed at run time (out of memory, validation, map failure).
    #[error("GPU error in {during}: {reason}")]
    Gpu {
        /// What was being done.
        during: String,
        /// wgpu's reason.
        reason: String,
    },
    /// A request exceeds an adapter limit and cannot be split.
    #[error("{what} needs {needed} but the adapter allows {limit}")]
    Limit {
        /// What hit the limit.
        what: String,
        /// Amount needed.
        needed: u64,
        /// Adapter limit.
        limit: u64,
    },
    /// Bad user input: wrong shapes, invalid values, impossible settings.
    #[error("invalid input: {0}")]
    Input(String),
    /// Malformed data file, with location ("file:line: reason", or
    /// "file: reason" for line 0).
    #[error("{path}{}: {reason}", at_line(.line))]
    Parse {
        /// File.
        path: PathBuf,
        /// 1-based line number (0 when not line-oriented).
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// Filesystem failure.
    #[error("{path}: {error}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Underlying error (in the message, not repeated as a cause).
        error: std::io::Error,
    },
    /// A figure could not be drawn or encoded.
    #[error("could not draw {what}: {reason}")]
    Figure {
        /// What was being drawn.
        what: String,
        /// Why not.
        reason: String,
    },
    /// A numerical failure that is not the user's input (e.g. a singular system).
    #[error("numerical failure: {0}")]
    Numeric(String),
    /// The caller asked the run to stop (see `train::with_stop_flag`).
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Process exit code for this error: 2 for bad usage or input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) | Error::Parse { .. } | Error::NoF64 { .. } => 2,
            _ => 1,
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}

/// ":N" for line N, nothing for line 0 (not line-oriented).
fn at_line(line: &usize) -> String {
    match line {
        0 => String::new(),
        n => format!(":{n}"),
    }
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
