//! The binary's configuration front door: braft's variables and aliases, flags and a
//! TOML file; a bad value exits with code 2 and names the variable and what is allowed.

use std::process::Command;

fn braft(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_braft"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run braft");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A bad value through an alias, a long name, a flag or the config file: exit code 2 and
/// a message naming where it came from and what is allowed.
#[test]
fn invalid_configuration_exits_2_naming_the_variable() {
    let (code, err) = braft(&["serve"], &[("BRP", "abc")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("BRP") && err.contains("1..65535"), "{err}");

    let (code, err) = braft(&["serve"], &[("BRAFT_ELECTION_TIMEOUT_MS", "10")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("BRAFT_ELECTION_TIMEOUT_MS"), "{err}");

    let (code, err) = braft(&["serve", "--codec", "yaml"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--codec") && err.contains("msgpack"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("braft.toml");
    std::fs::write(&file, "rport = 15000\nbogus = 1\n").unwrap();
    let (code, err) = braft(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bogus"), "{err}");

    let (code, err) = braft(&["serve"], &[("BRAFT_DISCOVERY", "static:a:1,b:notaport")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("BRAFT_DISCOVERY"), "{err}");
}

/// Every setting has a flag twin, and the help shows braft's names and aliases.
#[test]
fn help_lists_every_variable_with_its_alias() {
    let out = Command::new(env!("CARGO_BIN_EXE_braft"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in braft::config::SETTINGS {
        assert!(
            help.contains(&format!("--{}", s.key.replace('_', "-"))),
            "no flag for {}",
            s.env
        );
        assert!(help.contains(s.env), "help does not name {}", s.env);
        if let Some(a) = s.alias {
            assert!(help.contains(a), "help does not name alias {a}");
        }
    }
}
