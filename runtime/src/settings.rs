//! Settings of every Hearth binary: each one a clap flag and a `HEARTH_*`
//! environment variable (`#[arg(long, env = "HEARTH_…")]`), so `--help`
//! lists them all with their defaults. On top of what clap does:
//!
//! - a setting `NAME` can be read from the file named by `NAME_FILE` (how
//!   Kubernetes mounts Secrets); a value of `NAME` itself wins; a command
//!   with a setting of its own called `NAME_FILE` reads that file itself;
//! - an error names the setting's variable as well as its flag, since most
//!   settings come from the environment.

use std::ffi::OsString;

use clap::{error::ErrorKind, Parser};

/// Parses `T` from the process's arguments and environment; on an error or
/// `--help`/`--version` prints clap's message and exits, like [`Parser::parse`].
pub fn parse<T: Parser>() -> T {
    try_parse_from(std::env::args_os(), |name| std::env::var(name).ok())
        .unwrap_or_else(|e| e.exit())
}

/// Parses `T` from `args` (the first is the program's name) and the
/// environment as `env` answers it. A flag wins over its variable.
pub fn try_parse_from<T: Parser>(
    args: impl IntoIterator<Item = impl Into<OsString>>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, clap::Error> {
    // Why through arguments: clap reads variables only from the process
    // environment, and `_FILE` and tests need another source. Given first, a
    // flag on the command line overrides them (`args_override_self`). clap
    // still reads the process environment too, which agrees in production
    // and keeps `[env: …]` in `--help`.
    let command = T::command().args_override_self(true);
    let mut args = args.into_iter().map(Into::into);
    let mut argv: Vec<OsString> = args.next().into_iter().collect();
    let own = |name: &str| {
        command
            .get_arguments()
            .any(|a| a.get_env().is_some_and(|e| e == name))
    };
    for arg in command.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let value = if own(&format!("{name}_FILE")) {
            env(&name).filter(|v| !v.is_empty())
        } else {
            value_of(&name, &env)?
        };
        if let Some(value) = value {
            argv.push(format!("--{long}={value}").into());
        }
    }
    argv.extend(args);
    let mut command = command;
    let matches = command
        .try_get_matches_from_mut(argv)
        .map_err(|e| name_the_setting(e, &T::command()))?;
    T::from_arg_matches(&matches).map_err(|e| name_the_setting(e, &T::command()))
}

/// The value of setting `name`: the variable, else the file named by `NAME_FILE`.
fn value_of(
    name: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, clap::Error> {
    if let Some(v) = env(name).filter(|v| !v.is_empty()) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    let Some(path) = env(&file_var).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    std::fs::read_to_string(&path)
        .map(|s| Some(s.trim().to_owned()))
        .map_err(|e| {
            clap::Error::raw(
                ErrorKind::Io,
                format!("{file_var}={path:?}: cannot read the file named by {file_var}: {e}\n"),
            )
        })
}

/// Puts the variable of the setting at fault in front of clap's message.
fn name_the_setting(error: clap::Error, command: &clap::Command) -> clap::Error {
    let kind = error.kind();
    if !matches!(kind, ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return error;
    }
    let Some(clap::error::ContextValue::String(flag)) =
        error.get(clap::error::ContextKind::InvalidArg)
    else {
        return error;
    };
    let Some(name) = command.get_arguments().find_map(|a| {
        let long = a.get_long()?;
        let at_fault = flag == &format!("--{long}") || flag.starts_with(&format!("--{long} "));
        at_fault
            .then(|| a.get_env())?
            .map(|e| e.to_string_lossy().into_owned())
    }) else {
        return error;
    };
    let message = error.render().to_string();
    let message = message.trim_start_matches("error: ");
    clap::Error::raw(kind, format!("{name}: {message}"))
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::SocketAddr};

    use clap::CommandFactory as _;

    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "demo", version)]
    struct Cli {
        /// Where to listen.
        #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A secret.
        #[arg(long, env = "DEMO_PASSWORD")]
        password: Option<String>,
    }

    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Cli, clap::Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        try_parse_from(std::iter::once("demo").chain(args.iter().copied()), |n| {
            vars.get(n).cloned()
        })
    }

    #[test]
    fn defaults_then_variables_then_flags() {
        assert_eq!(parse(&[], &[]).unwrap().listen.port(), 8080);
        let from_env = parse(&[], &[("DEMO_LISTEN", "127.0.0.1:1")]).unwrap();
        assert_eq!(from_env.listen.port(), 1);
        let flag_wins = parse(
            &["--listen", "127.0.0.1:2"],
            &[("DEMO_LISTEN", "127.0.0.1:1")],
        );
        assert_eq!(flag_wins.unwrap().listen.port(), 2);
    }

    #[test]
    fn a_secret_can_come_from_a_file_and_a_missing_file_is_named() {
        let path = std::env::temp_dir().join(format!("hearth-runtime-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let cli = parse(&[], &[("DEMO_PASSWORD_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(cli.password.as_deref(), Some("s3cret"));
        std::fs::remove_file(&path).unwrap();
        let e = parse(&[], &[("DEMO_PASSWORD_FILE", "/nonexistent/x")]).unwrap_err();
        assert!(e.to_string().contains("DEMO_PASSWORD_FILE"), "{e}");
    }

    #[test]
    fn a_setting_of_the_commands_own_named_like_a_file_is_left_to_it() {
        #[derive(Debug, Parser)]
        struct Own {
            #[arg(long, env = "OWN_PASSWORD")]
            password: Option<String>,
            #[arg(long, env = "OWN_PASSWORD_FILE")]
            password_file: Option<String>,
        }
        let own: Own = try_parse_from(["own"], |n| {
            (n == "OWN_PASSWORD_FILE").then(|| "/nonexistent/p".to_owned())
        })
        .unwrap();
        assert_eq!(own.password, None);
        assert_eq!(own.password_file.as_deref(), Some("/nonexistent/p"));
    }

    #[test]
    fn an_invalid_value_names_the_variable() {
        let e = parse(&[], &[("DEMO_LISTEN", "localhost")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("DEMO_LISTEN: "), "{e}");
        assert!(e.to_string().contains("localhost"), "{e}");
    }

    #[test]
    fn help_lists_every_setting_with_its_variable_and_default() {
        let e = parse(&["--help"], &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
        let help = Cli::command().render_long_help().to_string();
        for needle in ["--listen", "DEMO_LISTEN", "127.0.0.1:8080", "--password"] {
            assert!(help.contains(needle), "{needle} missing in\n{help}");
        }
        let e = parse(&["--version"], &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayVersion);
    }
}
