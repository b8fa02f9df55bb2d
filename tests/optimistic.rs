//! The optimistic payment (issue 15): a payment starts from the bill its VA's inquiry left in
//! the instance's bill cache and commits in one script that writes only if the VA still
//! points at that bill at that version with that very document and no other attempt holds
//! the VA lock. A cache is
//! a hint: these tests make it wrong on purpose, through a second instance (its own
//! `Switch`, its own cache) sharing the Redis and the journal, and check that what is paid
//! is decided on what Redis holds, never on the stale copy.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipg_switch::domain::{Amount, Outcome, VaNumber};
use ipg_switch::error::{Rc, SwitchError};
use ipg_switch::hosted::PayInput;
use ipg_switch::lock::Owner;
use ipg_switch::protocol::IpgData;
use ipg_switch::switch::Switch;

/// A `close` bill of `total` rupiah for each VA number (institution SCH01).
async fn close_bills(stack: &Stack, numbers: &[&str], total: u64) {
    for n in numbers {
        stack.create_bill(bill_body(n, "close", total)).await;
    }
}

/// One instance: its own switch (and bill cache) over the stack's Redis and broker.
fn instance(stack: &Stack) -> (Switch, std::sync::Arc<ipg_switch::routing::Institution>) {
    let sw = ipg_switch::build_switch(&stack.settings).unwrap();
    let inst = sw.routing.by_code(INST).unwrap().clone();
    (sw, inst)
}

async fn pay(
    sw: &Switch,
    inst: &ipg_switch::routing::Institution,
    va: &VaNumber,
    ref_id: &str,
    amount: u64,
) -> Result<Outcome, SwitchError> {
    pay_as(sw, inst, va, ref_id, amount, &Owner::new()).await
}

/// [`pay`] as the attempt `owner`.
async fn pay_as(
    sw: &Switch,
    inst: &ipg_switch::routing::Institution,
    va: &VaNumber,
    ref_id: &str,
    amount: u64,
    owner: &Owner,
) -> Result<Outcome, SwitchError> {
    let input = PayInput {
        channel: CHANNEL,
        ref_id,
        amount: Amount::new(amount).unwrap(),
        terminal_id: Some("atm"),
        transaction_date: Some("2026-01-10 10:00:00"),
        customer_name: None,
        owner,
    };
    sw.hosted.pay(inst, va, input).await
}

fn vanum(number: &str) -> VaNumber {
    VaNumber::parse(&va(PREFIX, number)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_bill_never_decides_a_payment() {
    let stack = Stack::start().await;
    let bill = stack
        .create_bill(bill_body("5100000001", "partial", 100_000))
        .await;
    let v = vanum("5100000001");
    let (a, inst) = instance(&stack);
    let (b, _) = instance(&stack);

    // A caches the bill (100,000 to pay); B pays 60,000 behind A's back.
    a.hosted.inquiry(&inst, &v).await.unwrap();
    let o = pay(&b, &inst, &v, "OPT-B1", 60_000).await.unwrap();
    assert_eq!(o.rc, Rc::Success);

    // A's cache allows 50,000; Redis holds 40,000 to pay: refused on the fresh bill.
    let e = pay(&a, &inst, &v, "OPT-A1", 50_000).await.unwrap_err();
    assert!(matches!(e, SwitchError::Bill(..)), "{e}");
    assert_eq!(
        stack.stored_bill(&bill.hash).await.paid_amount.get(),
        60_000
    );

    // The rest, through the same A: paid and closed.
    let o = pay(&a, &inst, &v, "OPT-A2", 40_000).await.unwrap();
    assert_eq!(o.rc, Rc::Success);
    let data = IpgData(&o.shown).to_value();
    assert_eq!(data["status"], "paid", "{data}");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(balance, 100_000);
    assert_eq!(ledger.len(), 2);
    // A repeat of A's first payment, now on a paid bill, is still a refusal, and the
    // reference stays bound to it: no second payment under it.
    assert!(pay(&a, &inst, &v, "OPT-A1", 50_000).await.is_err());
    assert_eq!(stack.ledger().await.1, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_refusal_is_checked_on_the_fresh_bill() {
    let stack = Stack::start().await;
    stack
        .create_bill(bill_body("5100000002", "close", 100_000))
        .await;
    let v = vanum("5100000002");
    let (a, inst) = instance(&stack);
    let (b, _) = instance(&stack);

    // A pays: its cache now holds the bill as paid.
    pay(&a, &inst, &v, "OPT-R1", 100_000).await.unwrap();
    // B reverses it: the bill is payable again, which A's cache does not know.
    let o = b
        .hosted
        .reverse(
            &inst,
            &v,
            CHANNEL,
            "OPT-R1",
            Amount::new(100_000).unwrap(),
            None,
            &Owner::new(),
        )
        .await
        .unwrap();
    assert_eq!(o.rc, Rc::Success);
    // A's cached bill says "paid"; Redis says payable: paid.
    let o = pay(&a, &inst, &v, "OPT-R2", 100_000).await.unwrap();
    assert_eq!(o.rc, Rc::Success, "{:?}", o.shown);
    assert_eq!(stack.ledger().await.1, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_va_given_a_new_bill_is_paid_on_the_new_one() {
    let stack = Stack::start().await;
    let old = stack
        .create_bill(bill_body("5100000003", "close", 70_000))
        .await;
    let v = vanum("5100000003");
    let (a, inst) = instance(&stack);
    let (b, _) = instance(&stack);

    a.hosted.inquiry(&inst, &v).await.unwrap();
    // B revokes the bill A cached and gives the VA a new one, of the same amount.
    b.hosted.revoke_bill(&inst, &old.hash).await.unwrap();
    let new = b
        .hosted
        .create_bill(&inst, &bill_body("5100000003", "close", 70_000))
        .await
        .unwrap();
    assert_ne!(new.hash, old.hash);

    let o = pay(&a, &inst, &v, "OPT-N1", 70_000).await.unwrap();
    assert_eq!(o.rc, Rc::Success);
    let data = IpgData(&o.shown).to_value();
    assert_eq!(data["hash"], new.hash.as_str(), "{data}");
    assert_eq!(data["payment"]["bill_hash"], new.hash.as_str());
    assert_eq!(stack.stored_bill(&old.hash).await.paid_amount.get(), 0);
    assert_eq!(stack.stored_bill(&new.hash).await.paid_amount.get(), 70_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_va_locked_by_another_attempt_is_waited_for() {
    let stack = Stack::start().await;
    stack
        .create_bill(bill_body("5100000004", "close", 30_000))
        .await;
    let v = vanum("5100000004");
    let (a, inst) = instance(&stack);
    a.hosted.inquiry(&inst, &v).await.unwrap();

    // Another attempt (a reversal, a forwarded payment) holds the VA for 1.5 s.
    let lock = ipg_switch::store::keys::lock(INST, v.as_str());
    let held = a
        .hosted
        .store
        .try_lock(&lock, "someone-else", Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(held);
    let started = Instant::now();
    let owner = Owner::new();
    let o = pay_as(&a, &inst, &v, "OPT-L1", 30_000, &owner)
        .await
        .unwrap();
    assert_eq!(o.rc, Rc::Success);
    // It went for the lock: a retry of this attempt would go on under it.
    assert!(owner.may_hold_lock());
    // Paid only once the other attempt's lock was gone (it expired), never beside it.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "paid beside a held lock"
    );
    // The payment took the lock itself after the wait, and its commit released it.
    assert!(a
        .hosted
        .store
        .try_lock(&lock, "after", Duration::from_millis(1000))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payment_spends_its_reference_cached_or_not() {
    let stack = Stack::start().await;
    close_bills(&stack, &["5100000005", "5100000006"], 80_000).await;
    let (a, inst) = instance(&stack);
    // Without an inquiry before (the bill is read), and after one (the bill is cached).
    let cold = vanum("5100000005");
    let warm = vanum("5100000006");
    a.hosted.inquiry(&inst, &warm).await.unwrap();
    for (v, r) in [(&cold, "OPT-S1"), (&warm, "OPT-S2")] {
        // A wrong amount for a close bill: refused, and the reference is spent on it.
        let e = pay(&a, &inst, v, r, 1_000).await.unwrap_err();
        assert!(matches!(e, SwitchError::Bill(..)), "{e}");
        // The same reference for the right amount is another transaction: refused.
        let e = pay(&a, &inst, v, r, 80_000).await.unwrap_err();
        assert!(matches!(e, SwitchError::ReferenceConflict(_)), "{e}");
    }
    assert_eq!(stack.ledger().await.1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_may_hold_the_lock_goes_on_under_it_and_releases_it() {
    let stack = Stack::start().await;
    stack
        .create_bill(bill_body("5100000007", "open", 10_000))
        .await;
    let v = vanum("5100000007");
    let (a, inst) = instance(&stack);
    a.hosted.inquiry(&inst, &v).await.unwrap();
    pay(&a, &inst, &v, "OPT-H1", 5_000).await.unwrap();

    // An attempt that took the VA lock and lost its answer (Redis away): its retry, the
    // same owner, finds the payment committed (a replay) and still releases the lock.
    let lock = ipg_switch::store::keys::lock(INST, v.as_str());
    for (r, amount) in [("OPT-H1", 5_000), ("OPT-H2", 7_000)] {
        let owner = Owner::new();
        owner.going_for_lock();
        assert!(a
            .hosted
            .store
            .try_lock(&lock, owner.token(), Duration::from_secs(15))
            .await
            .unwrap());
        let input = PayInput {
            channel: CHANNEL,
            ref_id: r,
            amount: Amount::new(amount).unwrap(),
            terminal_id: Some("atm"),
            transaction_date: Some("2026-01-10 10:00:00"),
            customer_name: None,
            owner: &owner,
        };
        let o = a.hosted.pay(&inst, &v, input).await.unwrap();
        assert_eq!(o.rc, Rc::Success);
        // Free again: another attempt takes it at once.
        assert!(
            a.hosted
                .store
                .try_lock(&lock, "next", Duration::from_millis(1000))
                .await
                .unwrap(),
            "{r}: the lock was left held"
        );
        a.hosted.store.unlock(&lock, "next").await.unwrap();
    }
    assert_eq!(stack.ledger().await.1, 12_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_came_back_with_other_contents_never_matches_the_cache() {
    let stack = Stack::start().await;
    let bill = stack
        .create_bill(bill_body("5100000008", "partial", 50_000))
        .await;
    let v = vanum("5100000008");
    let (a, inst) = instance(&stack);
    a.hosted.inquiry(&inst, &v).await.unwrap();

    // Redis rebuilt behind the cache (a rollback, then the journal): the bill is back at
    // the cached version, with 20,000 paid that the cache never saw.
    let stored = a
        .hosted
        .store
        .bill(INST, &bill.hash)
        .await
        .unwrap()
        .unwrap();
    let mut other = stored.value.clone();
    other.paid_amount = Amount::new(20_000).unwrap();
    other.billed_amount = Amount::new(30_000).unwrap();
    // Through the store's own client: on a cluster it finds the key's master.
    let store = &a.hosted.store;
    let key = ipg_switch::store::keys::bill(INST, &bill.hash);
    let _: i64 = store
        .plain(
            redis::cmd("HSET")
                .arg(&key)
                .arg("doc")
                .arg(serde_json::to_string(&other).unwrap())
                .clone(),
        )
        .await
        .unwrap();
    let ver: String = store
        .plain(redis::cmd("HGET").arg(&key).arg("ver").clone())
        .await
        .unwrap();
    assert_eq!(ver, stored.version, "same version, other contents");

    // The cache allows 50,000; Redis holds 30,000 to pay: refused on Redis's bill.
    let e = pay(&a, &inst, &v, "OPT-V1", 50_000).await.unwrap_err();
    assert!(matches!(e, SwitchError::Bill(..)), "{e}");
    let o = pay(&a, &inst, &v, "OPT-V2", 30_000).await.unwrap();
    assert_eq!(o.rc, Rc::Success);
    let data = IpgData(&o.shown).to_value();
    assert_eq!(data["paid_amount"], 50_000, "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_payment_under_a_reference_spent_elsewhere_is_refused() {
    let stack = Stack::start().await;
    close_bills(&stack, &["5100000009", "5100000010"], 40_000).await;
    let (a, inst) = instance(&stack);
    let (one, two) = (vanum("5100000009"), vanum("5100000010"));
    // Spent on the first VA by a refused payment: bound, and no payment record.
    let e = pay(&a, &inst, &one, "OPT-X1", 1_000).await.unwrap_err();
    assert!(matches!(e, SwitchError::Bill(..)), "{e}");
    // The second VA's bill is cached: its payment binds the reference in the commit
    // script itself, which finds it bound to the other transaction.
    a.hosted.inquiry(&inst, &two).await.unwrap();
    let e = pay(&a, &inst, &two, "OPT-X1", 40_000).await.unwrap_err();
    assert!(matches!(e, SwitchError::ReferenceConflict(_)), "{e}");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (0, 0));
}

/// Issue 22 item 11, the review's case: a reversal that found no payment leaves a tombstone
/// in the institution's slot, which every hosted commit checks in its own atomic step. Here
/// the reference's binding is taken away after the reversal (what a Redis Cluster's separate
/// bind round trip could miss, the binding's slot being another), and the payment, cached
/// or not, is still refused by the commit itself. And a payment made before its reference
/// was closed (a Redis rebuilt after the reversal) is answered as made, never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_reference_is_refused_by_the_commit_itself() {
    let stack = Stack::start().await;
    close_bills(&stack, &["5100000011", "5100000012", "5100000013"], 30_000).await;
    let (a, inst) = instance(&stack);
    let (cold, warm, paid) = (
        vanum("5100000011"),
        vanum("5100000012"),
        vanum("5100000013"),
    );
    a.hosted.inquiry(&inst, &warm).await.unwrap();
    let client = redis::Client::open(stack.redis.url().as_str()).unwrap();
    let mut c = if stack.redis.is_cluster() {
        None
    } else {
        Some(client.get_multiplexed_async_connection().await.unwrap())
    };
    let cluster = stack
        .redis
        .is_cluster()
        .then(|| ipg_switch::store::Store::new(&stack.settings.redis).unwrap());
    let del = |key: String| {
        let mut c = c.clone();
        let cluster = cluster.clone();
        async move {
            match (&mut c, &cluster) {
                (Some(c), _) => {
                    let _: () = redis::cmd("DEL").arg(&key).query_async(c).await.unwrap();
                }
                (None, Some(s)) => {
                    let _: () = s.plain(redis::cmd("DEL").arg(&key).clone()).await.unwrap();
                }
                _ => unreachable!(),
            }
        }
    };
    for (v, r) in [(&cold, "OPT-V1"), (&warm, "OPT-V2")] {
        let e = a
            .hosted
            .reverse(
                &inst,
                v,
                CHANNEL,
                r,
                Amount::new(30_000).unwrap(),
                None,
                &Owner::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SwitchError::PaymentNotFound), "{e}");
        del(format!("ipg:ref:{{{CHANNEL}:{r}}}")).await;
        let e = pay(&a, &inst, v, r, 30_000).await.unwrap_err();
        assert!(
            matches!(e, SwitchError::ReversedBeforePayment(_)),
            "{v}: {e}"
        );
    }
    // Paid first; then its reference closed behind its back (as a rebuilt Redis could
    // show it): a copy of the payment is answered as the first time.
    let first = pay(&a, &inst, &paid, "OPT-V3", 30_000).await.unwrap();
    let void = format!("void|{INST}|{}|30000", paid.as_str());
    let set = |key: String, value: String| {
        let mut c = c.clone();
        let cluster = cluster.clone();
        async move {
            match (&mut c, &cluster) {
                (Some(c), _) => {
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .query_async(c)
                        .await
                        .unwrap();
                }
                (None, Some(s)) => {
                    let _: () = s
                        .plain(redis::cmd("SET").arg(&key).arg(&value).clone())
                        .await
                        .unwrap();
                }
                _ => unreachable!(),
            }
        }
    };
    set(format!("ipg:ref:{{{CHANNEL}:OPT-V3}}"), void.clone()).await;
    set(format!("ipg:{{{INST}}}:void:{CHANNEL}:OPT-V3"), void).await;
    let again = pay(&a, &inst, &paid, "OPT-V3", 30_000).await.unwrap();
    assert_eq!((again.rc, &again.timestamp), (first.rc, &first.timestamp));
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (1, 30_000), "paid once");
    c.take();
}
