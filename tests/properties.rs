//! Property tests over generated inputs (issue 10, item 7): the channel envelope decoder,
//! amount parsing, VA parsing, the Create Bill body, the passive institution's answer
//! parser and config loading. Each property runs 10,000 generated cases; none may panic,
//! and every refusal must carry a documented rc or an error that names the field.
//!
//! Failures are not persisted (`failure_persistence: None`): a failing case is printed,
//! shrunk, and belongs in a plain `#[test]` at the end of this file.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use ipg_switch::domain::command::Action;
use ipg_switch::domain::{va, Amount, AmountError, NewBill, VaNumber};
use ipg_switch::error::{Rc, SwitchError};
use ipg_switch::passive::client::{Breaker, Failure, Forwarder};
use ipg_switch::passive::ResponseSignature;
use ipg_switch::protocol::channel::ChannelRequest;
use ipg_switch::routing::Routing;
use ipg_switch::settings::Settings;
use ipg_switch::signature;
use ipg_switch::switch::decode;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

const CASES: u32 = 10_000;
const CHANNEL: &str = "bank";
const CHANNEL_KEY: &str = "channel-key-for-properties";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn routing() -> &'static Routing {
    static R: OnceLock<Routing> = OnceLock::new();
    R.get_or_init(|| {
        Settings::from_toml(&[&format!(
            "[[channels]]\ncode = \"{CHANNEL}\"\napi_key = \"{CHANNEL_KEY}\"\n"
        )])
        .expect("the test settings load")
        .routing()
    })
}

// ---------------------------------------------------------------------------------------
// Generators shared by the properties: cheap, biased towards what parsers trip on.

/// Strings a parser may meet: unicode, control characters, digits with signs, spaces,
/// fractions and exponents, long runs, non-ASCII digits.
fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,24}",
        2 => ".{0,8}",
        2 => "[0-9]{0,20}",
        1 => "[ +\\-]?[0-9]{1,22}[ \t]?",
        1 => "-?[0-9]{1,20}([.,][0-9]{0,3})?([eE][+-]?[0-9]{1,3})?",
        1 => (60usize..3000).prop_map(|n| "9".repeat(n)),
        1 => "[０-９٠-٩]{1,16}",
        1 => Just(String::new()),
        1 => "[ \t\n\u{a0}\u{3000}]{1,3}",
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..=1_000_000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        (0u32..2_000_000).prop_map(|n| json!(f64::from(n) / 4.0)),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "rc",
            "message",
            "data",
            "type",
            "channel",
            "request_id",
            "body",
            "va_number",
            "ref_id",
            "amount",
            "prefix",
            "name",
            "total_amount",
            "components",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{0,8}",
    ]
}

/// Any JSON value, at most three levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// What a mutation does to one field: `None` removes it.
fn field_op() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        3 => arb_json().prop_map(Some),
        2 => arb_string().prop_map(|s| Some(Value::String(s))),
        1 => (0usize..5000).prop_map(|n| Some(Value::String("x".repeat(n)))),
        1 => "\\PC{0,40}".prop_map(|s| Some(Value::String(s))),
        1 => any::<u64>().prop_map(|n| Some(Value::String(n.to_string()))),
        1 => any::<i64>().prop_map(|n| Some(json!(n))),
        1 => arb_json().prop_map(|v| Some(json!({ "nested": v }))),
        1 => prop::sample::select(vec!["inquiry", "payment", "reversal", "check_status", "bank"])
            .prop_map(|s| Some(json!(s))),
    ]
}

/// Up to three (field index, operation) pairs; the index is taken modulo the field list.
fn mutations() -> impl Strategy<Value = Vec<(usize, Option<Value>)>> {
    prop::collection::vec((any::<usize>(), field_op()), 1..=3)
}

fn datetime() -> impl Strategy<Value = String> {
    (
        2000u32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
}

fn date() -> impl Strategy<Value = String> {
    (2000u32..2100, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

/// A reference as docs/protocol.md decision 11 allows: 1-64 printable ASCII, no spaces.
fn reference() -> impl Strategy<Value = String> {
    "[!-~]{1,64}"
}

/// A new reference (`ref_id`): as [`reference`], not starting with `=`, `+`, `-` or `@`
/// (decision 11: no reference is a spreadsheet formula).
fn new_reference() -> impl Strategy<Value = String> {
    "[!-*,.-<>?A-~][!-~]{0,63}"
}

fn amount_value() -> impl Strategy<Value = Value> {
    (1u64..=Amount::MAX.get())
        .prop_flat_map(|a| prop_oneof![Just(json!(a)), Just(json!(a.to_string()))])
}

// ---------------------------------------------------------------------------------------
// 1. The channel envelope decoder.

/// A valid envelope of a random type, unsigned.
fn valid_envelope() -> impl Strategy<Value = Value> {
    // terminal_id and customer_name: "any string up to 128 characters" (decision 12). The
    // decoder counts bytes, not characters (see `terminal_id_of_128_characters_is_accepted`
    // below): until that is fixed, unicode text is generated only up to 128 bytes.
    let opt_text = || {
        prop::option::of("\\PC{0,128}".prop_map(|s: String| {
            let mut end = s.len().min(128);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        }))
    };
    let inquiry =
        ("[0-9]{16}", new_reference(), opt_text(), datetime()).prop_map(|(va, r, t, d)| {
            (
                "inquiry",
                json!({"va_number": va, "ref_id": r, "terminal_id": t, "transaction_date": d}),
            )
        });
    let payment = (
        "[0-9]{16}",
        new_reference(),
        amount_value(),
        opt_text(),
        datetime(),
        opt_text(),
    )
        .prop_map(|(va, r, a, t, d, c)| {
            (
                "payment",
                json!({"va_number": va, "ref_id": r, "amount": a, "terminal_id": t,
                       "transaction_date": d, "customer_name": c}),
            )
        });
    let reversal = (
        reference(),
        amount_value(),
        prop::option::of("[0-9a-zA-Z]{1,32}"),
        prop::option::of("[0-9]{16}"),
    )
        .prop_map(|(p, a, b, va)| {
            (
                "reversal",
                json!({"payment_ref": p, "amount": a, "bill_id": b, "va_number": va}),
            )
        });
    let check_status = (reference(), "[0-9]{6}", "[0-9]{10}", date(), any::<bool>()).prop_map(
        |(p, pre, n, d, split)| {
            let body = if split {
                json!({"payment_ref": p, "prefix": pre, "virtual_account": n, "date": d})
            } else {
                json!({"payment_ref": p, "va_number": format!("{pre}{n}"), "date": d})
            };
            ("check_status", body)
        },
    );
    (
        prop_oneof![inquiry, payment, reversal, check_status],
        reference(),
    )
        .prop_map(|((kind, body), rid)| {
            json!({"type": kind, "channel": CHANNEL, "request_id": rid, "body": body})
        })
}

const ENVELOPE_FIELDS: [&str; 4] = ["type", "channel", "request_id", "body"];
const BODY_FIELDS: [&str; 13] = [
    "va_number",
    "ref_id",
    "amount",
    "terminal_id",
    "transaction_date",
    "customer_name",
    "payment_ref",
    "bill_id",
    "prefix",
    "virtual_account",
    "date",
    "unknown_extra",
    "va_number",
];

/// A valid envelope with up to three fields (of the envelope or its body) removed or
/// replaced; returns it with the names of the fields touched.
fn mutated_envelope() -> impl Strategy<Value = (Value, BTreeSet<String>)> {
    (
        valid_envelope(),
        mutations(),
        prop::collection::vec(any::<bool>(), 3),
    )
        .prop_map(|(mut env, muts, in_body)| {
            let mut touched = BTreeSet::new();
            for ((i, op), body) in muts.into_iter().zip(in_body) {
                let (obj, name) = if body && env["body"].is_object() {
                    let f = BODY_FIELDS[i % BODY_FIELDS.len()];
                    touched.insert(format!("body.{f}"));
                    (env["body"].as_object_mut().expect("object"), f)
                } else {
                    let f = ENVELOPE_FIELDS[i % ENVELOPE_FIELDS.len()];
                    touched.insert(f.to_owned());
                    (env.as_object_mut().expect("object"), f)
                };
                match op {
                    None => {
                        obj.remove(name);
                    }
                    Some(v) => {
                        obj.insert(name.to_owned(), v);
                    }
                }
            }
            (env, touched)
        })
}

#[derive(Clone, Debug)]
enum Sig {
    Missing,
    Good,
    GoodUppercase,
    GoodPadded,
    WrongKey,
    Truncated,
    Flipped(usize),
    Random(String),
}

impl Sig {
    fn valid(&self) -> bool {
        matches!(self, Sig::Good | Sig::GoodUppercase | Sig::GoodPadded)
    }

    /// The signature header for `payload`, whose right key is `key`.
    fn header_with(&self, key: &str, payload: &[u8]) -> Option<String> {
        let good = signature::sign(key.as_bytes(), payload);
        Some(match self {
            Sig::Missing => return None,
            Sig::Good => good,
            Sig::GoodUppercase => good.to_uppercase(),
            Sig::GoodPadded => format!(" {good}\t"),
            Sig::WrongKey => signature::sign(b"another-key", payload),
            Sig::Truncated => good[..62].to_owned(),
            Sig::Flipped(i) => {
                let mut b = good.into_bytes();
                let i = i % b.len();
                b[i] = if b[i] == b'0' { b'1' } else { b'0' };
                String::from_utf8(b).expect("hex")
            }
            Sig::Random(s) => s.clone(),
        })
    }

    /// The signature header of a channel request.
    fn header(&self, payload: &[u8]) -> Option<String> {
        self.header_with(CHANNEL_KEY, payload)
    }
}

fn arb_sig() -> impl Strategy<Value = Sig> {
    prop_oneof![
        Just(Sig::Missing),
        Just(Sig::Good),
        Just(Sig::GoodUppercase),
        Just(Sig::GoodPadded),
        Just(Sig::WrongKey),
        Just(Sig::Truncated),
        any::<usize>().prop_map(Sig::Flipped),
        prop_oneof!["[0-9a-f]{0,70}", "\\PC{0,10}"].prop_map(Sig::Random),
    ]
}

/// What every outcome of `decode` must satisfy, whatever the input: no panic (the caller
/// runs it), a documented rc, a bounded reason, an address unless unanswerable, and field
/// errors that name their field. Returns the request, or the refusal's reason and field.
fn check_decoded(
    payload: &[u8],
    sig: Option<&str>,
) -> Result<Result<ChannelRequest, (String, Option<String>)>, TestCaseError> {
    match decode(payload, sig, routing()) {
        Ok(req) => {
            // Served only when authenticated and addressed.
            let v: Value = serde_json::from_slice(payload).expect("decoded JSON");
            prop_assert_eq!(v["request_id"].as_str(), Some(req.request_id.as_str()));
            prop_assert_eq!(req.channel(), CHANNEL);
            prop_assert_eq!(v["type"].as_str(), Some(req.kind.as_str()));
            prop_assert!(sig.is_some());
            Ok(Ok(req))
        }
        Err(r) => {
            let rc = r.error.rc();
            let auth = matches!(r.error, SwitchError::Authentication(_));
            prop_assert!(
                matches!(
                    (r.reason, auth),
                    ("malformed_json" | "unaddressable" | "invalid_field", false)
                        | ("unknown_channel" | "bad_signature", true)
                ),
                "reason {} for {:?}",
                r.reason,
                r.error
            );
            prop_assert_eq!(
                rc,
                if auth {
                    Rc::BillerAuthentication
                } else {
                    Rc::BillerInvalidTransaction
                },
                "documented rc for {}",
                r.error
            );
            prop_assert_eq!(
                r.address.is_none(),
                matches!(r.reason, "malformed_json" | "unaddressable"),
                "address of {}",
                r.reason
            );
            let field = match &r.error {
                SwitchError::InvalidField { field, reason } => {
                    prop_assert!(!field.is_empty() && !reason.is_empty());
                    prop_assert!(r.error.message().contains(field.as_str()));
                    Some(field.clone())
                }
                SwitchError::Authentication(_) => None,
                other => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
            };
            Ok(Err((r.reason.to_owned(), field)))
        }
    }
}

#[test]
fn decode_never_panics_on_arbitrary_bytes() {
    // Raw bytes, JSON-looking text, and truncated valid envelopes.
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\{\\PC{0,60}\\}?".prop_map(String::into_bytes),
        (valid_envelope(), any::<usize>()).prop_map(|(v, cut)| {
            let b = serde_json::to_vec(&v).expect("json");
            let cut = cut % b.len();
            b[..cut].to_vec()
        }),
    ];
    TestRunner::new(config())
        .run(&(bytes, arb_sig()), |(payload, sig)| {
            let header = sig.header(&payload);
            let _ = check_decoded(&payload, header.as_deref())?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn decode_answers_arbitrary_json_with_a_documented_rc() {
    let value = prop_oneof![
        arb_json(),
        // Objects that carry the envelope's keys with arbitrary values.
        (arb_json(), arb_json(), arb_json(), arb_json()).prop_map(|(t, c, r, b)| {
            json!({"type": t, "channel": c, "request_id": r, "body": b})
        }),
        (arb_json(), reference(), arb_json()).prop_map(|(t, r, b)| {
            json!({"type": t, "channel": CHANNEL, "request_id": r, "body": b})
        }),
    ];
    TestRunner::new(config())
        .run(&(value, arb_sig()), |(v, sig)| {
            let payload = serde_json::to_vec(&v).expect("json");
            let header = sig.header(&payload);
            if let Err((reason, _)) = check_decoded(&payload, header.as_deref())? {
                // Valid JSON is "malformed" only when it is not an object.
                prop_assert!(reason != "malformed_json" || !v.is_object());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn decode_names_the_mutated_field_of_a_near_valid_envelope() {
    TestRunner::new(config())
        .run(&(mutated_envelope(), arb_sig()), |((v, touched), sig)| {
            let payload = serde_json::to_vec(&v).expect("json");
            let header = sig.header(&payload);
            let got = check_decoded(&payload, header.as_deref())?;
            let Err((reason, field)) = got else {
                prop_assert!(sig.valid(), "served with signature {:?}", sig);
                return Ok(());
            };
            match reason.as_str() {
                "unaddressable" => prop_assert!(touched.contains("request_id")),
                "unknown_channel" => prop_assert!(touched.contains("channel")),
                "bad_signature" => prop_assert!(!sig.valid(), "good signature refused"),
                "invalid_field" => {
                    let field = field.expect("a field error");
                    // A changed `type` or a replaced `body` make any body field fair game.
                    let named = touched.contains(&field)
                        || (field.starts_with("body.")
                            && (touched.contains("type") || touched.contains("body")))
                        // check_status: a missing VA is reported with both of its shapes.
                        || (field == "body.va_number"
                            && (touched.contains("body.prefix")
                                || touched.contains("body.virtual_account")));
                    prop_assert!(
                        named,
                        "error names {} but {:?} were changed",
                        field,
                        touched
                    );
                }
                other => prop_assert!(false, "reason {}", other),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn decode_serves_valid_envelopes_exactly_when_signed() {
    TestRunner::new(config())
        .run(&(valid_envelope(), arb_sig()), |(v, sig)| {
            let payload = serde_json::to_vec(&v).expect("json");
            let header = sig.header(&payload);
            match check_decoded(&payload, header.as_deref())? {
                Ok(req) => {
                    prop_assert!(sig.valid(), "served with signature {:?}", sig);
                    let b = &v["body"];
                    // Every field comes back as sent.
                    let va_of = |f: &str| VaNumber::parse(b[f].as_str().unwrap_or_default());
                    let amount = Amount::positive_from_json(&b["amount"]);
                    match &req.command.action {
                        Action::Inquiry(q) => {
                            prop_assert_eq!(&q.va, &va_of("va_number"));
                            prop_assert_eq!(&b["ref_id"], q.ref_id.as_str());
                            prop_assert_eq!(b["terminal_id"].as_str(), q.terminal_id.as_deref());
                            prop_assert_eq!(
                                b["transaction_date"].as_str(),
                                q.transaction_date.as_deref()
                            );
                        }
                        Action::Pay(p) => {
                            prop_assert_eq!(&p.va, &va_of("va_number"));
                            prop_assert_eq!(&b["ref_id"], p.ref_id.as_str());
                            prop_assert_eq!(&p.amount, &amount);
                            prop_assert_eq!(
                                b["customer_name"].as_str(),
                                p.customer_name.as_deref()
                            );
                        }
                        Action::Reverse(r) => {
                            prop_assert_eq!(&b["payment_ref"], r.payment_ref.as_str());
                            prop_assert_eq!(&r.amount, &amount);
                        }
                        Action::CheckStatus(c) => {
                            prop_assert_eq!(&b["payment_ref"], c.payment_ref.as_str());
                            prop_assert_eq!(b["date"].as_str(), c.date.as_deref());
                            prop_assert_eq!(c.va.as_ref().map(|v| v.as_str().len()), Ok(16));
                        }
                    }
                }
                Err((reason, field)) => {
                    prop_assert!(
                        !sig.valid(),
                        "valid, signed envelope refused: {} {:?}",
                        reason,
                        field
                    );
                    prop_assert_eq!(reason, "bad_signature");
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Amounts.

/// The documented rule: a JSON integer, or a string of ASCII digits (surrounding
/// whitespace allowed, leading zeros harmless), whose value is at most `Amount::MAX`.
/// Fractions, exponents, signs, floats and everything else are refused.
fn expected_amount(v: &Value) -> Option<u64> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            u64::try_from(t.parse::<u128>().ok()?).ok()?
        }
        _ => return None,
    };
    (n <= Amount::MAX.get()).then_some(n)
}

/// Whether the refusal says what is wrong with `v`.
fn amount_error_fits(v: &Value, e: &AmountError) -> bool {
    let max = Amount::MAX.get();
    // Digits with separators, an exponent or a sign: a number, just not a whole one.
    let numeric = |t: &str| {
        t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_digit() || b".,eE+-".contains(&b))
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match (v, e) {
        (Value::Null, AmountError::Missing) => true,
        (Value::Number(n), AmountError::NotPositive) => n.as_f64().is_some_and(|f| f <= 0.0),
        (Value::Number(n), AmountError::TooLarge) => n.as_f64().is_some_and(|f| f > max as f64),
        (Value::Number(n), AmountError::NotWhole(_)) => n.is_f64(),
        (Value::String(s), e) => {
            let t = s.trim();
            match e {
                AmountError::Missing => t.is_empty(),
                AmountError::NotPositive => {
                    t.strip_prefix('-').is_some_and(numeric)
                        || (digits(t) && t.bytes().all(|b| b == b'0'))
                }
                AmountError::TooLarge => {
                    digits(t) && {
                        let significant = t.trim_start_matches('0');
                        significant.len() > 15 || significant.parse::<u64>().is_ok_and(|n| n > max)
                    }
                }
                AmountError::NotWhole(_) => numeric(t) && t.contains(['.', ',', 'e', 'E']),
                AmountError::NotANumber(_) => {
                    !digits(t) && !(numeric(t) && t.contains(['.', ',', 'e', 'E']))
                }
            }
        }
        (Value::Bool(_) | Value::Array(_) | Value::Object(_), AmountError::NotANumber(_)) => true,
        _ => false,
    }
}

fn arb_amount_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => arb_json(),
        2 => arb_number(),
        2 => arb_string().prop_map(Value::String),
        // Near the bounds: MAX, 2^53, u64/i64 limits and beyond.
        2 => prop::sample::select(vec![
            "0", "1", "-0", "-1", "999999999999999", "1000000000000000", "9007199254740992",
            "9007199254740993", "18446744073709551615", "18446744073709551616",
            "9223372036854775807", "-9223372036854775808", "-9223372036854775809",
            "1e3", "1E3", "1.0", "100.00", "1e-3", "-1.5", "0.0", "123456789012345678901234567890",
        ])
        .prop_flat_map(|t| {
            let v: Value = serde_json::from_str(t).expect("valid JSON number");
            prop_oneof![Just(v), Just(Value::String(t.to_owned()))]
        }),
        // JSON number texts: sign, leading zeros, fraction, exponent, huge.
        2 => "-?[0-9]{1,25}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?".prop_filter_map(
            "valid JSON",
            |t| serde_json::from_str::<Value>(&t).ok(),
        ),
        // Decorated digits: whitespace, '+', leading zeros, separators, unicode digits.
        2 => ("[ \t\n\u{a0}]{0,2}", "[+\\-]?", "0{0,3}", 0u64..=Amount::MAX.get(), "[ ,._]?", "[ \t\n]{0,2}")
            .prop_map(|(a, s, z, n, sep, b)| Value::String(format!("{a}{s}{z}{n}{sep}{b}"))),
    ]
}

#[test]
fn amounts_are_exact_positive_integers_within_range() {
    TestRunner::new(config())
        .run(&arb_amount_input(), |v| {
            let expected = expected_amount(&v);
            match Amount::from_json(&v) {
                Ok(a) => prop_assert_eq!(Some(a.get()), expected, "accepted {}", v),
                Err(e) => {
                    prop_assert_eq!(expected, None, "refused {}: {}", v, e);
                    prop_assert!(amount_error_fits(&v, &e), "{} refused as {:?}", v, e);
                    // The rc every amount error maps to is documented.
                    let e = SwitchError::from(e);
                    prop_assert_eq!(e.rc(), Rc::BillerInvalidTransactionAmount);
                    prop_assert!(!e.message().is_empty());
                }
            }
            let positive = expected.filter(|&n| n > 0);
            match Amount::positive_from_json(&v) {
                Ok(a) => prop_assert_eq!(Some(a.get()), positive, "accepted {}", v),
                Err(e) => prop_assert_eq!(positive, None, "refused {}: {}", v, e),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn amounts_round_trip_and_refuse_what_is_beyond_max() {
    let max = Amount::MAX.get();
    TestRunner::new(config())
        .run(
            &(
                prop_oneof![1u64..=max, 1u64..=1000, (max - 1000)..=max],
                any::<u64>(),
            ),
            |(n, big)| {
                for v in [
                    json!(n),
                    json!(n.to_string()),
                    json!(format!(" {n} ")),
                    json!(format!("000{n}")),
                ] {
                    prop_assert_eq!(Amount::positive_from_json(&v).map(Amount::get), Ok(n));
                }
                prop_assert_eq!(Amount::new(n).map(|a| a.to_string()), Ok(n.to_string()));
                // Never a rounding guess, a sign or an exponent.
                for v in [
                    json!(n as f64),
                    json!(format!("+{n}")),
                    json!(format!("-{n}")),
                    json!(-(n as i64)),
                    json!(format!("{n}.0")),
                    json!(format!("{n}e0")),
                ] {
                    prop_assert!(Amount::positive_from_json(&v).is_err(), "accepted {}", v);
                }
                let big = big.max(max + 1);
                prop_assert_eq!(Amount::from_json(&json!(big)), Err(AmountError::TooLarge));
                prop_assert_eq!(
                    Amount::from_json(&json!(big.to_string())),
                    Err(AmountError::TooLarge)
                );
                prop_assert_eq!(Amount::new(big), Err(AmountError::TooLarge));
                Ok(())
            },
        )
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// 3. VA numbers.

fn arb_va_input() -> impl Strategy<Value = String> {
    prop_oneof![
        arb_string(),
        "[0-9]{5,18}",
        // One character of a valid VA replaced by anything.
        ("[0-9]{16}", 0usize..16, any::<char>()).prop_map(|(s, i, c)| {
            let mut chars: Vec<char> = s.chars().collect();
            chars[i] = c;
            chars.into_iter().collect()
        }),
        "[0-9]{16}".prop_map(|s| format!(" {s}")),
        "[0-9]{15}[ \u{a0}٠-٩]",
    ]
}

#[test]
fn va_numbers_are_exactly_sixteen_ascii_digits() {
    TestRunner::new(config())
        .run(&arb_va_input(), |s| {
            let digits = |n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
            let expected = digits(16);
            // The parts follow the same rule: six digits of prefix, ten of bill number.
            prop_assert_eq!(va::check_prefix(&s).is_ok(), digits(6));
            prop_assert_eq!(va::check_number(&s).is_ok(), digits(10));
            match VaNumber::parse(&s) {
                Ok(va) => {
                    prop_assert!(expected, "accepted {:?}", s);
                    prop_assert_eq!(va.as_str(), s.as_str());
                    prop_assert_eq!(format!("{}{}", va.prefix(), va.number()), s.clone());
                    prop_assert_eq!(va.to_string(), s.clone());
                    let masked = va.masked();
                    prop_assert_eq!(&masked[..6], &s[..6]);
                    prop_assert_eq!(&masked[12..], &s[12..]);
                    let again = VaNumber::from_parts(va.prefix(), va.number());
                    prop_assert_eq!(again.as_ref().map(VaNumber::as_str), Ok(s.as_str()));
                    // Serde round trip goes through the same rule.
                    let back: VaNumber =
                        serde_json::from_value(serde_json::to_value(&va).expect("ser"))
                            .expect("de");
                    prop_assert_eq!(back, va);
                }
                Err(e) => {
                    prop_assert!(!expected, "refused {:?}: {}", s, e);
                    let e = SwitchError::from(e);
                    prop_assert_eq!(e.rc(), Rc::BillerInvalidVaNumber);
                    prop_assert!(serde_json::from_value::<VaNumber>(json!(s)).is_err());
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// 4. The Create Bill body.

fn now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-01-10T10:00:00+07:00").expect("valid")
}

fn valid_bills() -> Vec<Value> {
    let mut v: Vec<Value> = [
        include_str!("../demo/bills/infaq-open.json"),
        include_str!("../demo/bills/spp-januari-close.json"),
        include_str!("../demo/bills/uang-gedung-partial.json"),
    ]
    .iter()
    .map(|s| serde_json::from_str(s).expect("demo bill"))
    .collect();
    v.push(
        json!({"institution_code":"SCH01","va_number":"1234567890","prefix":["857499","857500"],
        "type":"partial","name":"SPP","customer_name":"A","total_amount":"150000",
        "components":[{"name":"SPP","qty":1,"price":100000,"total":100000},
                      {"name":"Buku","qty":"2","price":"25000","total":"50000"}],
        "valid_until":"2026-02-01T00:00:00+07:00",
        "additional_data":[{"key":"k","label":"L","value":"v"}], "channel": "old"}),
    );
    v
}

const BILL_FIELDS: [&str; 18] = [
    "institution_code",
    "va_number",
    "prefix",
    "type",
    "name",
    "customer_name",
    "total_amount",
    "components",
    "valid_until",
    "additional_data",
    "invoice_number",
    "customer_email",
    "customer_phone",
    "customer_address",
    "description",
    "ext_description",
    "channel",
    "unknown_extra",
];

/// Field-specific values that are nearly right.
fn bill_field_op(field: &'static str) -> BoxedStrategy<Option<Value>> {
    let specific: BoxedStrategy<Value> = match field {
        "va_number" => prop_oneof!["[0-9]{9,11}", "[0-9 ]{10}"].prop_map(Value::from).boxed(),
        "prefix" => prop_oneof![
            "[0-9]{5,7}".prop_map(Value::from),
            prop::collection::vec(prop_oneof!["[0-9]{6}", "85749[89]"], 0..4)
                .prop_map(|v| json!(v)),
        ]
        .boxed(),
        "type" => prop::sample::select(vec!["open", "close", "partial", "Close", ""])
            .prop_map(Value::from)
            .boxed(),
        "total_amount" => arb_amount_input().boxed(),
        "components" => prop::collection::vec(
            (
                prop::option::of("\\PC{0,8}"),
                arb_amount_input(),
                arb_amount_input(),
                arb_amount_input(),
                0u64..1000,
                0u64..1_000_000,
                any::<bool>(),
            )
                .prop_map(|(name, q, p, t, qn, pn, consistent)| {
                    if consistent {
                        json!({"name": name, "qty": qn, "price": pn, "total": qn * pn})
                    } else {
                        json!({"name": name, "qty": q, "price": p, "total": t})
                    }
                }),
            0..3,
        )
        .prop_map(Value::Array)
        .boxed(),
        "valid_until" => prop_oneof![
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](Z|[+-][01][0-9]:[0-5][0-9])?"
                .prop_map(Value::from),
            arb_string().prop_map(Value::from),
        ]
        .boxed(),
        "additional_data" => prop::collection::vec(
            (arb_json(), arb_json(), prop::option::of(arb_json())).prop_map(|(k, l, v)| {
                let mut m = Map::new();
                m.insert("key".into(), k);
                m.insert("label".into(), l);
                if let Some(v) = v {
                    m.insert("value".into(), v);
                }
                Value::Object(m)
            }),
            0..3,
        )
        .prop_map(Value::Array)
        .boxed(),
        _ => arb_string().prop_map(Value::from).boxed(),
    };
    prop_oneof![3 => field_op(), 2 => specific.prop_map(Some)].boxed()
}

fn mutated_bill() -> impl Strategy<Value = (Value, BTreeSet<String>)> {
    let one =
        prop::sample::select(BILL_FIELDS.to_vec()).prop_flat_map(|f| (Just(f), bill_field_op(f)));
    (
        prop::sample::select(valid_bills()),
        prop::collection::vec(one, 1..=3),
    )
        .prop_map(|(mut bill, muts)| {
            let mut touched = BTreeSet::new();
            let obj = bill.as_object_mut().expect("object");
            for (f, op) in muts {
                touched.insert(f.to_owned());
                match op {
                    None => {
                        obj.remove(f);
                    }
                    Some(v) => {
                        obj.insert(f.to_owned(), v);
                    }
                }
            }
            (bill, touched)
        })
}

/// The first segment of a Create Bill error's field (`components.0.qty` -> `components`),
/// checked against the documented field names.
fn bill_error_root(field: &str) -> Result<&str, TestCaseError> {
    let mut parts = field.split('.');
    let root = parts.next().unwrap_or_default();
    let known = root == "body" || BILL_FIELDS[..16].contains(&root);
    prop_assert!(known, "error names unknown field {:?}", field);
    if root == "components" {
        let rest: Vec<&str> = parts.collect();
        let ok = match rest.as_slice() {
            [] => true,
            [i] => i.parse::<usize>().is_ok(),
            [i, f] => i.parse::<usize>().is_ok() && ["name", "qty", "price", "total"].contains(f),
            _ => false,
        };
        prop_assert!(ok, "error names unknown field {:?}", field);
    } else {
        prop_assert!(
            parts.next().is_none(),
            "error names unknown field {:?}",
            field
        );
    }
    Ok(root)
}

fn check_bill(v: &Value) -> Result<Result<NewBill, String>, TestCaseError> {
    match NewBill::from_json(v, now()) {
        Ok(nb) => {
            prop_assert_eq!(&v["va_number"], nb.number.as_str());
            prop_assert_eq!(nb.number.len(), 10);
            prop_assert!(!nb.prefixes.is_empty());
            for p in &nb.prefixes {
                prop_assert!(VaNumber::from_parts(p, &nb.number).is_ok());
            }
            prop_assert_eq!(
                Some(nb.total_amount.get()),
                expected_amount(&v["total_amount"]),
                "total_amount {}",
                v["total_amount"]
            );
            if let Some(until) = nb.valid_until {
                prop_assert!(until > now());
            }
            Ok(Ok(nb))
        }
        Err(e) => {
            prop_assert!(!e.reason.is_empty());
            prop_assert!(e.to_string().contains(&e.field));
            bill_error_root(&e.field)?;
            Ok(Err(e.field))
        }
    }
}

#[test]
fn create_bill_names_the_field_of_arbitrary_json() {
    let body = prop_oneof![
        arb_json(),
        prop::collection::vec(
            (prop::sample::select(BILL_FIELDS.to_vec()), arb_json()),
            0..10
        )
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ];
    TestRunner::new(config())
        .run(&body, |v| {
            let _ = check_bill(&v)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn create_bill_names_the_mutated_field() {
    TestRunner::new(config())
        .run(&mutated_bill(), |(v, touched)| {
            if let Err(field) = check_bill(&v)? {
                let root = bill_error_root(&field)?;
                let named = touched.contains(root)
                    // The total is checked against the components and the type.
                    || (root == "total_amount"
                        && (touched.contains("components") || touched.contains("type")));
                prop_assert!(
                    named,
                    "error names {} but {:?} were changed",
                    field,
                    touched
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// 5. The passive institution's answer, through the public `Forwarder::call` against a
// local server that answers exactly what the case asks for. (The parser itself,
// `passive::client::parse_answer`, is private.)

const INSTITUTION_KEY: &str = "institution-secret-key-for-properties";

#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    sig: Sig,
    check: ResponseSignature,
}

fn arb_answer_body() -> impl Strategy<Value = Vec<u8>> {
    let rc = prop_oneof![
        4 => prop::sample::select(Rc::ALL.to_vec()).prop_map(|r| json!(r.as_str())),
        1 => prop::sample::select(Rc::ALL.to_vec())
            .prop_map(|r| json!(r.as_str().to_lowercase())),
        1 => prop::sample::select(Rc::ALL.to_vec()).prop_map(|r| json!(format!(" {}", r.as_str()))),
        2 => arb_json(),
    ];
    let message = prop_oneof![
        "\\PC{0,40}".prop_map(Value::from),
        (500usize..700).prop_map(|n| json!("é".repeat(n))),
        arb_json(),
    ];
    let envelope = (
        prop::option::of(rc),
        prop::option::of(message),
        prop::option::of(arb_json()),
        prop::option::of(arb_string()),
    )
        .prop_map(|(rc, message, data, ts)| {
            let mut m = Map::new();
            for (k, v) in [("rc", rc), ("message", message), ("data", data)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let Some(ts) = ts {
                m.insert("timestamp".into(), json!(ts));
            }
            serde_json::to_vec(&Value::Object(m)).expect("json")
        });
    prop_oneof![
        4 => envelope,
        1 => arb_json().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"<html>oops</html>".to_vec()),
    ]
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    (
        prop_oneof![
            4 => Just(200u16),
            2 => prop::sample::select(vec![201u16, 202, 400, 401, 403, 404, 409, 422, 429]),
            2 => prop::sample::select(vec![500u16, 502, 503, 504, 599]),
        ],
        arb_answer_body(),
        arb_sig(),
        prop::sample::select(vec![
            ResponseSignature::Required,
            ResponseSignature::IfPresent,
            ResponseSignature::Off,
        ]),
    )
        .prop_map(|(status, body, sig, check)| Answer {
            status,
            body,
            // Answers are signed with the institution's key.
            sig,
            check,
        })
}

/// A local HTTP server answering `{"status", "body" (hex), "sig"}` as told.
async fn answering_server() -> String {
    use axum::body::{Body, Bytes};
    use axum::response::Response;

    async fn answer(req: Bytes) -> Response {
        let v: Value = serde_json::from_slice(&req).expect("test request");
        let body = hex::decode(v["body"].as_str().expect("body")).expect("hex");
        let mut r = Response::builder().status(v["status"].as_u64().expect("status") as u16);
        if let Some(s) = v["sig"].as_str() {
            r = r.header("Signature", s);
        }
        r.body(Body::from(body)).expect("response")
    }
    let app = axum::Router::new().route("/answer", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[test]
fn passive_answers_are_a_known_rc_or_an_invalid_failure() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let base = rt.block_on(answering_server());
    let http = ipg_switch::http_client::client(Duration::from_secs(30), Duration::from_secs(5), 4)
        .expect("client");
    let forwarder = |check| {
        Forwarder::new(
            "PST01",
            &base,
            INSTITUTION_KEY,
            Duration::from_secs(30),
            4,
            check,
            // Never opens: every case must reach the server.
            Breaker::new(u32::MAX, Duration::from_millis(1)),
        )
    };
    let forwarders = [
        (
            ResponseSignature::Required,
            forwarder(ResponseSignature::Required),
        ),
        (
            ResponseSignature::IfPresent,
            forwarder(ResponseSignature::IfPresent),
        ),
        (ResponseSignature::Off, forwarder(ResponseSignature::Off)),
    ];
    TestRunner::new(config())
        .run(&arb_answer(), |a| {
            // Over HTTP, trailing whitespace is dropped and values are visible ASCII.
            let header = a.sig.header_with(INSTITUTION_KEY, &a.body).map(|h| {
                h.trim_end()
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .collect::<String>()
            });
            let request = json!({"status": a.status, "body": hex::encode(&a.body), "sig": header});
            let f = &forwarders
                .iter()
                .find(|(c, _)| *c == a.check)
                .expect("one")
                .1;
            let reply = rt.block_on(f.call(&http, "answer", &request));

            let signed_ok = match (a.check, &header) {
                (ResponseSignature::Off, _) | (ResponseSignature::IfPresent, None) => true,
                (ResponseSignature::Required, None) => false,
                (_, Some(_)) => a.sig.valid(),
            };
            let parsed: Option<Value> = serde_json::from_slice(&a.body).ok();
            let rc = parsed
                .as_ref()
                .and_then(|v| v.get("rc"))
                .and_then(Value::as_str)
                .and_then(|s| Rc::ALL.into_iter().find(|r| r.as_str() == s));
            match reply {
                Ok(ans) => {
                    prop_assert!(a.status < 500, "served a {}", a.status);
                    prop_assert!(signed_ok, "served with signature {:?}", a.sig);
                    prop_assert_eq!(Some(ans.rc), rc);
                    let v = parsed.expect("parsed");
                    let message: String = v["message"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(512)
                        .collect();
                    prop_assert_eq!(ans.message, message);
                    prop_assert_eq!(&ans.data, v.get("data").unwrap_or(&Value::Null));
                }
                Err(failure) => {
                    prop_assert!(
                        a.status >= 500 || !signed_ok || rc.is_none(),
                        "refused a usable answer: {:?}",
                        failure
                    );
                    let Failure::Invalid { label, detail } = &failure else {
                        return Err(TestCaseError::fail(format!("not Invalid: {failure:?}")));
                    };
                    let expected = if a.status >= 500 {
                        "http_5xx"
                    } else if !signed_ok {
                        "bad_signature"
                    } else if parsed
                        .as_ref()
                        .and_then(|v| v.get("rc")?.as_str())
                        .is_some()
                    {
                        "unknown_rc"
                    } else {
                        "not_json"
                    };
                    prop_assert_eq!(*label, expected);
                    prop_assert!(failure.maybe_received());
                    // Safe to show a channel: names the institution, never the key.
                    prop_assert!(detail.contains("PST01"));
                    prop_assert!(!failure.describe().contains(INSTITUTION_KEY));
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// 6. Config loading: generated TOML files through `Settings::load`.

#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    Int,
    Bool,
    Float,
    Ints,
    Strs,
    Table,
}

/// Every key of config/default.toml and of a channel or an institution, with its type.
const SCHEMA: &[(&str, &str, Kind)] = &[
    ("kafka", "bootstrap_servers", Kind::Str),
    ("kafka", "group_id", Kind::Str),
    ("kafka", "topic_partitions", Kind::Int),
    ("kafka", "topic_replication_factor", Kind::Int),
    ("kafka", "session_timeout_ms", Kind::Int),
    ("kafka", "auto_commit_interval_ms", Kind::Int),
    ("kafka", "linger_ms", Kind::Int),
    ("kafka", "message_timeout_ms", Kind::Int),
    ("kafka", "properties", Kind::Table),
    ("redis", "url", Kind::Str),
    ("redis", "command_timeout_ms", Kind::Int),
    ("topics", "request", Kind::Str),
    ("topics", "response", Kind::Str),
    ("topics", "webhook", Kind::Str),
    ("topics", "dead_letter", Kind::Str),
    ("topics", "webhook_retry_prefix", Kind::Str),
    ("topics", "webhook_dead_letter", Kind::Str),
    ("topics", "passive_events", Kind::Str),
    ("pipeline", "lanes", Kind::Int),
    ("pipeline", "lane_queue", Kind::Int),
    ("pipeline", "max_in_flight", Kind::Int),
    ("pipeline", "retry_initial_ms", Kind::Int),
    ("pipeline", "retry_max_ms", Kind::Int),
    ("switch", "utc_offset", Kind::Str),
    ("switch", "lock_ttl_ms", Kind::Int),
    ("switch", "lock_wait_ms", Kind::Int),
    ("switch", "bill_cache", Kind::Int),
    ("metrics", "listen", Kind::Str),
    ("log", "format", Kind::Str),
    ("log", "level", Kind::Str),
    ("api", "listen", Kind::Str),
    ("api", "max_body_bytes", Kind::Int),
    ("api", "token_ttl_secs", Kind::Int),
    ("api", "sandbox", Kind::Bool),
    ("webhook", "enabled", Kind::Bool),
    ("webhook", "group_id", Kind::Str),
    ("webhook", "backoff_ms", Kind::Ints),
    ("webhook", "jitter", Kind::Float),
    ("webhook", "request_timeout_ms", Kind::Int),
    ("webhook", "connect_timeout_ms", Kind::Int),
    ("webhook", "concurrency", Kind::Int),
    ("webhook", "rate_per_second", Kind::Int),
    ("webhook", "institution_queue", Kind::Int),
    ("webhook", "max_in_flight", Kind::Int),
    ("webhook", "gate_ttl_ms", Kind::Int),
    ("passive", "timeout_ms", Kind::Int),
    ("passive", "connect_timeout_ms", Kind::Int),
    ("passive", "max_concurrency", Kind::Int),
    ("passive", "response_signature", Kind::Str),
    ("passive", "breaker_failures", Kind::Int),
    ("passive", "breaker_open_ms", Kind::Int),
    ("passive", "resolver", Kind::Bool),
    ("passive", "resolve_poll_ms", Kind::Int),
    ("passive", "resolve_window_ms", Kind::Int),
    ("passive", "check_backoff_ms", Kind::Ints),
    ("passive", "reversal_backoff_ms", Kind::Ints),
];

const CHANNEL_KEYS: &[(&str, Kind)] = &[
    ("code", Kind::Str),
    ("api_key", Kind::Str),
    ("api_key_env", Kind::Str),
    ("rate_per_second", Kind::Float),
    ("burst", Kind::Int),
];

const INSTITUTION_KEYS: &[(&str, Kind)] = &[
    ("code", Kind::Str),
    ("name", Kind::Str),
    ("prefixes", Kind::Strs),
    ("mode", Kind::Str),
    ("api_key", Kind::Str),
    ("api_key_env", Kind::Str),
    ("webhook_url", Kind::Str),
    ("base_url", Kind::Str),
    ("rate_per_second", Kind::Float),
    ("burst", Kind::Int),
    ("timeout_ms", Kind::Int),
    ("max_concurrency", Kind::Int),
    ("response_signature", Kind::Str),
];

/// Strings a deployment might write: the defaults' own values (topic names, enum names,
/// URLs, offsets, addresses) and random text.
fn toml_string() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "ipg.channel.request", "ipg.channel.response", "ipg.webhook.job", "ipg.dead_letter",
            "ipg.webhook.retry", "ipg.webhook.dead_letter", "ipg.passive.event", "ipg-switch",
            "ipg-switch-webhook", "embedded", "redis://127.0.0.1:6379/0", "rediss://x", "",
            "+07:00", "-00:30", "+7", "WIB", "127.0.0.1:9464", "[::1]:80", "localhost:80",
            "human", "json", "info", "debug,rdkafka=warn", "[{", "required", "if_present",
            "off", "hosted", "passive", "857499", "85749", "http://x", "ftp://x", "PATH",
            "NOT_SET_ANYWHERE", "a:b", "{x}",
        ])
        .prop_map(toml::Value::from),
        2 => arb_string().prop_map(toml::Value::from),
        1 => "[a-z=,\\[\\]{}:.*]{0,12}".prop_map(toml::Value::from),
    ]
}

fn toml_int() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            999,
            1000,
            1001,
            4096,
            4097,
            86_400,
            86_401,
            1_000_000,
            1_000_001,
            16_777_216,
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ]),
        any::<i64>(),
        0i64..100_000,
    ]
    .prop_map(toml::Value::from)
}

fn toml_float() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        prop::sample::select(vec![
            0.0f64,
            -0.0,
            0.5,
            1.0,
            1.5,
            -1.0,
            1e6,
            1e6 + 1.0,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
        ]),
        any::<f64>(),
    ]
    .prop_map(toml::Value::from)
}

fn toml_of(kind: Kind) -> BoxedStrategy<toml::Value> {
    match kind {
        Kind::Str => toml_string().boxed(),
        // Whole numbers written as floats, as a hand-edited file has them (5000.0, 1e30).
        Kind::Int => prop_oneof![4 => toml_int(), 1 => toml_float()].boxed(),
        Kind::Bool => any::<bool>().prop_map(toml::Value::from).boxed(),
        Kind::Float => toml_float().boxed(),
        Kind::Ints => prop::collection::vec(toml_int(), 0..25)
            .prop_map(toml::Value::Array)
            .boxed(),
        Kind::Strs => prop::collection::vec(toml_string(), 0..4)
            .prop_map(toml::Value::Array)
            .boxed(),
        Kind::Table => prop::collection::vec(("[a-z.]{1,10}", toml_any()), 0..3)
            .prop_map(|kv| toml::Value::Table(kv.into_iter().collect()))
            .boxed(),
    }
}

/// Any TOML value (no datetimes): the wrong type for most keys.
fn toml_any() -> BoxedStrategy<toml::Value> {
    let leaf = prop_oneof![
        toml_string(),
        toml_int(),
        toml_float(),
        any::<bool>().prop_map(toml::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..3)
                .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A value for a key of this kind: usually of the right type, sometimes of any type.
fn value_for(kind: Kind) -> BoxedStrategy<toml::Value> {
    prop_oneof![3 => toml_of(kind), 1 => toml_any()].boxed()
}

/// An unknown key: a typo of a real one, or random (dots, brackets and all).
fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SCHEMA).prop_map(|(_, k, _)| format!("{k}s")),
        "[a-zA-Z_][a-zA-Z0-9_\\-]{0,10}",
        "[a-z_.\\[\\]0-9 \\-]{1,10}",
    ]
}

/// A list entry (`[[channels]]`/`[[institutions]]`) with some of its keys.
fn entry(keys: &'static [(&'static str, Kind)]) -> BoxedStrategy<toml::Table> {
    let field = prop::sample::select(keys).prop_flat_map(|(k, kind)| (Just(k), value_for(kind)));
    (
        prop::collection::vec(field, 0..8),
        prop::option::of((unknown_key(), toml_any())),
    )
        .prop_map(|(fields, extra)| {
            let mut t = toml::Table::new();
            for (k, v) in fields {
                t.insert(k.to_owned(), v);
            }
            if let Some((k, v)) = extra {
                t.insert(k, v);
            }
            t
        })
        .boxed()
}

/// One change to the defaults, with the key names a good error may name.
fn change() -> impl Strategy<Value = (toml::Table, Vec<String>)> {
    let known = prop::sample::select(SCHEMA).prop_flat_map(|(s, k, kind)| {
        value_for(kind).prop_map(move |v| {
            let mut sec = toml::Table::new();
            sec.insert(k.to_owned(), v);
            let mut t = toml::Table::new();
            t.insert(s.to_owned(), toml::Value::Table(sec));
            (t, vec![k.to_owned()])
        })
    });
    // Numbers at the edges of what the fields hold, for the numeric keys.
    let edge_number = (
        prop::sample::select(
            SCHEMA
                .iter()
                .filter(|(_, _, k)| matches!(k, Kind::Int | Kind::Ints | Kind::Float))
                .copied()
                .collect::<Vec<_>>(),
        ),
        prop::sample::select(vec![
            toml::Value::from(i64::MAX),
            toml::Value::from(i64::MIN),
            toml::Value::from(-1),
            toml::Value::from(0),
            toml::Value::from(i64::from(u32::MAX) + 1),
            toml::Value::from(1e30),
            toml::Value::from(1.8446744073709552e19),
            toml::Value::from(f64::INFINITY),
            toml::Value::from(f64::NAN),
            toml::Value::from(-0.5),
            toml::Value::from(0.5),
        ]),
        1usize..4,
    )
        .prop_map(|((s, k, kind), v, n)| {
            let v = match kind {
                Kind::Ints => toml::Value::Array(vec![v; n]),
                _ => v,
            };
            let mut sec = toml::Table::new();
            sec.insert(k.to_owned(), v);
            let mut t = toml::Table::new();
            t.insert(s.to_owned(), toml::Value::Table(sec));
            (t, vec![k.to_owned()])
        });
    let unknown_in_section = (
        prop::sample::select(SCHEMA).prop_map(|(s, _, _)| s),
        unknown_key(),
        toml_any(),
    )
        .prop_map(|(s, k, v)| {
            let mut sec = toml::Table::new();
            sec.insert(k.clone(), v);
            let mut t = toml::Table::new();
            t.insert(s.to_owned(), toml::Value::Table(sec));
            (t, vec![k])
        });
    let unknown_top = (unknown_key(), toml_any()).prop_map(|(k, v)| {
        let mut t = toml::Table::new();
        t.insert(k.clone(), v);
        (t, vec![k])
    });
    let section_wrong_type =
        (prop::sample::select(SCHEMA), toml_any()).prop_map(|((s, _, _), v)| {
            let mut t = toml::Table::new();
            t.insert(s.to_owned(), v);
            (t, vec![s.to_owned()])
        });
    let list = |name: &'static str, keys: &'static [(&'static str, Kind)]| {
        prop::collection::vec(entry(keys), 1..3).prop_map(move |entries| {
            let mut names: Vec<String> = vec![name.to_owned()];
            for e in &entries {
                names.extend(e.keys().cloned());
            }
            // Keys an entry lacks are the ones a good error names ("is required").
            names.extend(keys.iter().map(|(k, _)| (*k).to_owned()));
            let mut t = toml::Table::new();
            t.insert(
                name.to_owned(),
                toml::Value::Array(entries.into_iter().map(toml::Value::Table).collect()),
            );
            (t, names)
        })
    };
    prop_oneof![
        8 => known,
        2 => edge_number,
        2 => unknown_in_section,
        1 => unknown_top,
        1 => section_wrong_type,
        2 => list("channels", CHANNEL_KEYS),
        2 => list("institutions", INSTITUTION_KEYS),
    ]
}

/// Merges `b` into `a`, one level deep (sections merge, values replace).
fn merge(a: &mut toml::Table, b: toml::Table) {
    for (k, v) in b {
        match (a.get_mut(&k), v) {
            (Some(toml::Value::Table(x)), toml::Value::Table(y)) => x.extend(y),
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
}

fn config_document() -> impl Strategy<Value = (String, Option<Vec<String>>)> {
    let generated = prop::collection::vec(change(), 1..=3).prop_map(|changes| {
        let mut doc = toml::Table::new();
        let mut names = Vec::new();
        for (t, n) in changes {
            merge(&mut doc, t);
            names.extend(n);
        }
        (
            toml::to_string(&doc).expect("a TOML table serializes"),
            Some(names),
        )
    });
    prop_oneof![
        9 => generated,
        // Not always TOML at all: the error need not name a key then.
        1 => prop_oneof!["\\PC{0,60}", "\\[[a-z]{1,8}\\]\n[a-z_]{1,8} = [0-9a-z\"]{0,6}"]
            .prop_map(|s| (s, None)),
    ]
}

thread_local! {
    /// Set while a call is expected to hit one of the known panics below: the hook then
    /// records where instead of printing.
    static QUIET_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANIC_AT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs `f`, catching a panic; returns where it panicked (`file:line: message`).
fn panic_site<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANIC.with(std::cell::Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = format!("{at}: {msg}"));
            } else {
                previous(info);
            }
        }));
    });
    QUIET_PANIC.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANIC.with(|q| q.set(false));
    r.map_err(|_| PANIC_AT.with(|p| p.borrow().clone()))
}

#[test]
fn config_errors_name_the_key() {
    // Settings::load also reads IPG__* variables: these properties assume none are set.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("generated.toml");
    let cfg = ProptestConfig {
        max_global_rejects: CASES,
        ..config()
    };
    TestRunner::new(cfg)
        .run(&config_document(), |(doc, names)| {
            // A new file each time: rewriting one in place costs ext4 a flush per case.
            std::fs::write(&path, doc.as_bytes()).expect("write");
            let loaded = panic_site(|| Settings::load(Some(&path)));
            std::fs::remove_file(&path).expect("remove");
            let loaded = match loaded {
                Ok(l) => l,
                Err(site) => return Err(TestCaseError::fail(format!("panicked at {site}\n{doc}"))),
            };
            if let (Err(e), Some(names)) = (loaded, names) {
                let msg = e.to_string().to_lowercase();
                // `config` reads a quoted key with dots or brackets ("a.b", "x[0]") as a
                // path, and names the part it stumbled on.
                let named = names.iter().any(|n| {
                    let n = n.to_lowercase();
                    msg.contains(&n)
                        || n.split(['.', '[', ']'])
                            .any(|part| !part.is_empty() && msg.contains(part))
                });
                prop_assert!(
                    named,
                    "{:?} names none of {:?}\n--- document:\n{}",
                    msg,
                    names,
                    doc
                );
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Inputs the properties found. Each is a plain test; `#[ignore = "bug: ..."]` until fixed.

/// Decision 12: `terminal_id` (and `customer_name`) is "any string up to 128 characters",
/// but `Fields::opt` in src/protocol/channel.rs compares `s.len()`, which counts bytes: 65
/// characters of 2-byte UTF-8 are refused as "longer than 128 characters".
#[test]
fn terminal_id_of_128_characters_is_accepted() {
    let text = "é".repeat(65);
    for field in ["terminal_id", "customer_name"] {
        let mut body = json!({"va_number": "8574990000000001", "ref_id": "r1", "amount": "1000",
            "transaction_date": "2026-01-10 10:00:00"});
        body[field] = json!(text);
        let v = json!({"type": "payment", "channel": CHANNEL, "request_id": "r1", "body": body});
        let payload = serde_json::to_vec(&v).unwrap();
        let sig = signature::sign(CHANNEL_KEY.as_bytes(), &payload);
        let r = decode(&payload, Some(&sig), routing());
        assert!(
            r.is_ok(),
            "{field}: {:?}",
            r.err().map(|e| e.error.to_string())
        );
    }
}

/// Setting one topic to another's name is reported on the other, untouched key: the
/// message names `topics.response` when the operator changed `topics.request`.
#[test]
fn a_duplicate_topic_names_the_key_that_was_set() {
    let e = Settings::from_toml(&["[topics]\nrequest = \"ipg.channel.response\"\n"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("topics.request"), "{e}");
}

/// `check_timeout` (src/passive/config.rs) computes `timeout_ms + 1000`; `config` turns a
/// float into a saturated u64, so `timeout_ms = 1e30` overflows: a panic in debug builds,
/// and in release the sum wraps to 999 and the absurd timeout passes validation. The
/// same through `[[institutions]] timeout_ms` and `IPG__PASSIVE__TIMEOUT_MS=1e30`.
#[test]
fn a_huge_passive_timeout_is_refused_not_a_panic() {
    let r = panic_site(|| Settings::from_toml(&["[passive]\ntimeout_ms = 1e30\n"]));
    let e = r.expect("no panic").unwrap_err().to_string();
    assert!(e.contains("passive.timeout_ms"), "{e}");
}

/// `WebhookSettings::validate` (src/webhook/config.rs) sums `backoff_ms` with `Iterator::sum`:
/// three large delays overflow u64 (a panic in debug builds; in release the sum wraps and
/// `gate_ttl_ms` is compared with a wrong total).
#[test]
fn huge_webhook_backoffs_are_refused_not_a_panic() {
    let r = panic_site(|| {
        Settings::from_toml(&[
            "[webhook]\nbackoff_ms = [9223372036854775807, 9223372036854775807, 2]\n",
        ])
    });
    let e = r.expect("no panic").unwrap_err().to_string();
    assert!(e.contains("webhook."), "{e}");
}

/// Values of the wrong TOML type are coerced by `config` instead of refused: a boolean or
/// a float for a count, a string for a boolean. `lanes = true` runs one lane;
/// `sandbox = "yes"` turns on fake payments.
#[test]
fn values_of_the_wrong_type_are_refused() {
    for (doc, key) in [
        ("[pipeline]\nlanes = true\n", "pipeline.lanes"),
        ("[pipeline]\nlanes = 1.5\n", "pipeline.lanes"),
        ("[api]\nsandbox = \"yes\"\n", "api.sandbox"),
        ("[api]\nsandbox = 1\n", "api.sandbox"),
        ("[passive]\ntimeout_ms = 4999.6\n", "passive.timeout_ms"),
        (
            "[[institutions]]\ncode = \"P\"\nname = \"P\"\nprefixes = [\"123456\"]\nmode = \"passive\"\napi_key = \"k\"\nbase_url = \"http://x\"\ntimeout_ms = 2500.7\n",
            "institutions[0].timeout_ms",
        ),
        (
            "[[channels]]\ncode = \"b\"\napi_key = \"k\"\nrate_per_second = \"5\"\n",
            "channels[0].rate_per_second",
        ),
    ] {
        match Settings::from_toml(&[doc]) {
            Ok(_) => panic!("accepted {doc:?}"),
            Err(e) => assert!(e.to_string().contains(key), "{e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// SNAP BI bodies (issue 26, docs/snap.md): services 24, 25, 26 and the amount object.

mod snap {
    use super::*;
    use ipg_switch::protocol::snap::va::{amount, parse};
    use ipg_switch::protocol::snap::{Refusal, Service};

    const FIELDS: [&str; 9] = [
        "partnerServiceId",
        "customerNo",
        "virtualAccountNo",
        "inquiryRequestId",
        "paymentRequestId",
        "paidAmount",
        "trxDateTime",
        "channelCode",
        "flagAdvise",
    ];

    fn wib() -> FixedOffset {
        FixedOffset::east_opt(7 * 3600).unwrap()
    }

    fn valid(service: Service) -> Value {
        let mut v = json!({"partnerServiceId":"  857499","customerNo":"1234567890",
            "virtualAccountNo":"  8574991234567890","inquiryRequestId":"IR-1",
            "paymentRequestId":"PR-1","paidAmount":{"value":"150000.00","currency":"IDR"},
            "trxDateTime":"2024-05-01T10:16:02+07:00","channelCode":6011,"flagAdvise":"N"});
        if service == Service::Inquiry {
            v.as_object_mut().unwrap().remove("paidAmount");
        }
        v
    }

    fn services() -> impl Strategy<Value = Service> {
        prop::sample::select(vec![Service::Inquiry, Service::Payment, Service::Status])
    }

    /// A refusal is one of the documented body cases, naming a field when it names one.
    fn documented(r: &Refusal) -> bool {
        match r {
            Refusal::BadRequest => true,
            Refusal::Format(f) | Refusal::Mandatory(f) => !f.is_empty(),
            _ => false,
        }
    }

    #[test]
    fn snap_bodies_never_panic_and_refuse_with_a_documented_code() {
        let input = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            arb_json().prop_map(|v| v.to_string().into_bytes()),
        ];
        TestRunner::new(config())
            .run(&(services(), input), |(service, bytes)| {
                if let Err(r) = parse(service, &bytes, wib()) {
                    prop_assert!(documented(&r), "{:?}", r);
                    let code = r.answer(service).code;
                    prop_assert_eq!(code.len(), 7);
                    prop_assert!(code.starts_with("400"), "{}", code);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn snap_bodies_with_one_field_changed_name_that_field() {
        let change = (
            services(),
            prop::sample::select(FIELDS.to_vec()),
            field_op(),
        );
        TestRunner::new(config())
            .run(&change, |(service, field, op)| {
                let mut v = valid(service);
                let o = v.as_object_mut().unwrap();
                match &op {
                    None => {
                        o.remove(field);
                    }
                    Some(x) => {
                        o.insert(field.to_owned(), x.clone());
                    }
                }
                match parse(service, v.to_string().as_bytes(), wib()) {
                    Ok(r) => {
                        // Accepted: the VA is the prefix and 10 digits, the reference bound.
                        prop_assert_eq!(r.identity.va.len(), 16);
                        prop_assert!(!r.reference().is_empty());
                    }
                    Err(Refusal::Format(f)) | Err(Refusal::Mandatory(f)) => {
                        // The changed field, or (a VA part changed) the VA that no longer
                        // matches it.
                        let vano = f == "virtualAccountNo"
                            && ["partnerServiceId", "customerNo"].contains(&field);
                        let other_ref = service == Service::Status
                            && f == "paymentRequestId"
                            && field == "inquiryRequestId";
                        prop_assert!(
                            f.starts_with(field) || vano || other_ref,
                            "{} changed to {:?}, refused naming {}",
                            field,
                            op,
                            f
                        );
                    }
                    Err(r) => prop_assert!(false, "{} -> {:?}", field, r),
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn snap_amount_objects_are_exact_whole_rupiah() {
        let value = prop_oneof![
            (0u64..=9_999_999_999_999_999).prop_map(|n| format!("{n}.00")),
            "[0-9]{1,18}\\.[0-9]{0,3}",
            arb_string(),
        ];
        let currency = prop_oneof![4 => Just("IDR".to_owned()), 1 => arb_string()];
        TestRunner::new(config())
            .run(&(value, currency), |(value, currency)| {
                let v = json!({"value": value, "currency": currency});
                let got = amount(Some(&v), "paidAmount");
                let expected = value
                    .strip_suffix(".00")
                    .filter(|w| {
                        !w.is_empty() && w.len() <= 16 && w.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|w| w.parse::<u64>().ok());
                match (got, currency == "IDR") {
                    (Ok(Some(n)), true) => prop_assert_eq!(Some(n), expected, "{}", v),
                    (Err(Refusal::Format(f)), true) => {
                        prop_assert_eq!(expected, None, "{}", v);
                        prop_assert_eq!(f, "paidAmount.value");
                    }
                    (Err(Refusal::Format(f)), false) => {
                        prop_assert!(
                            f == "paidAmount.currency" || f == "paidAmount.value",
                            "{}",
                            f
                        )
                    }
                    (other, _) => prop_assert!(false, "{} -> {:?}", v, other),
                }
                Ok(())
            })
            .unwrap();
    }
}
