//! The booking example's settings: a TOML file under the environment and the flags, secrets by
//! file reference, and `--print-config` masking them. (The environment layer itself is tested
//! with the library helper, `sagaflow::config`, which isolates variables per test.)

use std::path::PathBuf;
use std::time::Duration;

use booking::app::{StoreKind, TransportKind};
use booking::{ConfigError, Options};

/// A directory of its own for one test's files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("booking-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_config_file_sets_what_the_flags_do_not() {
    let scratch = Scratch::new("layers");
    let token = scratch.file("admin-token", "t0ps3cret\n");
    let config = scratch.file(
        "booking.toml",
        &format!(
            r#"
                transport = "nats"
                store = "redis"
                redis_url = "redis://app:pa55word@cache.internal:6379"
                concurrency = 16
                lease = "10s"
                max_requeue_after = "2m"
                admin_token = {{ file = "{token}" }}
            "#
        ),
    );
    let options =
        Options::load_from(["booking", "--config", &config, "--concurrency", "32"]).expect("load");
    assert_eq!(options.transport, TransportKind::Nats, "from the file");
    assert_eq!(options.store, StoreKind::Redis, "from the file");
    assert_eq!(options.concurrency, 32, "the flag over the file");
    assert_eq!(options.lease, Duration::from_secs(10), "from the file");
    assert_eq!(
        options.max_requeue_after,
        Some(Duration::from_secs(120)),
        "from the file"
    );
    assert_eq!(
        options.sweep_interval,
        Duration::from_secs(1),
        "the default"
    );
    assert_eq!(
        options.admin_token.as_ref().map(|t| t.expose()),
        Some("t0ps3cret"),
        "read from the file the config names, trimmed"
    );

    let printed = options.printout();
    assert!(
        !printed.contains("t0ps3cret") && !printed.contains("pa55word"),
        "{printed}"
    );
    assert!(printed.contains("admin_token = \"***\""), "{printed}");
    assert!(
        printed.contains("redis://app:***@cache.internal:6379"),
        "{printed}"
    );
    assert!(printed.contains("concurrency = 32"), "{printed}");
    // What it prints reads back as the same settings.
    let again = scratch.file("printed.toml", &printed.replace("\"***\"", "\"t0ps3cret\""));
    let reread = Options::load_from(["booking", "--config", &again]).expect("reload");
    assert_eq!(reread.concurrency, 32);
    assert_eq!(reread.lease, Duration::from_secs(10));
    assert_eq!(reread.max_requeue_after, Some(Duration::from_secs(120)));
    let flagged = Options::load_from(["booking", "--max-requeue-after", "90s"]).expect("flag");
    assert_eq!(flagged.max_requeue_after, Some(Duration::from_secs(90)));
    let unset = Options::load_from(["booking"]).expect("defaults");
    assert_eq!(
        unset.max_requeue_after, None,
        "8 x requeue_after, by the library"
    );
}

#[test]
fn a_bad_config_file_is_refused_naming_the_key() {
    let scratch = Scratch::new("bad");
    let config = scratch.file("booking.toml", "transport = \"kafka\"\n");
    let error = Options::load_from(["booking", "--config", &config]).expect_err("bad value");
    assert!(matches!(error, ConfigError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("transport"), "{error}");
    let missing = Options::load_from(["booking", "--config", "/nonexistent/booking.toml"])
        .expect_err("missing file");
    assert!(
        missing.to_string().contains("/nonexistent/booking.toml"),
        "{missing}"
    );
}
