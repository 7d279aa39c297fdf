//! The checker is itself checked: against a brute-force search on thousands of random
//! small histories (they must agree on every one), and on hand-written histories with
//! known anomalies, which must be flagged.

use braft_lincheck::register::{Input, Output, Register};
use braft_lincheck::{check, Model, Operation, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Op = Operation<Input, Output>;

fn read(client: u64, key: &str, call: u64, ret: u64, v: Option<&str>) -> Op {
    Operation {
        client,
        input: Input::Read { key: key.into() },
        call,
        output: Some((Output::Value(v.map(str::to_string)), ret)),
    }
}

fn write(client: u64, key: &str, call: u64, ret: Option<u64>, v: &str) -> Op {
    Operation {
        client,
        input: Input::Write {
            key: key.into(),
            value: v.into(),
        },
        call,
        output: ret.map(|t| (Output::Ok, t)),
    }
}

fn cas(client: u64, call: u64, ret: u64, expect: Option<&str>, v: &str, ok: bool) -> Op {
    Operation {
        client,
        input: Input::CasValue {
            key: "x".into(),
            expect: expect.map(str::to_string),
            value: v.into(),
        },
        call,
        output: Some((if ok { Output::Ok } else { Output::CompareFailed }, ret)),
    }
}

/// Linearizable by exhaustive search: some subset of the indeterminate operations plus
/// all determinate ones, in some order that respects real time, is a legal run.
fn brute_force<M: Model>(model: &M, h: &[Operation<M::Input, M::Output>]) -> bool {
    fn search<M: Model>(
        model: &M,
        h: &[Operation<M::Input, M::Output>],
        done: &mut Vec<bool>,
        state: &M::State,
    ) -> bool {
        if h.iter().zip(done.iter()).all(|(op, d)| *d || op.is_indeterminate()) {
            return true;
        }
        for i in 0..h.len() {
            if done[i] {
                continue;
            }
            // i may go next only if no pending operation returned before i was invoked.
            let blocked =
                (0..h.len()).any(|j| !done[j] && j != i && h[j].output.as_ref().is_some_and(|(_, t)| *t < h[i].call));
            if blocked {
                continue;
            }
            let out = h[i].output.as_ref().map(|(o, _)| o);
            if let Some(next) = model.step(state, &h[i].input, out) {
                done[i] = true;
                if search(model, h, done, &next) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    let mut done = vec![false; h.len()];
    search(model, h, &mut done, &model.init())
}

fn random_history(rng: &mut StdRng) -> Vec<Op> {
    let n = rng.random_range(1..=7);
    let values = ["a", "b", "c"];
    let mut h = Vec::new();
    for i in 0..n {
        let call = rng.random_range(0..20u64);
        let ret = call + rng.random_range(0..8u64);
        let indeterminate = rng.random_bool(0.15);
        let v = values[rng.random_range(0..3)];
        let op = match rng.random_range(0..3) {
            0 => {
                let seen = if rng.random_bool(0.3) {
                    None
                } else {
                    Some(values[rng.random_range(0..3)])
                };
                read(i, "x", call, ret, seen)
            }
            1 => write(i, "x", call, (!indeterminate).then_some(ret), v),
            _ => {
                let expect = if rng.random_bool(0.3) {
                    None
                } else {
                    Some(values[rng.random_range(0..3)])
                };
                let mut op = cas(i, call, ret, expect, v, rng.random_bool(0.5));
                if indeterminate {
                    op.output = None;
                }
                op
            }
        };
        h.push(op);
    }
    h
}

/// The checker and the brute force agree on 20,000 random histories of up to seven
/// operations (reads, writes, CAS, some indeterminate), and both verdicts occur.
#[test]
fn agrees_with_brute_force_on_random_histories() {
    let mut rng = StdRng::seed_from_u64(0xb4af7);
    let (mut yes, mut no) = (0, 0);
    for round in 0..20_000 {
        let h = random_history(&mut rng);
        let fast = check(&Register, &h) == Verdict::Linearizable;
        let slow = brute_force(&Register, &h);
        assert_eq!(
            fast, slow,
            "round {round}: checker says {fast}, brute force says {slow}: {h:#?}"
        );
        if fast {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 1_000 && no > 1_000, "a useful mix: {yes} linearizable, {no} not");
}

/// A stale read: after a write of b completed, a later read returns the old a.
#[test]
fn flags_a_stale_read() {
    let h = vec![
        write(1, "x", 0, Some(1), "a"),
        write(1, "x", 2, Some(3), "b"),
        read(2, "x", 4, 5, Some("a")),
    ];
    let Verdict::Violation(e) = check(&Register, &h) else {
        panic!("stale read not flagged");
    };
    assert_eq!(e.partition, "x");
    assert!(e.stuck.contains(&2), "the stale read is named: {e}");
    assert!(e.text.contains("Read"), "{e}");
}

/// A lost write: a write of b was acknowledged, yet every later read sees a.
#[test]
fn flags_a_lost_write() {
    let h = vec![
        write(1, "x", 0, Some(1), "a"),
        write(2, "x", 2, Some(3), "b"),
        read(3, "x", 10, 11, Some("a")),
        read(3, "x", 12, 13, Some("a")),
    ];
    assert!(matches!(check(&Register, &h), Verdict::Violation(_)));
}

/// A compare-and-set that succeeded twice from the same expected value.
#[test]
fn flags_a_cas_that_succeeded_twice() {
    let h = vec![
        write(1, "x", 0, Some(1), "a"),
        cas(2, 2, 5, Some("a"), "b", true),
        cas(3, 3, 6, Some("a"), "c", true),
    ];
    assert!(matches!(check(&Register, &h), Verdict::Violation(_)));
}

/// Indeterminate operations may take effect late, or never.
#[test]
fn indeterminate_writes_may_apply_late_or_never() {
    // Applied long after its invocation, seen by a later read.
    let late = vec![
        write(1, "x", 0, None, "a"),
        read(2, "x", 50, 51, None),
        read(2, "x", 60, 61, Some("a")),
    ];
    assert_eq!(check(&Register, &late), Verdict::Linearizable);
    // Never applied.
    let never = vec![write(1, "x", 0, None, "a"), read(2, "x", 50, 51, None)];
    assert_eq!(check(&Register, &never), Verdict::Linearizable);
    // But not before it was invoked.
    let early = vec![read(2, "x", 0, 1, Some("a")), write(1, "x", 5, None, "a")];
    assert!(matches!(check(&Register, &early), Verdict::Violation(_)));
}

/// Keys are checked independently, and a violation names its key.
#[test]
fn keys_are_independent() {
    let h = vec![
        write(1, "x", 0, Some(1), "a"),
        write(1, "y", 0, Some(1), "b"),
        read(2, "y", 2, 3, Some("b")),
        read(2, "x", 2, 3, Some("b")),
    ];
    let Verdict::Violation(e) = check(&Register, &h) else {
        panic!("cross-key read not flagged");
    };
    assert_eq!(e.partition, "x");
}

/// A long concurrent history that is linearizable by construction is accepted quickly
/// (the memoization keeps the search small).
#[test]
fn accepts_a_long_linearizable_history() {
    // Clients write unique values through a register whose true order we know; each
    // operation's interval covers its real effect point.
    let mut rng = StdRng::seed_from_u64(7);
    let mut h = Vec::new();
    let mut value: Option<String> = None;
    for t in 0..2_000u64 {
        let at = t * 10;
        let (call, ret) = (at - rng.random_range(0..25).min(at), at + rng.random_range(0..25));
        if rng.random_bool(0.5) {
            let v = format!("v{t}");
            h.push(write(t % 5, "x", call, Some(ret), &v));
            value = Some(v);
        } else {
            h.push(read(t % 5, "x", call, ret, value.as_deref()));
        }
    }
    assert_eq!(check(&Register, &h), Verdict::Linearizable);
}

/// The explanation reads as a story: the key, the legal prefix, the operation that fits nowhere.
#[test]
fn explanation_names_the_operations() {
    let h = vec![
        write(1, "x", 0, Some(1), "a"),
        write(1, "x", 2, Some(3), "b"),
        read(2, "x", 4, 5, Some("a")),
    ];
    let Verdict::Violation(e) = check(&Register, &h) else {
        panic!("not flagged");
    };
    println!("{e}");
    assert_eq!(e.longest_prefix, vec![0, 1]);
    assert_eq!(e.stuck, vec![2]);
    assert!(e.text.contains("partition \"x\""), "{e}");
}

/// CAS by version: a version names the write that produced it. Two CAS from the same
/// version cannot both succeed; one from the current version can.
#[test]
fn cas_by_version_resolves_through_observed_versions() {
    use braft_lincheck::register::{resolve_versions, VersionedInput as VI, VersionedOutput as VO};
    let plain = VI::Plain;
    let op = |client, input, call, out: Option<(VO, u64)>| Operation {
        client,
        input,
        call,
        output: out,
    };
    let w = |v: &str| {
        plain(Input::Write {
            key: "x".into(),
            value: v.into(),
        })
    };
    let cv = |expect, v: &str| VI::CasVersion {
        key: "x".into(),
        expect,
        value: v.into(),
    };
    let good = vec![
        op(1, w("a"), 0, Some((VO::Ok(5), 1))),
        op(2, cv(5, "b"), 2, Some((VO::Ok(9), 3))),
        op(3, cv(5, "c"), 4, Some((VO::CompareFailed, 5))),
        op(
            3,
            plain(Input::Read { key: "x".into() }),
            6,
            Some((VO::Value(Some(("b".into(), 9))), 7)),
        ),
    ];
    assert_eq!(check(&Register, &resolve_versions(&good)), Verdict::Linearizable);
    let twice = vec![
        op(1, w("a"), 0, Some((VO::Ok(5), 1))),
        op(2, cv(5, "b"), 2, Some((VO::Ok(9), 3))),
        op(3, cv(5, "c"), 4, Some((VO::Ok(11), 5))),
    ];
    assert!(matches!(
        check(&Register, &resolve_versions(&twice)),
        Verdict::Violation(_)
    ));
    // "Must be absent" (version 0) fails once the key exists.
    let absent = vec![
        op(1, w("a"), 0, Some((VO::Ok(5), 1))),
        op(2, cv(0, "b"), 2, Some((VO::Ok(9), 3))),
    ];
    assert!(matches!(
        check(&Register, &resolve_versions(&absent)),
        Verdict::Violation(_)
    ));
}
