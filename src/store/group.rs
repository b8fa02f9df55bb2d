//! Group commit (issue 29): the payments of one institution that arrive while one of its
//! commits is in flight go to Redis together, in one call of `lua/pay_group.lua` (pay.lua,
//! once per payment, in one script), each with its own verdict.
//!
//! - **No wait when idle.** A payment that finds no commit of its institution in flight
//!   runs at once, alone, in its caller's task (a call of one: a caller that gives up
//!   takes only its own payment with it, as before). Only those that arrive while one is
//!   in flight queue; when it ends (or its caller gave up), up to
//!   `redis.group_commit_max` of them go in the next call, run by a task of its own (so a
//!   caller that gives up, an HTTP client gone, never takes the others' verdicts with it),
//!   and so on while any wait.
//! - **The same atomicity.** Each payment is pay.lua's, checked and written as one script
//!   (Redis runs a script whole); a payment in a group sees the ones before it, as it
//!   would have seen them committed one script call earlier. Journal events are appended
//!   by each caller after its verdict, as before.
//! - **Shared keys written once.** The writes every payment of the group appends to the
//!   institution's ledger, payment index and unjournaled list are queued and sent at the
//!   script's end, one `RPUSH` and one `ZADD` each (nothing in the group reads them; the
//!   ledger's length is read once); a refused one (a key of the wrong type) answers every
//!   committed payment of the group that error.
//! - **Bounded.** At most [`MAX_WAITING`] payments of one institution queue; more run
//!   alone, concurrently, as without group commit. The queue of an idle institution is
//!   removed. Metrics: `ipg_group_commit_calls_total`, `ipg_group_commit_payments_total`
//!   (their ratio is the mean group).
//!
//! A group's failure (Redis unreachable, a recovery that failed) is every member's, as
//! its own call's would have been: the outcome is unknown and the caller retries (the
//! Kafka door) or answers 503 (HTTP); the retry replays what did commit.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::{Eval, Store, StoreError};
use crate::metrics as m;

/// Most payments of one institution waiting for its commit in flight; more run alone.
pub const MAX_WAITING: usize = 1024;

/// One payment's keys and arguments (`calls::Commit`'s, the reference key present).
pub(super) struct Member {
    pub keys: Vec<Vec<u8>>,
    pub args: Vec<Vec<u8>>,
}

/// A payment's pay.lua reply, or why there is none.
type Verdict = Result<Vec<redis::Value>, StoreError>;

struct Waiting {
    member: Member,
    tx: oneshot::Sender<Verdict>,
}

#[derive(Default)]
struct Queue {
    /// A commit of the institution is in flight.
    busy: bool,
    waiting: Vec<Waiting>,
}

/// The institutions' queues (only those with a commit in flight) and the group limit.
pub(super) struct Groups {
    max: usize,
    queues: Mutex<HashMap<String, Queue>>,
}

impl Groups {
    pub(super) fn new(max: usize) -> Groups {
        Groups {
            max: max.max(1),
            queues: Mutex::new(HashMap::new()),
        }
    }
}

/// What a payment does on arrival.
enum Turn {
    /// Nothing in flight: commit now (alone), then start the next group.
    Lead,
    /// A commit is in flight: wait for the verdict of the group this joins.
    Wait(oneshot::Receiver<Verdict>),
    /// The queue is full: commit alone, beside the others.
    Alone,
}

/// Starts the institution's next group when the commit in flight ends (or its caller went
/// away): dropped, never forgotten.
struct Next<'a> {
    store: &'a Store,
    inst: &'a str,
}

impl Drop for Next<'_> {
    fn drop(&mut self) {
        self.store.next_group(self.inst);
    }
}

/// [`Next`] owned by a group's task: dropped when the task ends, or with the task if the
/// runtime drops it unrun (it is ending), so the institution is never left busy.
struct NextOwned {
    store: Store,
    inst: String,
}

impl Drop for NextOwned {
    fn drop(&mut self) {
        self.store.next_group(&self.inst);
    }
}

impl Store {
    /// Commits one payment (`member`: calls::Commit's keys and arguments for pay.lua) in
    /// the next group of `inst` (see the module's text); its pay.lua reply.
    ///
    /// # Errors
    /// As [`Store::eval`], for the whole group; a payment Redis refused (`Unavailable`).
    pub(super) async fn group_commit(&self, inst: &str, member: Member) -> Verdict {
        let mut member = Some(member);
        let turn = {
            let mut queues = self.groups.queues.lock().unwrap_or_else(|e| e.into_inner());
            match queues.get_mut(inst) {
                None => {
                    queues.insert(
                        inst.to_owned(),
                        Queue {
                            busy: true,
                            waiting: Vec::new(),
                        },
                    );
                    Turn::Lead
                }
                Some(q) if !q.busy => {
                    q.busy = true;
                    Turn::Lead
                }
                Some(q) if q.waiting.len() < MAX_WAITING => {
                    let (tx, rx) = oneshot::channel();
                    let member = member.take().expect("not taken yet");
                    q.waiting.push(Waiting { member, tx });
                    Turn::Wait(rx)
                }
                Some(_) => Turn::Alone,
            }
        };
        // Its own call: `member` is still here unless it waits.
        let one: Vec<Member> = member.into_iter().collect();
        match turn {
            Turn::Wait(rx) => wait(rx).await,
            Turn::Alone => self.commit_group(inst, one).await.remove(0),
            Turn::Lead => {
                let _next = Next { store: self, inst };
                self.commit_group(inst, one).await.remove(0)
            }
        }
    }

    /// The commit in flight of `inst` ended: the next group goes, in a task of its own,
    /// or the institution is idle again.
    fn next_group(&self, inst: &str) {
        let group: Vec<Waiting> = {
            let mut queues = self.groups.queues.lock().unwrap_or_else(|e| e.into_inner());
            let Some(q) = queues.get_mut(inst) else {
                return;
            };
            // A caller that went away before its group left is not committed.
            q.waiting.retain(|w| !w.tx.is_closed());
            if q.waiting.is_empty() {
                queues.remove(inst);
                return;
            }
            let take = q.waiting.len().min(self.groups.max);
            q.waiting.drain(..take).collect()
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (it ended): the callers see their channel closed (unavailable),
            // and those still waiting are told the same way, next.
            drop(group);
            return self.next_group(inst);
        };
        let next = NextOwned {
            store: self.clone(),
            inst: inst.to_owned(),
        };
        runtime.spawn(async move {
            let next = next;
            let (members, txs): (Vec<Member>, Vec<_>) =
                group.into_iter().map(|w| (w.member, w.tx)).unzip();
            let verdicts = next.store.commit_group(&next.inst, members).await;
            for (tx, v) in txs.into_iter().zip(verdicts) {
                // A caller gone meanwhile: its payment committed (or not) as a call whose
                // answer was lost; the unjournaled list journals it (store/unjournaled.rs).
                let _ = tx.send(v);
            }
        });
    }

    /// One `lua/pay_group.lua` call for `members`: a verdict each, in order.
    async fn commit_group(&self, inst: &str, members: Vec<Member>) -> Vec<Verdict> {
        let n = members.len();
        metrics::counter!(m::GROUP_COMMIT_CALLS_TOTAL).increment(1);
        metrics::counter!(m::GROUP_COMMIT_PAYMENTS_TOTAL).increment(n as u64);
        let mut call = Eval::with_capacity(
            &self.scripts.pay,
            n * super::calls::Commit::KEYS.len(),
            n * super::calls::Commit::ARGV.len(),
        )
        .institution(inst);
        for m in members {
            debug_assert_eq!(
                (m.keys.len(), m.args.len()),
                (
                    super::calls::Commit::KEYS.len(),
                    super::calls::Commit::ARGV.len()
                ),
                "pay_group.lua's strides"
            );
            call.keys.extend(m.keys);
            call.args.extend(m.args);
        }
        match self.eval::<Vec<redis::Value>>(call).await {
            Ok(replies) if replies.len() == n => replies.into_iter().map(reply).collect(),
            Ok(replies) => (0..n)
                .map(|_| {
                    Err(StoreError::Corrupt {
                        key: super::keys::journal_mark(inst),
                        reason: format!("pay_group.lua answered {} replies for {n}", replies.len()),
                    })
                })
                .collect(),
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }
}

/// A member's verdict from its channel (closed: the runtime is ending, outcome unknown).
async fn wait(rx: oneshot::Receiver<Verdict>) -> Verdict {
    rx.await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(redis::RedisError::from(
            std::io::Error::other("the group commit ended without a verdict"),
        )))
    })
}

/// One payment's reply in a group's: pay.lua's, or `{'error', message}` (Redis refused
/// one of its commands).
fn reply(v: redis::Value) -> Verdict {
    let redis::Value::Array(r) = v else {
        return Err(StoreError::Corrupt {
            key: "pay_group.lua".into(),
            reason: format!("a payment's reply is not a list: {v:?}"),
        });
    };
    if let Some(redis::Value::BulkString(w)) = r.first() {
        if w.as_slice() == b"error" {
            let why = match r.get(1) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            };
            return Err(StoreError::Unavailable(redis::RedisError::from((
                redis::ErrorKind::Extension,
                "Redis refused a payment's command",
                why,
            ))));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::super::calls::Commit;

    /// pay_group.lua's strides are calls::Commit's keys and arguments, and it holds pay.lua.
    #[test]
    fn the_group_script_reads_pay_lua_s_layout() {
        let group = include_str!("lua/pay_group.lua");
        assert!(group.contains(&format!(
            "local KN, AN = {}, {}",
            Commit::KEYS.len(),
            Commit::ARGV.len()
        )));
        assert!(group.contains("--[[pay.lua]]"));
        assert!(group.contains("Store::group_commit"));
        // The constructors that build each payment's KEYS and ARGV list every position.
        let squeezed: String = group.chars().filter(|c| !c.is_whitespace()).collect();
        let listed = |name: &str, n: usize| {
            let base = if name == "k" { "K[b+" } else { "A[c+" };
            let items: Vec<String> = (1..=n).map(|j| format!("{base}{j}]")).collect();
            // In order, every position once, nothing after the last.
            squeezed.contains(&format!("local{name}={{{}}}", items.join(",")))
        };
        assert!(
            listed("k", Commit::KEYS.len()),
            "pay_group.lua's KEYS constructor"
        );
        assert!(
            listed("a", Commit::ARGV.len()),
            "pay_group.lua's ARGV constructor"
        );
    }
}
