//! The opening that the crate's two command-line programs share, the
//! `healthz-probe` binary and the `serve` example: `--help` prints the help
//! and exits 0, a usage error is one line on stderr and exit code 2. Each
//! includes this file by path; it is no part of the library.

use std::process::ExitCode;

/// The options parsed from the command line (`None`: `--help` was asked
/// for), or the exit code to return at once, after printing `help` or the
/// usage error (each of its lines starting with `prefix`).
pub fn options<T>(
    parsed: Result<Option<T>, String>,
    help: &str,
    prefix: &str,
) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(options)) => Ok(options),
        Ok(None) => {
            print!("{help}");
            Err(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("{prefix}{message} (see --help)");
            Err(ExitCode::from(2))
        }
    }
}
