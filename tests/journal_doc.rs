//! docs/journal.md cannot drift from the code: every event example parses with the
//! daemon's own `Event` type and applies to a real redis-server; and applying is
//! idempotent and order-insensitive: every order of the examples, each applied twice,
//! leaves Redis exactly as applying them once in order.

mod common;

use common::*;
use ipg_switch::store::journal::{Event, EventType};
use ipg_switch::store::Store;

fn examples() -> Vec<String> {
    common::examples::doc_examples("journal.md", "event")
}

fn events() -> Vec<Event> {
    examples()
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// The `reference_voided` example (kept out of the permutations above: it only binds).
fn void_event() -> Event {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/journal.md")).unwrap();
    let at = doc
        .find("<!-- example: void-event -->")
        .expect("the void example");
    let start = at + doc[at..].find("```json\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    serde_json::from_str(&doc[start..end]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_void_example_replaces_a_binding_that_left_no_payment() {
    let ev = void_event();
    assert_eq!(ev.kind, EventType::ReferenceVoided);
    let redis = Redis::start();
    let settings = settings_for("127.0.0.1:1", &redis.url(), "");
    let store = Store::new(&settings.redis).unwrap();
    let b = ev.binding.as_ref().unwrap();
    // A payment of that VA bound the reference and was refused (nothing recorded).
    let payment_binding = b.record.strip_prefix("void|").unwrap();
    assert_eq!(
        store
            .bind(&b.channel, &b.reference, payment_binding)
            .await
            .unwrap(),
        None
    );
    store.apply(std::slice::from_ref(&ev)).await.unwrap();
    store.apply(std::slice::from_ref(&ev)).await.unwrap();
    assert_eq!(
        store
            .bind(&b.channel, &b.reference, payment_binding)
            .await
            .unwrap(),
        Some(b.record.clone()),
        "the void binding stands"
    );
}

#[test]
fn every_event_type_has_an_example() {
    let mut kinds: Vec<EventType> = events().iter().map(|e| e.kind).collect();
    kinds.push(void_event().kind);
    for k in [
        EventType::BillCreated,
        EventType::BillUpdated,
        EventType::PaymentCommitted,
        EventType::PaymentReversed,
        EventType::PassiveRecorded,
        EventType::ReferenceVoided,
    ] {
        assert!(kinds.contains(&k), "no example of {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_apply_and_any_order_gives_the_same_redis() {
    let events = events();
    let redis = Redis::start();
    let settings = settings_for("127.0.0.1:1", &redis.url(), "");
    let store = Store::new(&settings.redis).unwrap();

    store.apply(&events).await.unwrap();
    let once = snapshot(&redis.url()).await;
    // What the examples say is what Redis holds.
    let payment = store
        .payment(INST, CHANNEL, "REF-1")
        .await
        .unwrap()
        .expect("the payment example applied");
    assert_eq!(payment.paid.payment.amount.get(), 150_000);
    // Only the reversal's stage of REF-3 is among the examples.
    let rec = &once[&format!("ipg:{{{INST}}}:pay:{CHANNEL}:REF-3")];
    assert!(rec.contains("rev_doc") && !rec.contains("\"doc\""), "{rec}");
    let ledger = store.ledger(INST).await.unwrap();
    let last = events
        .iter()
        .filter_map(|e| e.ledger.as_ref())
        .max_by_key(|l| l.seq)
        .unwrap();
    assert_eq!(store.balance(INST).await.unwrap(), last.balance_after);
    assert!(ledger.len() as u64 >= events.iter().filter(|e| e.ledger.is_some()).count() as u64);
    let revoked = events
        .iter()
        .find(|e| e.kind == EventType::BillUpdated)
        .unwrap();
    let hash = &revoked.bill.as_ref().unwrap().hash;
    let bill = store.bill(INST, hash).await.unwrap().unwrap();
    assert_eq!(bill.version, "2");
    assert!(store
        .passive_payment("PAS01", CHANNEL, "REF-P")
        .await
        .unwrap()
        .is_some());

    // Twice changes nothing; any order (each event twice) gives the same Redis.
    store.apply(&events).await.unwrap();
    assert_eq!(snapshot(&redis.url()).await, once);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for order in permutations(events.len()) {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        let shuffled: Vec<Event> = order
            .iter()
            .chain(order.iter().rev())
            .map(|i| events[*i].clone())
            .collect();
        for e in &shuffled {
            store.apply(std::slice::from_ref(e)).await.unwrap();
        }
        assert_eq!(snapshot(&redis.url()).await, once, "order {order:?}");
    }
}
