//! A register per key, as braft's KV service behaves: read, write, and compare-and-set by
//! value (`?prev_value=`). With unique written values, CAS by value decides exactly what
//! CAS by version would. (A version-aware model, for `?prev_version=`, is still to come.)

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
