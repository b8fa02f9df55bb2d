//! The passive payment flow's state transitions, pure: what a reply from the institution
//! (or the passing of time) makes of the switch's record, and what to do next. No I/O:
//! the caller (`Passive::pay`, the resolver) makes the call, applies the transition, then
//! publishes the step (when there is one) and saves the record with its next due time,
//! all under the VA lock. docs/protocol.md P5 (payment) and P6 (resolution) in code.
//!
//! ```text
//! forwarding --SUCCESS--------------------------> paid
//!            --another rc---------------------------> refused
//!            --not sent (refused connection...)--> refused (not_sent: judged anew)
//!            --timeout / SUSPECT------------------> in_doubt --(check-status)--+
//!            --garbage (5xx, not JSON...)---------> reversing (voided)         |
//! in_doubt   --SUCCESS----------------------------> paid (confirmed)           |
//!            --PAYMENT_NOT_FOUND------------------> reversing (denied)         |
//!            --ALREADY_REVERSED-------------------> reversed                   |
//!            --anything else----------------------> in_doubt, asked again <----+
//!            --window passed----------------------> reversing (window_expired)
//! reversing  --SUCCESS / ALREADY_REVERSED / NOT_FOUND--> reversed
//!            --anything else----------------------> reversing, retried (never given up)
//! ```

use serde_json::Value;

use super::client::{Failure, Reply};
use super::config::{self, PassiveSettings};
use crate::domain::passive::{PassivePayment, PassiveState, StoredAnswer, NOT_SENT};
use crate::domain::Rc;

/// A step to publish on the audit topic: its name, the outcome (an rc or a failure label)
/// and a detail for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub outcome: String,
    pub detail: String,
}

/// What to do after a transition: publish `step` (if any), then save the record with its
/// next resolution step due at `due_ms` (`None`: nothing left to resolve).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next {
    pub step: Option<Step>,
    pub due_ms: Option<i64>,
}

fn step(name: &'static str, outcome: impl Into<String>, detail: impl Into<String>) -> Option<Step> {
    Some(Step {
        name,
        outcome: outcome.into(),
        detail: detail.into(),
    })
}

/// The message of an answer: the institution's, or one made from the rc.
pub fn message_or(m: &str, rc: Rc) -> String {
    if m.is_empty() {
        if rc == Rc::Success {
            "success".into()
        } else {
            rc.as_str().to_ascii_lowercase().replace('_', " ")
        }
    } else {
        m.to_owned()
    }
}

/// The institution's data with the switch's payment view added (`payment`), the shape of a
/// hosted payment's answer.
pub fn with_payment(data: &Value, view: Value) -> Value {
    match data {
        Value::Object(o) => {
            let mut o = o.clone();
            o.insert("payment".into(), view);
            Value::Object(o)
        }
        _ => serde_json::json!({ "payment": view }),
    }
}

/// The answer the channel is given when the institution cannot be used.
pub fn gateway(detail: impl Into<String>) -> (Rc, String) {
    (Rc::BillerGatewayInvalidResponse, detail.into())
}

/// An in-doubt record: answered `BILLER_SUSPECT_TRANSACTION`, resolution window open,
/// first check-status after the first `check_backoff_ms`.
pub fn in_doubt(rec: &mut PassivePayment, reason: &str, now_ms: i64, s: &PassiveSettings) -> Next {
    rec.state = PassiveState::InDoubt;
    rec.reason = Some(reason.to_owned());
    rec.attempts = 0;
    rec.deadline_ms = Some(now_ms + crate::config::ms(s.resolve_window) as i64);
    let message = format!(
        "payment outcome unknown ({reason}); the switch is confirming it with the institution"
    );
    rec.answer = Some(StoredAnswer {
        rc: Rc::BillerSuspectTransaction,
        message: message.clone(),
        timestamp: rec.updated_at.clone(),
        data: rec.view(),
    });
    Next {
        step: step("in_doubt", reason, message),
        due_ms: Some(now_ms + config::backoff(&s.check_backoff, 0).as_millis() as i64),
    }
}

/// What the reply to a payment makes of a `forwarding` record (P5). `rec.updated_at`
/// must already be the time of the reply.
pub fn payment_replied(
    rec: &mut PassivePayment,
    reply: Reply,
    now_ms: i64,
    s: &PassiveSettings,
) -> Next {
    let (rc, message, data) = match reply {
        Ok(a) if a.rc == Rc::Success => {
            rec.state = PassiveState::Paid;
            rec.institution_data = a.data.clone();
            let data = with_payment(&a.data, rec.view());
            (a.rc, message_or(&a.message, a.rc), data)
        }
        Ok(a) if a.rc == Rc::BillerSuspectTransaction => {
            return in_doubt(rec, "suspect", now_ms, s)
        }
        Ok(a) => {
            rec.state = PassiveState::Refused;
            (a.rc, message_or(&a.message, a.rc), a.data)
        }
        Err(Failure::Timeout) => return in_doubt(rec, "timeout", now_ms, s),
        Err(e) if e.maybe_received() => {
            // Answered with garbage: the channel is told it failed, so make it so at the
            // institution too.
            rec.state = PassiveState::Reversing;
            rec.reason = Some(e.label().into());
            rec.resolution = Some("voided".into());
            rec.attempts = 0;
            let (rc, msg) = gateway(e.describe());
            rec.answer = Some(StoredAnswer {
                rc,
                message: msg.clone(),
                timestamp: rec.updated_at.clone(),
                data: Value::Null,
            });
            return Next {
                step: step("voided", e.label(), msg),
                due_ms: Some(now_ms),
            };
        }
        Err(e) => {
            // Never sent: recorded for reconciliation, judged anew when repeated.
            rec.state = PassiveState::Refused;
            rec.reason = Some(NOT_SENT.into());
            let (rc, msg) = gateway(e.describe());
            (rc, msg, Value::Null)
        }
    };
    rec.answer = Some(StoredAnswer {
        rc,
        message,
        timestamp: rec.updated_at.clone(),
        data,
    });
    Next {
        step: None,
        due_ms: None,
    }
}

/// The resolver's call for a record at `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    CheckStatus,
    Reversal,
}

/// What the resolver does for `rec` now: `Err(next)` when time alone decides (the window
/// passed: reversing; or nothing to resolve), `Ok(call)` when the institution is asked.
pub fn resolver_call(rec: &mut PassivePayment, now_ms: i64) -> Result<Call, Next> {
    match rec.state {
        PassiveState::InDoubt if rec.deadline_ms.is_some_and(|d| now_ms >= d) => {
            rec.state = PassiveState::Reversing;
            rec.resolution = Some("window_expired".into());
            rec.attempts = 0;
            Err(Next {
                step: step(
                    "window_expired",
                    "unconfirmed",
                    "not confirmed within the window; reversing",
                ),
                due_ms: Some(now_ms),
            })
        }
        PassiveState::InDoubt => Ok(Call::CheckStatus),
        PassiveState::Reversing => Ok(Call::Reversal),
        // Ended meanwhile (or never pending): drop it from the work set.
        _ => Err(Next {
            step: None,
            due_ms: None,
        }),
    }
}

fn label_and_detail(reply: Reply) -> (String, String) {
    match reply {
        Ok(a) => (a.rc.as_str().to_owned(), a.message),
        Err(e) => (e.label().to_owned(), e.describe()),
    }
}

/// An answer to a reversal that means the payment is not (or no longer) at the institution.
pub fn reversal_done(rc: Rc) -> bool {
    matches!(
        rc,
        Rc::Success | Rc::BillerPaymentAlreadyReversed | Rc::BillerPaymentNotFound
    )
}

/// What the reply to the resolver's `call` makes of the record (P6).
pub fn resolution_replied(
    call: Call,
    rec: &mut PassivePayment,
    reply: Reply,
    now_ms: i64,
    s: &PassiveSettings,
) -> Next {
    match call {
        Call::CheckStatus => check_status_replied(rec, reply, now_ms, s),
        Call::Reversal => reversal_replied(rec, reply, now_ms, &s.reversal_backoff),
    }
}

/// An in-doubt record after a check-status reply: confirmed, denied (reversing), already
/// reversed, or asked again after the next `check_backoff_ms`, never past the window.
fn check_status_replied(
    rec: &mut PassivePayment,
    reply: Reply,
    now_ms: i64,
    s: &PassiveSettings,
) -> Next {
    match reply {
        Ok(a) if a.rc == Rc::Success => {
            rec.state = PassiveState::Paid;
            rec.resolution = Some("confirmed".into());
            rec.institution_data = a.data;
            Next {
                step: step("confirmed", a.rc.as_str(), a.message),
                due_ms: None,
            }
        }
        Ok(a) if a.rc == Rc::BillerPaymentNotFound => {
            rec.state = PassiveState::Reversing;
            rec.resolution = Some("denied".into());
            rec.attempts = 0;
            Next {
                step: step("denied", a.rc.as_str(), a.message),
                due_ms: Some(now_ms),
            }
        }
        Ok(a) if a.rc == Rc::BillerPaymentAlreadyReversed => {
            rec.state = PassiveState::Reversed;
            rec.resolution = Some("already_reversed".into());
            Next {
                step: step("reversed", a.rc.as_str(), a.message),
                due_ms: None,
            }
        }
        other => {
            rec.attempts += 1;
            let (label, detail) = label_and_detail(other);
            let next = config::backoff(&s.check_backoff, rec.attempts);
            let due = (now_ms + next.as_millis() as i64).min(rec.deadline_ms.unwrap_or(i64::MAX));
            Next {
                step: step("check_status", label, detail),
                due_ms: Some(due),
            }
        }
    }
}

/// A reversing record after a reversal reply: done, or retried after the next of
/// `backoff_ms` (the last repeats; never given up).
/// What the channel was told when its reversal could not be delivered at once: the
/// switch keeps it and delivers it (the resolver retries, never giving up).
pub const REVERSAL_QUEUED: &str = "reversal accepted; the switch delivers it to the institution";

/// What a channel's reversal of a forwarded payment makes of its record, by the
/// institution's reply (docs/protocol.md P9).
#[derive(Debug)]
pub enum ChannelReversal {
    /// Reversed (SUCCESS, ALREADY_REVERSED or NOT_FOUND at the institution): save with
    /// `Next`; the channel hears SUCCESS with the institution's data.
    Reversed(Next, Value),
    /// A clear refusal (a wrong amount, authentication...): the record stays as it was and
    /// the channel hears the institution's rc, message and data.
    Refused(Rc, String, Value),
    /// No clear answer (timeout, SUSPECT, garbage): queued, `reversing`, retried by the
    /// resolver; the channel hears it was accepted.
    Queued(Next),
}

/// [`ChannelReversal`] of `reply` to the reversal of `rec`, at `now_ms`.
pub fn channel_reversal_replied(
    rec: &mut PassivePayment,
    reply: Reply,
    now_ms: i64,
    s: &PassiveSettings,
) -> ChannelReversal {
    rec.resolution = Some("channel_reversal".into());
    match reply {
        Ok(a) if reversal_done(a.rc) => {
            rec.state = PassiveState::Reversed;
            let next = Next {
                step: step("reversed_by_channel", a.rc.as_str(), a.message),
                due_ms: None,
            };
            ChannelReversal::Reversed(next, a.data)
        }
        Ok(a) if a.rc != Rc::BillerSuspectTransaction => {
            ChannelReversal::Refused(a.rc, message_or(&a.message, a.rc), a.data)
        }
        other => {
            let label = match &other {
                Ok(a) => a.rc.as_str(),
                Err(e) => e.label(),
            };
            rec.state = PassiveState::Reversing;
            rec.reason = Some(label.to_owned());
            rec.attempts = 1;
            let due = now_ms + config::backoff(&s.reversal_backoff, 0).as_millis() as i64;
            ChannelReversal::Queued(Next {
                step: step("reversal_queued", label, REVERSAL_QUEUED),
                due_ms: Some(due),
            })
        }
    }
}

fn reversal_replied(
    rec: &mut PassivePayment,
    reply: Reply,
    now_ms: i64,
    backoff: &[std::time::Duration],
) -> Next {
    match reply {
        Ok(a) if reversal_done(a.rc) => {
            rec.state = PassiveState::Reversed;
            Next {
                step: step("reversed", a.rc.as_str(), a.message),
                due_ms: None,
            }
        }
        other => {
            let (label, detail) = label_and_detail(other);
            let next = config::backoff(backoff, rec.attempts);
            rec.attempts += 1;
            Next {
                step: step("reversal_attempt", label, detail),
                due_ms: Some(now_ms + next.as_millis() as i64),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Amount;
    use crate::passive::client::Answered;

    fn settings() -> PassiveSettings {
        crate::settings::Settings::from_toml(&[
            "[passive]\nresolve_window_ms = 60000\ncheck_backoff_ms = [100, 200]\nreversal_backoff_ms = [1000, 5000]\n",
        ])
        .unwrap()
        .passive
    }

    fn forwarding() -> PassivePayment {
        let mut r = PassivePayment::forwarding(
            "PAS01",
            "bank",
            "R1",
            "8576001234567890",
            Amount::new(10_000).unwrap(),
            "2026-01-10T10:00:00+07:00",
        );
        r.updated_at = "2026-01-10T10:00:01+07:00".into();
        r.rev = "1".into();
        r
    }

    fn rc(rc: Rc) -> Reply {
        Ok(Answered {
            rc,
            message: String::new(),
            data: serde_json::json!({"bill": 1}),
        })
    }

    const NOW: i64 = 1_000_000;

    /// The channel's reversal (P9): reversed on a clear yes, the record untouched on a
    /// clear refusal, queued for the resolver on anything else.
    #[test]
    fn channel_reversal_replies() {
        let s = settings();
        let mut r = forwarding();
        r.state = PassiveState::Paid;
        match channel_reversal_replied(&mut r, rc(Rc::BillerPaymentNotFound), NOW, &s) {
            ChannelReversal::Reversed(n, data) => {
                assert_eq!((r.state, n.due_ms), (PassiveState::Reversed, None));
                assert_eq!(n.step.unwrap().name, "reversed_by_channel");
                assert_eq!(data["bill"], 1);
            }
            other => panic!("{other:?}"),
        }
        let mut r = forwarding();
        r.state = PassiveState::Paid;
        match channel_reversal_replied(&mut r, rc(Rc::BillerInvalidTransactionAmount), NOW, &s) {
            ChannelReversal::Refused(code, _, _) => {
                assert_eq!(
                    (code, r.state),
                    (Rc::BillerInvalidTransactionAmount, PassiveState::Paid)
                )
            }
            other => panic!("{other:?}"),
        }
        let mut r = forwarding();
        r.state = PassiveState::Paid;
        match channel_reversal_replied(&mut r, rc(Rc::BillerSuspectTransaction), NOW, &s) {
            ChannelReversal::Queued(n) => {
                assert_eq!((r.state, r.attempts), (PassiveState::Reversing, 1));
                assert!(n.due_ms.unwrap() > NOW);
                assert_eq!(n.step.unwrap().detail, REVERSAL_QUEUED);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.resolution.as_deref(), Some("channel_reversal"));
    }

    #[test]
    fn payment_replies() {
        let s = settings();
        let mut r = forwarding();
        let n = payment_replied(&mut r, rc(Rc::Success), NOW, &s);
        assert_eq!(
            (r.state, n.due_ms, n.step),
            (PassiveState::Paid, None, None)
        );
        assert_eq!(
            r.answer.as_ref().unwrap().data["payment"]["payment_ref_id"],
            "R1"
        );

        let mut r = forwarding();
        payment_replied(&mut r, rc(Rc::BillerBillNotFound), NOW, &s);
        assert_eq!(r.state, PassiveState::Refused);
        assert!(!r.never_sent());

        for (reply, reason) in [
            (Err(Failure::Timeout), "timeout"),
            (rc(Rc::BillerSuspectTransaction), "suspect"),
        ] {
            let mut r = forwarding();
            let n = payment_replied(&mut r, reply, NOW, &s);
            assert_eq!(r.state, PassiveState::InDoubt);
            assert_eq!(r.reason.as_deref(), Some(reason));
            assert_eq!(r.deadline_ms, Some(NOW + 60_000));
            assert_eq!(n.due_ms, Some(NOW + 100));
            assert_eq!(n.step.unwrap().name, "in_doubt");
            assert_eq!(r.answer.unwrap().rc, Rc::BillerSuspectTransaction);
        }

        // Garbage is voided by a reversal; what never left is refused and judged anew.
        let invalid = Failure::Invalid {
            label: "not_json",
            detail: "not JSON".into(),
        };
        let not_sent = Failure::NotSent {
            label: "connect",
            detail: "refused".into(),
        };
        for (failure, state, due) in [
            (invalid, PassiveState::Reversing, Some(NOW)),
            (not_sent, PassiveState::Refused, None),
        ] {
            let mut r = forwarding();
            let n = payment_replied(&mut r, Err(failure), NOW, &s);
            assert_eq!((r.state, n.due_ms), (state, due));
            assert_eq!(r.never_sent(), state == PassiveState::Refused);
            assert_eq!(
                r.answer.as_ref().unwrap().rc,
                Rc::BillerGatewayInvalidResponse
            );
            assert_eq!(
                r.resolution.as_deref() == Some("voided"),
                state == PassiveState::Reversing
            );
        }
    }

    #[test]
    fn resolution_steps() {
        let s = settings();
        let mut r = forwarding();
        in_doubt(&mut r, "timeout", NOW, &s);
        assert_eq!(resolver_call(&mut r, NOW + 1), Ok(Call::CheckStatus));

        // Asked again with the next backoff, capped at the window's end.
        let n = resolution_replied(
            Call::CheckStatus,
            &mut r.clone(),
            rc(Rc::BillerSuspectTransaction),
            NOW,
            &s,
        );
        assert_eq!(n.due_ms, Some(NOW + 200));
        let mut late = r.clone();
        let n = resolution_replied(
            Call::CheckStatus,
            &mut late,
            Err(Failure::Timeout),
            NOW + 59_950,
            &s,
        );
        assert_eq!(n.due_ms, Some(NOW + 60_000));

        let mut c = r.clone();
        resolution_replied(Call::CheckStatus, &mut c, rc(Rc::Success), NOW, &s);
        assert_eq!(
            (c.state, c.resolution.as_deref()),
            (PassiveState::Paid, Some("confirmed"))
        );
        let mut d = r.clone();
        let n = resolution_replied(
            Call::CheckStatus,
            &mut d,
            rc(Rc::BillerPaymentNotFound),
            NOW,
            &s,
        );
        assert_eq!((d.state, n.due_ms), (PassiveState::Reversing, Some(NOW)));
        let mut a = r.clone();
        resolution_replied(
            Call::CheckStatus,
            &mut a,
            rc(Rc::BillerPaymentAlreadyReversed),
            NOW,
            &s,
        );
        assert_eq!(a.state, PassiveState::Reversed);

        // The window passes: reversing without asking.
        let mut w = r.clone();
        let n = resolver_call(&mut w, NOW + 60_000).unwrap_err();
        assert_eq!(w.state, PassiveState::Reversing);
        assert_eq!(n.step.unwrap().name, "window_expired");
        assert_eq!(resolver_call(&mut w, NOW + 60_001), Ok(Call::Reversal));

        // Reversals retried with their backoff until done, never given up.
        let n = resolution_replied(Call::Reversal, &mut w, Err(Failure::Timeout), NOW, &s);
        assert_eq!((w.attempts, n.due_ms), (1, Some(NOW + 1000)));
        let n = resolution_replied(
            Call::Reversal,
            &mut w,
            rc(Rc::BillerSuspectTransaction),
            NOW,
            &s,
        );
        assert_eq!((w.attempts, n.due_ms), (2, Some(NOW + 5000)));
        let n = resolution_replied(Call::Reversal, &mut w, Err(Failure::Timeout), NOW, &s);
        assert_eq!(n.due_ms, Some(NOW + 5000), "the last delay repeats");
        for done in [
            Rc::Success,
            Rc::BillerPaymentAlreadyReversed,
            Rc::BillerPaymentNotFound,
        ] {
            let mut x = w.clone();
            let n = resolution_replied(Call::Reversal, &mut x, rc(done), NOW, &s);
            assert_eq!((x.state, n.due_ms), (PassiveState::Reversed, None));
        }

        // A record that ended meanwhile leaves the work set.
        let mut paid = c.clone();
        assert_eq!(
            resolver_call(&mut paid, NOW),
            Err(Next {
                step: None,
                due_ms: None
            })
        );
    }
}
