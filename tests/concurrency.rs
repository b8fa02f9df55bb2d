//! Many payments racing for one bill: through Kafka with two daemons of one consumer group
//! (the bill reached through two VAs, i.e. two keys), and straight at the rule code. The
//! bill must never be overpaid and every rupiah paid must be in the ledger once.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use ipg_switch::domain::VaNumber;
use ipg_switch::error::{Rc, SwitchError};
use ipg_switch::hosted::PayInput;
use serde_json::{json, Value};

/// CRC-32 (IEEE), as librdkafka's default `consistent_random` partitioner hashes keys.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn partition_of(key: &str) -> i32 {
    (crc32(key.as_bytes()) % PARTITIONS as u32) as i32
}

/// `assigned_partitions` from a daemon's `/readyz`, or `None` while it does not answer.
async fn assigned_partitions(port: u16) -> Option<u64> {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let body = out.split("\r\n\r\n").nth(1)?;
        serde_json::from_str::<Value>(body).ok()?["assigned_partitions"].as_u64()
    })
    .await
    .ok()
    .flatten()
}

/// One payment straight at the rule code (no daemon): one attempt (one lock owner),
/// retried on Busy every 10 ms as the daemon retries a message. Its rc, or the refusal's
/// rc and text; and how many times it met Busy.
async fn pay_directly(
    switch: &ipg_switch::switch::Switch,
    inst: &ipg_switch::routing::Institution,
    v: &VaNumber,
    ref_id: &str,
    amount: u64,
) -> (Result<Rc, (Rc, String)>, usize) {
    let amount = ipg_switch::domain::Amount::new(amount).unwrap();
    let owner = ipg_switch::lock::Owner::new();
    let mut busy = 0usize;
    loop {
        let input = PayInput {
            channel: CHANNEL,
            ref_id,
            amount,
            terminal_id: Some("atm"),
            transaction_date: Some("2026-01-10 10:00:00"),
            customer_name: None,
            owner: &owner,
        };
        match switch.hosted.pay(inst, v, input).await {
            // What the daemon does with Busy: try again later.
            Err(SwitchError::Busy(_)) => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(o) => return (Ok(o.rc), busy),
            Err(e) => return (Err((e.rc(), e.to_string())), busy),
        }
    }
}

/// `n` VAs of [`INST`] whose customer part starts with `tag` (two digits), each holding
/// an open `close` bill of `amount` rupiah; returns the VAs in order.
async fn close_bills(
    switch: &ipg_switch::switch::Switch,
    inst: &ipg_switch::routing::Institution,
    tag: &str,
    n: usize,
    amount: u64,
) -> Vec<VaNumber> {
    let vas: Vec<VaNumber> = (0..n)
        .map(|i| VaNumber::parse(&va(PREFIX, &format!("{tag}{i:08}"))).unwrap())
        .collect();
    for v in &vas {
        let body = bill_body(&v.as_str()[6..], "close", amount);
        switch.hosted.create_bill(inst, &body).await.unwrap();
    }
    vas
}

/// The ledger holds `n` entries and each `payment_ref_id` once.
fn assert_each_once(ledger: &[Value], n: usize) {
    let mut refs: Vec<&str> = ledger
        .iter()
        .map(|e| e["payment_ref_id"].as_str().unwrap())
        .collect();
    refs.sort_unstable();
    refs.dedup();
    assert_eq!(
        (ledger.len(), refs.len()),
        (n, n),
        "one credit per payment: {ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_two_vas_fifty_partial_payments_never_overpay() {
    const TOTAL: u64 = 300_000;
    const EACH: u64 = 10_000;
    const N: usize = 50;
    let stack = Stack::start().await;

    // A bill number whose two VAs hash to different partitions, so that both ends of the
    // race are consumed separately (and, with two daemons, possibly by different ones).
    let number = (0..100)
        .map(|k| format!("90000000{k:02}"))
        .find(|n| partition_of(&va(PREFIX, n)) != partition_of(&va(PREFIX2, n)))
        .unwrap();
    let (v1, v2) = (va(PREFIX, &number), va(PREFIX2, &number));
    let mut body = bill_body(&number, "partial", TOTAL);
    body["prefix"] = json!([PREFIX, PREFIX2]);
    let bill = stack.create_bill(body).await;
    assert_eq!(bill.prefixes, [PREFIX, PREFIX2]);

    // Two daemons of one group, each with its own /readyz to see its partitions.
    let ports = [free_port(), free_port()];
    let daemons: Vec<Daemon> = ports
        .iter()
        .map(|p| {
            let mut s = stack.settings.clone();
            s.metrics.listen = format!("127.0.0.1:{p}");
            Daemon::start(s)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (
            assigned_partitions(ports[0]).await,
            assigned_partitions(ports[1]).await,
        );
        if let (Some(a), Some(b)) = (a, b) {
            if a > 0 && b > 0 && a + b == PARTITIONS as u64 {
                eprintln!("two_daemons: partitions split {a} + {b}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "both daemons never held partitions: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ids: Vec<String> = (0..N).map(|i| format!("cc-{i}")).collect();
    futures::future::join_all((0..N).map(|i| {
        let v = if i % 2 == 0 { &v1 } else { &v2 };
        stack.send(
            "payment",
            &ids[i],
            payment(v, &format!("CC-REF-{i}"), EACH.to_string()),
        )
    }))
    .await;
    let by_id = stack
        .responses
        .wait_for("50 answers", 120, |m| {
            let by_id = answers_by_id(m);
            ids.iter().all(|id| by_id.contains_key(id)).then_some(by_id)
        })
        .await;
    let mut stops = daemons.into_iter().map(Daemon::stop);
    let (a, b) = (stops.next().unwrap(), stops.next().unwrap());
    tokio::join!(a, b);

    // Answers are keyed by the request's key with the same partitioner: where they landed
    // is where the requests were.
    let parts: Vec<(i32, String)> = stack
        .responses
        .all()
        .iter()
        .map(|r| (r.partition, r.key.clone().unwrap_or_default()))
        .collect();
    for (p, key) in &parts {
        assert_eq!(*p, partition_of(key), "partitioner assumption for {key}");
    }

    let mut rcs: HashMap<String, usize> = HashMap::new();
    let mut success_sum = 0u64;
    let mut success_by_va: HashMap<String, usize> = HashMap::new();
    for (id, answers) in &by_id {
        let first = &answers[0];
        for a in &answers[1..] {
            for k in ["rc", "message", "timestamp", "data"] {
                assert_eq!(first[k], a[k], "{id}: repeated answer differs in {k}");
            }
        }
        let rc = first["rc"].as_str().unwrap().to_owned();
        if rc == "SUCCESS" {
            assert_eq!(first["data"]["payment"]["amount"], EACH, "{first}");
            success_sum += first["data"]["payment"]["amount"].as_u64().unwrap();
            *success_by_va
                .entry(first["data"]["va_number"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        *rcs.entry(rc).or_default() += 1;
    }
    eprintln!("two_daemons: rcs {rcs:?}, successes by VA {success_by_va:?}");
    assert_eq!(by_id.len(), N);
    assert_eq!(rcs.get("SUCCESS"), Some(&30), "{rcs:?}");
    let refused = rcs.get("BILLER_BILL_ALREADY_PAID").unwrap_or(&0)
        + rcs.get("BILLER_INVALID_TRANSACTION_AMOUNT").unwrap_or(&0);
    assert_eq!(refused, 20, "{rcs:?}");
    assert_eq!(success_sum, TOTAL);

    let stored = stack.stored_bill(&bill.hash).await;
    assert_eq!(stored.paid_amount.get(), TOTAL);
    assert_eq!(format!("{:?}", stored.status), "Paid");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), 30);
    assert_eq!(balance, TOTAL as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_pay_calls_on_one_va_never_overpay() {
    const TOTAL: u64 = 250_000;
    const EACH: u64 = 10_000;
    const N: usize = 50;
    let stack = Stack::start().await;
    let bill = stack
        .create_bill(bill_body("9100000001", "partial", TOTAL))
        .await;
    let switch = ipg_switch::build_switch(&stack.settings).unwrap();
    let inst = switch.routing.by_code(INST).unwrap().clone();
    let v = VaNumber::parse(&va(PREFIX, "9100000001")).unwrap();

    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (switch, inst, v) = (switch.clone(), inst.clone(), v.clone());
            tokio::spawn(async move {
                pay_directly(&switch, &inst, &v, &format!("DIRECT-{i}"), EACH).await
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused: HashMap<Rc, usize> = HashMap::new();
    let mut busy_total = 0;
    for t in tasks {
        let (r, busy) = t.await.unwrap();
        busy_total += busy;
        match r {
            Ok(rc) => {
                assert_eq!(rc, Rc::Success);
                ok += 1;
            }
            Err((rc, msg)) => {
                assert!(
                    matches!(
                        rc,
                        Rc::BillerBillAlreadyPaid | Rc::BillerInvalidTransactionAmount
                    ),
                    "{rc:?}: {msg}"
                );
                *refused.entry(rc).or_default() += 1;
            }
        }
    }
    eprintln!("direct: {ok} paid, refused {refused:?}, {busy_total} Busy retries");
    assert_eq!(ok, 25, "refused {refused:?}");
    assert_eq!(refused.values().sum::<usize>(), 25);

    let stored = stack.stored_bill(&bill.hash).await;
    assert_eq!(stored.paid_amount.get(), TOTAL);
    assert_eq!(format!("{:?}", stored.status), "Paid");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (25, TOTAL as i64));
}

/// Group commit (issue 29): sixty VAs of one institution paid at once, each payment sent
/// twice through Kafka and once over HTTP, and two of them on one reference. Every payment
/// gets the verdict it would get alone (its copies the same answer), the ledger holds one
/// entry per payment with each balance the running sum, the journal's sequences are gapless
/// and agree with it, `verify` agrees, and the payments were committed in groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_vas_of_one_institution_pay_at_once() {
    const N: usize = 60;
    let port = free_port();
    let stack = Stack::start_with(&format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\n[switch]\nlock_wait_ms = 15000\n"
    ))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let numbers: Vec<String> = (0..N).map(|i| format!("93{i:08}")).collect();
    let amount = |i: usize| 10_000 + i as u64;
    // One switch for the sixty bills (Stack::create_bill makes one per bill).
    let switch = stack.switch();
    let inst = switch.routing.by_code(INST).unwrap().clone();
    for (i, n) in numbers.iter().enumerate() {
        let body = bill_body(n, "close", amount(i));
        switch.hosted.create_bill(&inst, &body).await.unwrap();
    }
    let daemon = stack.daemon();
    http_up(&base).await;
    // The last payment reuses the first one's reference (on another VA): one of the two
    // is refused, whichever commits second, even inside one group.
    let reference = |i: usize| format!("GC-REF-{}", if i == N - 1 { 0 } else { i });
    let bodies: Vec<Value> = (0..N)
        .map(|i| payment(&va(PREFIX, &numbers[i]), &reference(i), amount(i)))
        .collect();
    let (calls, grouped) = (
        metric("ipg_group_commit_calls_total"),
        metric("ipg_group_commit_payments_total"),
    );

    let http = futures::future::join_all(bodies.iter().map(|b| post_channel(&base, "payment", b)));
    let kafka = async {
        for copy in 0..2 {
            for (i, b) in bodies.iter().enumerate() {
                stack
                    .send("payment", &format!("gc-{i}-k{copy}"), b.clone())
                    .await;
            }
        }
    };
    let (http, ()) = tokio::join!(http, kafka);
    let by_id = stack
        .responses
        .wait_for("every Kafka copy answered", 120, |m| {
            let by_id = answers_by_id(m);
            (0..N)
                .all(|i| (0..2).all(|c| by_id.contains_key(&format!("gc-{i}-k{c}"))))
                .then_some(by_id)
        })
        .await;

    let mut paid = Vec::new();
    for (i, (status, over_http)) in http.iter().enumerate() {
        assert_eq!(*status, 200, "payment {i} over HTTP: {over_http}");
        for c in 0..2 {
            let k = &by_id[&format!("gc-{i}-k{c}")][0];
            for field in ["rc", "data"] {
                assert_eq!(
                    k[field], over_http[field],
                    "payment {i}: Kafka copy {c} and HTTP differ in {field}"
                );
            }
        }
        match over_http["rc"].as_str().unwrap() {
            "SUCCESS" => {
                assert_eq!(
                    over_http["data"]["payment"]["amount"],
                    amount(i),
                    "{over_http}"
                );
                paid.push(i);
            }
            "BILLER_INVALID_TRANSACTION" => {
                assert!(i == 0 || i == N - 1, "payment {i} refused: {over_http}")
            }
            rc => panic!("payment {i}: {rc}: {over_http}"),
        }
    }
    assert_eq!(
        paid.len(),
        N - 1,
        "exactly one of the two payments on one reference is refused"
    );
    let total: u64 = paid.iter().map(|&i| amount(i)).sum();

    // The ledger: one credit per payment, each balance the sum of the entries before it.
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), N - 1);
    let mut running = 0i64;
    for e in &ledger {
        running += e["amount"].as_i64().unwrap();
        assert_eq!(e["balance_after"].as_i64(), Some(running), "{e}");
    }
    assert_eq!((running, balance), (total as i64, total as i64));
    assert_each_once(&ledger, N - 1);

    // The journal: sequences 1..=N-1 once each, each event's entry the ledger's at its place.
    assert_eq!(
        stack.journaled_payments_settled(N - 1, 30).await.len(),
        N - 1
    );
    let mut seqs = std::collections::BTreeMap::new();
    stack
        .settings
        .journal(&stack.broker.bootstrap)
        .scan(&mut ipg_switch::journal::Quiet, &mut |r| {
            if let Some(l) = &r.event.ledger {
                seqs.insert(l.seq, (l.balance_after, l.entry.get().to_owned()));
            }
        })
        .await
        .unwrap();
    assert_eq!(
        seqs.keys().copied().collect::<Vec<_>>(),
        (1..N as u64).collect::<Vec<_>>()
    );
    for ((seq, (balance_after, entry)), stored) in seqs.iter().zip(&ledger) {
        assert_eq!(
            Some(*balance_after),
            stored["balance_after"].as_i64(),
            "seq {seq}"
        );
        let entry: Value = serde_json::from_str(entry).unwrap();
        assert_eq!(entry["id"], stored["id"], "seq {seq}");
    }
    daemon.stop().await;
    stack.assert_verify_agrees().await;

    let (calls, grouped) = (
        metric("ipg_group_commit_calls_total") - calls,
        metric("ipg_group_commit_payments_total") - grouped,
    );
    eprintln!("group commit: {grouped} payments in {calls} calls");
    assert!(
        grouped > calls,
        "no payments were committed together: {grouped} in {calls} calls"
    );
}

/// Group commit (issue 29): callers that give up mid-commit (their futures dropped, as when
/// an HTTP client goes away) never stall the payments waiting beside them nor lose their
/// verdicts. Forty VAs of one institution paid at once, every other caller dropped after
/// 0.5-6.5 ms (before, while or after its group ran): every kept payment is paid; every
/// payment retried afterwards (as a bank retries) answers SUCCESS, whether its first try
/// committed or not; the ledger holds each payment once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_mid_group_never_stall_or_lose_the_others() {
    const N: usize = 40;
    const EACH: u64 = 20_000;
    let stack = Stack::start().await;
    let switch = stack.switch();
    let inst = switch.routing.by_code(INST).unwrap().clone();
    let vas = close_bills(&switch, &inst, "94", N, EACH).await;
    let pay = |i: usize| {
        let (switch, inst, v) = (switch.clone(), inst.clone(), vas[i].clone());
        async move {
            let (r, _busy) = pay_directly(&switch, &inst, &v, &format!("GIVE-UP-{i}"), EACH).await;
            r
        }
    };
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let payment = pay(i);
            tokio::spawn(async move {
                if i % 2 == 1 {
                    let after = Duration::from_micros(500 * (i as u64 % 13 + 1));
                    tokio::time::timeout(after, payment).await.ok()
                } else {
                    Some(payment.await)
                }
            })
        })
        .collect();
    let mut given_up = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap_or_else(|_| panic!("payment {i} never ended"))
            .unwrap();
        match r {
            Some(r) => assert_eq!(r, Ok(Rc::Success), "payment {i}"),
            None => given_up += 1,
        }
    }
    let committed = stack.ledger().await.0.len();
    eprintln!(
        "give up: {given_up} of {N} callers dropped mid-payment, {} of them after their commit",
        committed - (N - given_up)
    );
    for i in 0..N {
        assert_eq!(pay(i).await, Ok(Rc::Success), "payment {i} retried");
    }
    let (ledger, balance) = stack.ledger().await;
    assert_each_once(&ledger, N);
    assert_eq!(balance, (EACH * N as u64) as i64);
}

/// pay_group.lua queues the writes every payment of a group appends to (the ledger, the
/// payment index, the unjournaled list) and sends them once at the group's end. One that
/// Redis refuses there (the unjournaled list holding the wrong type) fails every payment
/// of the group: twelve VAs paid at once, none is answered paid. Once the key is mended
/// each retry answers SUCCESS, and the ledger holds each payment once, its running
/// balance in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_write_redis_refuses_is_never_answered_paid() {
    const AMOUNT: u64 = 10_000;
    const N: usize = 12;
    let stack = Stack::start().await;
    let switch = stack.switch();
    let inst = switch.routing.by_code(INST).unwrap().clone();
    let vas = close_bills(&switch, &inst, "95", N, AMOUNT).await;
    let store = &switch.hosted.store;
    let key = format!("ipg:{{{INST}}}:unjournaled");
    let _: () = store
        .plain(redis::cmd("SET").arg(&key).arg("not a sorted set").clone())
        .await
        .unwrap();
    let pay_all = || {
        let tasks: Vec<_> = vas
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (switch, inst, v) = (switch.clone(), inst.clone(), v.clone());
                tokio::spawn(async move {
                    pay_directly(&switch, &inst, &v, &format!("QUEUED-{i}"), AMOUNT)
                        .await
                        .0
                })
            })
            .collect();
        futures::future::join_all(tasks)
    };

    let (calls, grouped) = (
        metric("ipg_group_commit_calls_total"),
        metric("ipg_group_commit_payments_total"),
    );
    let refused = pay_all().await;
    eprintln!(
        "refused group commit: {} payments in {} calls",
        metric("ipg_group_commit_payments_total") - grouped,
        metric("ipg_group_commit_calls_total") - calls
    );
    for (i, r) in refused.into_iter().enumerate() {
        let (_, e) = r
            .unwrap()
            .expect_err("a payment whose write Redis refused is never answered paid");
        assert!(e.contains("WRONGTYPE"), "payment {i}: {e}");
    }

    let _: () = store
        .plain(redis::cmd("DEL").arg(&key).clone())
        .await
        .unwrap();
    for (i, r) in pay_all().await.into_iter().enumerate() {
        assert_eq!(r.unwrap(), Ok(Rc::Success), "payment {i} retried");
    }
    let (ledger, balance) = stack.ledger().await;
    assert_each_once(&ledger, N);
    for (k, e) in ledger.iter().enumerate() {
        assert_eq!(
            e["balance_after"].as_i64(),
            Some((AMOUNT * (k as u64 + 1)) as i64),
            "entry {k}: {e}"
        );
    }
    assert_eq!(balance, (AMOUNT * N as u64) as i64);
}
