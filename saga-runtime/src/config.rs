//! Layered configuration for services built on sagaflow (feature `config`): one model in which
//! command-line flags override environment variables, which override a TOML file, which
//! overrides the defaults, merged by [figment]; credentials given inline or by file reference
//! ([`Secret`]); and a printout of the effective configuration with every secret masked
//! ([`masked_toml`]).
//!
//! The service describes its settings once, as a [`clap::Parser`] that also derives serde's
//! `Deserialize` and `Serialize` (field names = argument ids, durations with
//! `humantime_serde`, enums with their clap value names). [`load`] parses the command line,
//! sorts every value by where clap found it (a default, an environment variable, a flag), puts
//! the TOML file named by the config argument between the defaults and the environment, and
//! extracts the result: a key missing from every layer takes serde's default.
//!
//! ```
//! use clap::Parser;
//! use saga_runtime::config::{Secret, load, masked_toml};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Parser, Serialize, Deserialize)]
//! struct Settings {
//!     /// The TOML file to read (not a setting itself).
//!     #[arg(long)]
//!     #[serde(skip)]
//!     config: Option<std::path::PathBuf>,
//!     #[arg(long, default_value_t = 4)]
//!     concurrency: usize,
//!     #[arg(long)]
//!     admin_token: Option<Secret>,
//! }
//!
//! let settings: Settings = load(["svc", "--concurrency", "8"], "config").unwrap();
//! assert_eq!(settings.concurrency, 8);
//! assert!(masked_toml(&settings).unwrap().contains("concurrency = 8"));
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::redact::{redact_url, secrets_of};

/// What the printout shows in place of a secret.
pub const MASK: &str = "***";

/// A credential (a token, a password): given inline, or by reference to a file that holds it
/// (`{ file = "/run/secrets/token" }` in TOML, `file:/run/secrets/token` in a flag or an
/// environment variable), read once when the configuration loads; surrounding whitespace is
/// trimmed. It never shows: `Debug`, `Display` and `Serialize` print [`MASK`]; only
/// [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret read from the file at `path`, trimmed; the error names the file, never its
    /// content.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        std::fs::read_to_string(path)
            .map(|content| Self(content.trim().to_string()))
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// `file:PATH` reads the file at `PATH`; anything else is the secret itself.
impl FromStr for Secret {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.strip_prefix("file:") {
            Some(path) => Self::from_file(Path::new(path)),
            None => Ok(Self::new(value)),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Inline(String),
            File { file: PathBuf },
        }
        match Given::deserialize(deserializer)? {
            Given::Inline(value) => value.parse().map_err(serde::de::Error::custom),
            Given::File { file } => Self::from_file(&file).map_err(serde::de::Error::custom),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line is wrong, or asked for `--help`/`--version`: call
    /// [`clap::Error::exit`] to print it and exit as clap does.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The config file named on the command line does not exist.
    #[error("the config file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    /// A layer holds a value of the wrong type, an unknown key, or a secret file that cannot
    /// be read; the message names the key and the layer (the file or the environment).
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        Self::Invalid(Box::new(error))
    }
}

/// Loads `C` from `args` (the program name first, as [`std::env::args_os`] gives them) and
/// the environment, in layers, each overriding the one before: clap's default values; the
/// TOML file named by the argument `config_arg` (if given; a missing file is an error);
/// environment variables (the `env` names of the arguments); flags. Keys of the file that
/// are not settings are refused when `C` denies unknown fields.
pub fn load<C, I, T>(args: I, config_arg: &str) -> Result<C, ConfigError>
where
    C: CommandFactory + FromArgMatches + DeserializeOwned,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let command = C::command();
    // The arguments' ids (not the groups clap derives from struct names).
    let ids: Vec<String> = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_string())
        .filter(|id| id != config_arg)
        .collect();
    let matches = command.try_get_matches_from(args)?;
    // Validates the command line as clap would (types, required arguments) before layering.
    C::from_arg_matches(&matches)?;
    let file: Option<PathBuf> = matches
        .try_get_one::<PathBuf>(config_arg)
        .ok()
        .flatten()
        .cloned()
        .or_else(|| {
            matches
                .try_get_one::<String>(config_arg)
                .ok()
                .flatten()
                .map(PathBuf::from)
        });
    let mut figment = Figment::new().merge(layer(&matches, &ids, ValueSource::DefaultValue));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError::MissingFile(file));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    let config = figment
        .merge(layer(&matches, &ids, ValueSource::EnvVariable))
        .merge(layer(&matches, &ids, ValueSource::CommandLine))
        // Text from flags and variables becomes a number or a boolean where the field is one.
        .extract_lossy()?;
    Ok(config)
}

/// The values of the arguments `ids` that clap found at `source`, as text (the extraction
/// reads numbers and booleans out of it where the field is one); several values make an
/// array.
fn layer(matches: &ArgMatches, ids: &[String], source: ValueSource) -> Serialized<Dict> {
    let mut dict = Dict::new();
    for id in ids {
        if matches.value_source(id) != Some(source) {
            continue;
        }
        let Ok(Some(raw)) = matches.try_get_raw(id) else {
            continue;
        };
        let mut values: Vec<Value> = raw
            .map(|text| Value::from(text.to_string_lossy().into_owned()))
            .collect();
        let value = match values.len() {
            1 => values.remove(0),
            _ => Value::from(values),
        };
        dict.insert(id.to_string(), value);
    }
    Serialized::defaults(dict)
}

/// The effective configuration `config` as TOML, every secret masked: [`Secret`]s print
/// [`MASK`], and the password (or token) of every URL is replaced by [`MASK`] too (through
/// the one redaction function, [`redact_url`]).
pub fn masked_toml<C: Serialize>(config: &C) -> Result<String, toml::ser::Error> {
    let mut value = toml::Value::try_from(config)?;
    mask_urls(&mut value);
    toml::to_string_pretty(&value)
}

fn mask_urls(value: &mut toml::Value) {
    match value {
        toml::Value::String(text) if text.contains("://") && !secrets_of(text).is_empty() => {
            *text = redact_url(text);
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask_urls),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, value)| mask_urls(value)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use figment::Jail;
    use humantime_serde::re::humantime::parse_duration;

    use super::*;

    /// A service's settings, as a service would declare them.
    #[derive(Debug, Parser, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Svc {
        #[arg(long, env = "SVC_CONFIG")]
        #[serde(default, skip_serializing)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 4, env = "SVC_CONCURRENCY")]
        concurrency: usize,
        #[arg(long, default_value = "default", env = "SVC_NAME")]
        name: String,
        #[arg(long, default_value = "default", env = "SVC_POD")]
        pod: String,
        #[arg(long, value_parser = parse_duration, default_value = "5s", env = "SVC_LEASE")]
        #[serde(with = "humantime_serde")]
        lease: Duration,
        #[arg(long, env = "SVC_TOKEN")]
        token: Option<Secret>,
        #[arg(long, default_value = "redis://127.0.0.1:6379", env = "SVC_REDIS_URL")]
        redis_url: String,
    }

    fn load_svc(args: &[&str]) -> Result<Svc, ConfigError> {
        load(std::iter::once("svc").chain(args.iter().copied()), "config")
    }

    #[test]
    fn defaults_apply_when_no_layer_sets_a_key() {
        Jail::expect_with(|_| {
            let svc = load_svc(&[]).expect("load");
            assert_eq!((svc.concurrency, svc.name.as_str()), (4, "default"));
            assert_eq!(svc.lease, Duration::from_secs(5));
            assert!(svc.token.is_none());
            Ok(())
        });
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file("token.txt", "s3cret\n")?;
            jail.create_file(
                "svc.toml",
                r#"
                    concurrency = 5
                    name = "file"
                    pod = "file"
                    lease = "7s"
                    token = { file = "token.txt" }
                "#,
            )?;
            jail.set_env("SVC_NAME", "env");
            jail.set_env("SVC_POD", "env");
            let svc = load_svc(&["--config", "svc.toml", "--pod", "123"]).expect("load");
            assert_eq!(svc.concurrency, 5, "the file over the defaults");
            assert_eq!(svc.name, "env", "the environment over the file");
            assert_eq!(
                svc.pod, "123",
                "a flag over the environment (a number-like string)"
            );
            assert_eq!(svc.lease, Duration::from_secs(7));
            assert_eq!(svc.token.as_ref().map(Secret::expose), Some("s3cret"));
            Ok(())
        });
    }

    #[test]
    fn the_config_file_can_come_from_the_environment_and_secrets_from_a_flag_file() {
        Jail::expect_with(|jail| {
            jail.create_file("token.txt", "from-flag-file")?;
            jail.create_file("svc.toml", "concurrency = 9")?;
            jail.set_env("SVC_CONFIG", "svc.toml");
            let svc = load_svc(&["--token", "file:token.txt"]).expect("load");
            assert_eq!(svc.concurrency, 9);
            assert_eq!(
                svc.token.as_ref().map(Secret::expose),
                Some("from-flag-file")
            );
            Ok(())
        });
    }

    #[test]
    fn bad_layers_are_refused_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("svc.toml", "concurency = 9")?;
            let error = load_svc(&["--config", "svc.toml"]).expect_err("unknown key");
            assert!(error.to_string().contains("concurency"), "{error}");
            jail.create_file("typed.toml", "concurrency = \"many\"")?;
            let error = load_svc(&["--config", "typed.toml"]).expect_err("wrong type");
            assert!(error.to_string().contains("concurrency"), "{error}");
            let missing = load_svc(&["--config", "absent.toml"]).expect_err("missing file");
            assert!(matches!(missing, ConfigError::MissingFile(_)), "{missing}");
            let cli = load_svc(&["--concurrency", "x"]).expect_err("bad flag");
            assert!(matches!(cli, ConfigError::Cli(_)), "{cli}");
            Ok(())
        });
    }

    #[test]
    fn the_printout_masks_every_secret() {
        Jail::expect_with(|jail| {
            jail.set_env("SVC_TOKEN", "hunter2");
            jail.set_env("SVC_REDIS_URL", "redis://app:pa55word@cache.internal:6379");
            let svc = load_svc(&[]).expect("load");
            assert_eq!(svc.token.as_ref().map(Secret::expose), Some("hunter2"));
            let printed = masked_toml(&svc).expect("print");
            assert!(
                !printed.contains("hunter2") && !printed.contains("pa55word"),
                "{printed}"
            );
            assert!(printed.contains("token = \"***\""), "{printed}");
            assert!(printed.contains("cache.internal"), "{printed}");
            assert!(printed.contains("lease = \"5s\""), "{printed}");
            Ok(())
        });
    }

    #[test]
    fn a_secret_never_shows() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        assert_eq!(serde_json::to_string(&secret).expect("json"), "\"***\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_secret_file_that_cannot_be_read_is_named_without_content() {
        let error = "file:/nonexistent/secret"
            .parse::<Secret>()
            .expect_err("no such file");
        assert!(error.contains("/nonexistent/secret"), "{error}");
    }
}
