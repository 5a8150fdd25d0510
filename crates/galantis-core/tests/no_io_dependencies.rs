//! galantis-core is the pure domain: it must never pull in a database driver,
//! HTTP framework or HTTP client. This reads the crate manifest so a forbidden
//! dependency fails the test suite (CI also checks the full tree with `cargo tree`).

const FORBIDDEN: &[&str] = &["sqlx", "axum", "reqwest", "hyper", "tokio", "tower"];

#[test]
fn core_manifest_has_no_io_dependencies() {
    let manifest = include_str!("../Cargo.toml");
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.contains("dependencies");
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
        assert!(
            !FORBIDDEN.contains(&name),
            "galantis-core must not depend on `{name}`: it is the pure domain"
        );
    }
}
