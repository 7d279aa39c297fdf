//! A linearizability checker: Porcupine's algorithm, in Rust.
//!
//! A *history* is a set of operations, each with the time it was invoked and the time its
//! answer arrived (or none: *indeterminate*, e.g. a timeout, which may take effect at any
//! time after its invocation, or never). The history is linearizable if there is a total
//! order of the operations that (1) respects real time — an operation that returned before
//! another was invoked comes first — and (2) is a legal run of a sequential *model*.
//!
//! The search is Wing & Gong's, with Lowe's memoization (a cache of "this set of operations
//! linearized, reaching this model state" already explored) and P-compositionality: a
//! model that splits a history into independent parts (per key, for a key-value store) has
//! each part checked alone. See Horn & Kroening, "Faster linearizability checking via
//! P-compositionality" (2015), and anishathalye/porcupine.
//!
//! - [`Model`]: the sequential specification.
//! - [`register`]: a register with read, write and compare-and-set (by value or version).
//! - [`check`]: the checker; on failure it explains which operations admit no order.

pub mod register;

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Clone + Debug;
    /// What an operation returned. `None` in [`Operation::output`] means unknown
    /// (indeterminate): the model then applies the input and accepts any result.
    type Output: Clone + Debug;

    fn init(&self) -> Self::State;

    /// The state after applying `input`, if `output` is what the model would answer from
    /// `state` (always, when `output` is `None`); `None` if the answer is impossible.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;

    /// The independent part (e.g. the key) an operation belongs to. Operations of
    /// different parts never constrain each other.
    fn partition(&self, _input: &Self::Input) -> String {
        String::new()
    }
}

/// One operation of a history. Times are any monotonic clock, e.g. nanoseconds.
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    /// Who issued it (for explanations only).
    pub client: u64,
    pub input: I,
    pub call: u64,
    /// The answer and when it arrived; `None` for an indeterminate operation.
    pub output: Option<(O, u64)>,
}

impl<I, O> Operation<I, O> {
    pub fn is_indeterminate(&self) -> bool {
        self.output.is_none()
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order works; the explanation names the part and the operations involved.
    Violation(Explanation),
}

/// Why a part of a history has no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The part (key) that failed.
    pub partition: String,
    /// The longest legal prefix the search found, as indexes into the history, in order.
    pub longest_prefix: Vec<usize>,
    /// The determinate operations that could not be placed after that prefix.
    pub stuck: Vec<usize>,
    /// A human-readable account.
    pub text: String,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks a whole history.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> Verdict {
    let mut parts: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        let p = model.partition(&op.input);
        match parts.iter_mut().find(|(k, _)| *k == p) {
            Some((_, v)) => v.push(i),
            None => parts.push((p, vec![i])),
        }
    }
    for (partition, ids) in parts {
        if let Err(e) = check_part(model, history, &partition, &ids) {
            return Verdict::Violation(e);
        }
    }
    Verdict::Linearizable
}

/// A call or return event in the search's doubly linked list.
#[derive(Clone, Copy)]
struct Event {
    /// Index into the part's operations.
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// A set of operations, as bits.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

fn check_part<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    partition: &str,
    ids: &[usize],
) -> Result<(), Explanation> {
    let n = ids.len();
    let ops: Vec<&Operation<M::Input, M::Output>> = ids.iter().map(|i| &history[*i]).collect();
    // Events sorted by time; a call sorts before a return at the same instant (the two
    // operations are then concurrent). Indeterminate operations return at infinity.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, false, i));
        order.push((op.output.as_ref().map_or(u64::MAX, |(_, t)| *t), true, i));
    }
    order.sort_by_key(|(t, is_return, i)| (*t, *is_return, *i));
    // Node 0 is the head sentinel; events are 1..=2n.
    let mut ev: Vec<Event> = vec![Event {
        op: usize::MAX,
        is_call: false,
        prev: 0,
        next: 1,
    }];
    let mut call_at = vec![0usize; n];
    let mut ret_at = vec![0usize; n];
    for (k, (_, is_return, i)) in order.iter().enumerate() {
        let node = k + 1;
        ev.push(Event {
            op: *i,
            is_call: !is_return,
            prev: node - 1,
            next: if k + 1 < order.len() { node + 1 } else { 0 },
        });
        if *is_return {
            ret_at[*i] = node;
        } else {
            call_at[*i] = node;
        }
    }
    if order.is_empty() {
        ev[0].next = 0;
    }

    let lift = |ev: &mut Vec<Event>, node: usize| {
        let (p, nx) = (ev[node].prev, ev[node].next);
        ev[p].next = nx;
        if nx != 0 {
            ev[nx].prev = p;
        }
    };
    let unlift = |ev: &mut Vec<Event>, node: usize| {
        let (p, nx) = (ev[node].prev, ev[node].next);
        ev[p].next = node;
        if nx != 0 {
            ev[nx].prev = node;
        }
    };

    let mut remaining = ops.iter().filter(|o| !o.is_indeterminate()).count();
    let mut linearized = Bits::new(n);
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut calls: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut best: Vec<usize> = Vec::new();
    let mut entry = ev[0].next;
    loop {
        if remaining == 0 {
            return Ok(());
        }
        // The end of the list counts as a return: only returns of indeterminate operations
        // could end it, and those come after every determinate one.
        let e = ev[entry];
        if entry != 0 && e.is_call {
            let op = ops[e.op];
            let out = op.output.as_ref().map(|(o, _)| o);
            if let Some(next_state) = model.step(&state, &op.input, out) {
                let mut lin = linearized.clone();
                lin.set(e.op);
                if cache.insert((lin.clone(), next_state.clone())) {
                    calls.push((e.op, state));
                    state = next_state;
                    linearized = lin;
                    if !op.is_indeterminate() {
                        remaining -= 1;
                    }
                    lift(&mut ev, call_at[e.op]);
                    lift(&mut ev, ret_at[e.op]);
                    if calls.len() > best.len() {
                        best = calls.iter().map(|(i, _)| *i).collect();
                    }
                    entry = ev[0].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return whose operation is not linearized yet (or the end of the list):
            // everything before must be undone and tried in another order.
            match calls.pop() {
                None => break,
                Some(popped) => {
                    entry = backtrack(
                        &mut ev,
                        &ops,
                        &call_at,
                        &ret_at,
                        &mut linearized,
                        &mut remaining,
                        &mut state,
                        popped,
                        &unlift,
                    );
                }
            }
        }
    }
    Err(explain(partition, ids, &ops, &best))
}

/// Undoes the most recent linearization step and returns where the scan resumes.
#[allow(clippy::too_many_arguments)]
fn backtrack<I, O, S>(
    ev: &mut Vec<Event>,
    ops: &[&Operation<I, O>],
    call_at: &[usize],
    ret_at: &[usize],
    linearized: &mut Bits,
    remaining: &mut usize,
    state: &mut S,
    (op, prev_state): (usize, S),
    unlift: &dyn Fn(&mut Vec<Event>, usize),
) -> usize {
    *state = prev_state;
    linearized.clear(op);
    if !ops[op].is_indeterminate() {
        *remaining += 1;
    }
    unlift(ev, ret_at[op]);
    unlift(ev, call_at[op]);
    ev[call_at[op]].next
}

fn explain<I: Debug, O: Debug>(
    partition: &str,
    ids: &[usize],
    ops: &[&Operation<I, O>],
    best: &[usize],
) -> Explanation {
    let placed: HashSet<usize> = best.iter().copied().collect();
    let stuck: Vec<usize> = (0..ops.len())
        .filter(|i| !placed.contains(i) && !ops[*i].is_indeterminate())
        .collect();
    let describe = |i: usize| {
        let op = ops[i];
        match &op.output {
            Some((o, t)) => format!(
                "  #{} client {}: {:?} -> {:?}  [{} .. {}]",
                ids[i], op.client, op.input, o, op.call, t
            ),
            None => format!(
                "  #{} client {}: {:?} -> (unknown)  [{} .. ?]",
                ids[i], op.client, op.input, op.call
            ),
        }
    };
    let mut text = format!(
        "not linearizable: partition {partition:?}\nlongest legal order found ({} ops):\n",
        best.len()
    );
    for i in best {
        text.push_str(&describe(*i));
        text.push('\n');
    }
    text.push_str("after it, none of these can go next without breaking the model or real time:\n");
    for i in &stuck {
        text.push_str(&describe(*i));
        text.push('\n');
    }
    Explanation {
        partition: partition.to_string(),
        longest_prefix: best.iter().map(|i| ids[*i]).collect(),
        stuck: stuck.iter().map(|i| ids[*i]).collect(),
        text,
    }
}
