//! The short form of the chaos harness (`benches/chaos/`), in CI: 200 bookings over NATS
//! JetStream and Redis, both private servers the harness starts on free loopback ports, one
//! orchestrator replica killed with `kill -9` mid-run and restarted; every trace id must end
//! completed, compensated or refused (0 lost, 0 half-done, 0 duplicated, 0 mismatched).
//!
//! The harness is one program, the `chaos` bench binary; this test runs it with `--short`
//! through `cargo test --bench chaos` (the debug profile, so it reuses the test build's
//! dependencies), instead of compiling a second copy of it into this test. Its tables are
//! printed as it runs. It needs `redis-server` and `nats-server` installed (not running: the
//! machine's own servers are never touched).
//!
//! ```sh
//! cargo test --test chaos -- --nocapture
//! ```

use std::process::Command;

#[test]
fn short_chaos_run_loses_nothing() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    // The facade's features this test was built with, so the nested build reuses (and does
    // not flip) the artifacts of the outer one (`--all-features` enables all of them).
    let features: Vec<&str> = [
        ("rabbitmq", cfg!(feature = "rabbitmq")),
        ("nats", cfg!(feature = "nats")),
        ("redis", cfg!(feature = "redis")),
        ("grpc", cfg!(feature = "grpc")),
        ("full", cfg!(feature = "full")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let mut command = Command::new(cargo);
    command
        .args(["test", "--bench", "chaos"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    // What cargo set for this test (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`...) must not reach
    // the nested cargo: build scripts that track them (`ring` does) would see them change
    // and rebuild half the dependency tree.
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && (key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || matches!(
                    key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                ))
        {
            command.env_remove(key);
        }
    }
    command.args(["--", "--short"]);
    // Extra harness flags, e.g. CHAOS_ARGS="--example-arg=--lease=2s --settle 90s".
    if let Ok(extra) = std::env::var("CHAOS_ARGS") {
        command.args(extra.split_whitespace());
    }
    let status = command
        .status()
        .expect("cannot run `cargo test --bench chaos` (the chaos harness)");
    assert!(
        status.success(),
        "the chaos harness failed ({status}): exit 1 means some booking was lost, half-done, \
         duplicated or mismatched (see its tables above; its logs are kept in the temp dir it \
         names), exit 2 that it could not run"
    );
}
