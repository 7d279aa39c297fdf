//! A register per key, as braft's KV service behaves: read, write, and compare-and-set by
//! value (`?prev_value=`) or by version (`?prev_version=`). Histories that carry versions
//! are rewritten by [`resolve_versions`]: with unique written values, a version names a
//! value, and CAS by version becomes CAS by that value.

use crate::Model;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Read {
        key: String,
    },
    Write {
        key: String,
        value: String,
    },
    /// Compare-and-set by value: set `value` if the current value is `expect`
    /// (`None`: the key must be absent).
    CasValue {
        key: String,
        expect: Option<String>,
        value: String,
    },
}

/// What the operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A read's value (`None`: absent).
    Value(Option<String>),
    /// A write, or a CAS, that applied.
    Ok,
    /// A CAS whose condition did not hold; nothing changed.
    CompareFailed,
}

/// The register model: the state is the current value (`None`: absent).
#[derive(Clone, Debug, Default)]
pub struct Register;

impl Register {
    fn key(input: &Input) -> &str {
        match input {
            Input::Read { key } | Input::Write { key, .. } | Input::CasValue { key, .. } => key,
        }
    }
}

impl Model for Register {
    type State = Option<String>;
    type Input = Input;
    type Output = Output;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, input: &Input, output: Option<&Output>) -> Option<Self::State> {
        match input {
            Input::Read { .. } => match output {
                None => Some(state.clone()),
                Some(Output::Value(v)) if v == state => Some(state.clone()),
                Some(_) => None,
            },
            Input::Write { value, .. } => match output {
                None | Some(Output::Ok) => Some(Some(value.clone())),
                Some(_) => None,
            },
            Input::CasValue { expect, value, .. } => {
                let holds = state == expect;
                match (output, holds) {
                    (None, true) | (Some(Output::Ok), true) => Some(Some(value.clone())),
                    (None, false) | (Some(Output::CompareFailed), false) => Some(state.clone()),
                    _ => None,
                }
            }
        }
    }

    fn partition(&self, input: &Input) -> String {
        Self::key(input).to_string()
    }
}

/// An operation as a braft client records it, with versions: reads report the version
/// they saw (`X-Braft-Version`), writes the version they got, and a CAS may compare by
/// version (`?prev_version=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionedInput {
    /// Any operation of the plain register model.
    Plain(Input),
    /// `expect == 0`: the key must be absent.
    CasVersion { key: String, expect: u64, value: String },
}

/// What a versioned operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionedOutput {
    /// A read: the value and its version, or absent.
    Value(Option<(String, u64)>),
    /// A write or CAS that applied, at this version.
    Ok(u64),
    CompareFailed,
}

/// Rewrites a versioned history into the register model's terms.
///
/// Written values must be unique per key. A version names the write that produced it, so
/// every version observed (from a write's answer or a read) maps to a value, and a CAS by
/// version becomes a CAS by that value. A CAS naming a version nobody observed cannot
/// match any state and is checked as expecting an impossible value.
pub fn resolve_versions(
    history: &[crate::Operation<VersionedInput, VersionedOutput>],
) -> Vec<crate::Operation<Input, Output>> {
    use std::collections::HashMap;
    let mut seen: HashMap<(String, u64), String> = HashMap::new();
    for op in history {
        let key = match &op.input {
            VersionedInput::Plain(i) => Register::key(i),
            VersionedInput::CasVersion { key, .. } => key,
        };
        let value = match (&op.input, op.output.as_ref().map(|(o, _)| o)) {
            (_, Some(VersionedOutput::Value(Some((value, v))))) => Some((value, *v)),
            (
                VersionedInput::Plain(Input::Write { value, .. } | Input::CasValue { value, .. })
                | VersionedInput::CasVersion { value, .. },
                Some(VersionedOutput::Ok(v)),
            ) => Some((value, *v)),
            _ => None,
        };
        if let Some((value, v)) = value {
            seen.insert((key.to_string(), v), value.clone());
        }
    }
    history
        .iter()
        .map(|op| {
            let input = match &op.input {
                VersionedInput::Plain(i) => i.clone(),
                VersionedInput::CasVersion { key, expect, value } => Input::CasValue {
                    key: key.clone(),
                    expect: match expect {
                        0 => None,
                        v => Some(
                            seen.get(&(key.clone(), *v))
                                .cloned()
                                .unwrap_or_else(|| format!("\u{0}unobserved version {v}")),
                        ),
                    },
                    value: value.clone(),
                },
            };
            let output = op.output.as_ref().map(|(o, t)| {
                let o = match o {
                    VersionedOutput::Value(v) => Output::Value(v.as_ref().map(|(s, _)| s.clone())),
                    VersionedOutput::Ok(_) => Output::Ok,
                    VersionedOutput::CompareFailed => Output::CompareFailed,
                };
                (o, *t)
            });
            crate::Operation {
                client: op.client,
                input,
                call: op.call,
                output,
            }
        })
        .collect()
}
