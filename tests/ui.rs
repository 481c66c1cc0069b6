//! trybuild: every `ui-tests/pass` case compiles and runs, every `ui-tests/fail` case fails
//! with exactly the diagnostics of its `.stderr` file.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui-tests/pass/*.rs");
    t.compile_fail("ui-tests/fail/*.rs");
}
