//! The shipped deployment files, checked without a cluster: the Kubernetes manifests
//! against the Kubernetes schemas (`kubernetes-validate --strict`, from PyPI, installed
//! into target/pyenv by scripts/py-env.sh; with BRAFT_REQUIRE_PY=1 a missing tool is a
//! failure, not a skip), and their Prometheus scrape annotations against the port and
//! path nodes serve `/metrics` on.

use std::path::Path;

fn manifest() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/braft.yaml")
}

/// Every resource in deploy/k8s/braft.yaml is valid for Kubernetes 1.37, strictly (no
/// unknown fields); a broken copy is caught, so the check can fail.
#[test]
fn k8s_manifests_validate_against_the_schemas() {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/kubernetes-validate");
    if !tool.exists() {
        assert!(
            std::env::var_os("BRAFT_REQUIRE_PY").is_none(),
            "BRAFT_REQUIRE_PY is set but {} is missing (run scripts/py-env.sh)",
            tool.display()
        );
        eprintln!("skipping: no {} (run scripts/py-env.sh)", tool.display());
        return;
    }
    let run = |file: &Path| {
        std::process::Command::new(&tool)
            .args(["--strict", "-k", "1.37.0"])
            .arg(file)
            .output()
            .expect("run kubernetes-validate")
    };
    let out = run(&manifest());
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for kind in [
        "statefulset/braft",
        "service/braft-headless",
        "poddisruptionbudget/braft",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind} not checked: {text}"
        );
    }

    // The same manifest with a misspelt field fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let yaml = std::fs::read_to_string(manifest()).unwrap();
    assert!(yaml.contains("serviceName:"));
    std::fs::write(&broken, yaml.replacen("serviceName:", "servicName:", 1)).unwrap();
    assert!(!run(&broken).status.success(), "a misspelt field passed validation");
}

/// Prometheus scrapes the pods where nodes serve metrics: the HTTP port, `/metrics`.
#[test]
fn k8s_scrape_annotations_point_at_metrics() {
    let yaml = std::fs::read_to_string(manifest()).unwrap();
    assert!(yaml.contains("prometheus.io/scrape: \"true\""));
    assert!(yaml.contains("prometheus.io/path: \"/metrics\""));
    let port = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("prometheus.io/port: "))
        .expect("a port annotation")
        .trim_matches('"');
    // The pods' HTTP port: BRAFT_HPORT's value in the same manifest.
    let lines: Vec<&str> = yaml.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("name: BRAFT_HPORT"))
        .expect("BRAFT_HPORT set");
    let hport = lines[at + 1].trim().trim_start_matches("value: ").trim_matches('"');
    assert_eq!(port, hport);
}
