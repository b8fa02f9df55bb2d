//! HTTP details a client trips on: the Bearer scheme in any case (RFC 9110 s11.1), messages
//! that say what is wrong and whether to retry (unknown channel, Redis down), and HTTP
//! channel requests counted in `ipg_messages_total` with `door="http"`. One test per
//! process: the metrics recorder is process-global.

mod common;

use common::*;
use ipg_switch::signature;
use serde_json::{json, Value};

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_case_messages_and_http_metrics() {
    let (api_port, metrics_port) = (free_port(), free_port());
    let mut stack = Stack::start_with(&format!(
        "[api]\nlisten = \"127.0.0.1:{api_port}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ))
    .await;
    let base = format!("http://127.0.0.1:{api_port}");
    let daemon = stack.daemon();
    http_up(&base).await;
    let http = reqwest::Client::new();

    // RFC 9110 s11.1: the auth scheme is case-insensitive.
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": INST,
                      "client_secret": "inst-key", "scope": "*"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let query = "page=1";
    let sig = signature::sign(b"inst-key", query.as_bytes());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = http
            .get(format!("{base}/api/v2/gw/bill?{query}"))
            .header("Authorization", format!("{scheme}  {token}"))
            .header("Signature", sig.to_uppercase())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}: {}", r.text().await.unwrap());
    }

    // An unknown channel is named as such, not as a bad signature.
    let body = serde_json::to_vec(&inquiry(&va(PREFIX, "1000000001"), "REF-U")).unwrap();
    let r = http
        .post(format!("{base}/api/v2/ch/inquiry"))
        .header("X-Channel", "no_such_bank")
        .header("Signature", signature::sign(b"k", &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("unknown channel \"no_such_bank\""), "{msg}");

    // Counted like Kafka's answers, with the door.
    let (status, v) = post_channel(
        &base,
        "inquiry",
        &inquiry(&va(PREFIX, "1000000001"), "REF-M"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let scraped = get_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    assert!(
        scraped.lines().any(|l| l.starts_with("ipg_messages_total{")
            && l.contains("door=\"http\"")
            && l.contains("type=\"inquiry\"")
            && l.contains(&format!("channel=\"{CHANNEL}\""))
            && l.contains("rc=\"BILLER_BILL_NOT_FOUND\"")),
        "{scraped}"
    );

    // The test's redis-server keeps nothing on disk: the switch says acknowledged writes
    // can be lost (ipg_redis_durability_risk 1), read from CONFIG GET at start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let scraped = get_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
        if let Some(l) = scraped
            .lines()
            .find(|l| l.starts_with("ipg_redis_durability_risk"))
        {
            // tests/common starts redis-server with --appendonly no.
            assert!(l.ends_with(" 1"), "{l}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no durability gauge");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Redis down: 503, and the message says what and that the same request may be sent again.
    stack.redis.stop();
    let (status, v) = post_channel(
        &base,
        "inquiry",
        &inquiry(&va(PREFIX, "1000000001"), "REF-D"),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("Redis") && msg.contains("unavailable"),
        "{msg}"
    );
    assert!(msg.contains("send the same request again"), "{msg}");
    daemon.stop().await;
}

/// Issue 25: a Redis that may evict under a memory limit is a risk the switch names, even
/// with `appendfsync always`; `noeviction` under the same limit is safe.
#[tokio::test]
async fn a_redis_that_may_evict_is_named_a_durability_risk() {
    let args = |policy: &str| -> Vec<String> {
        [
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--maxmemory",
            "64mb",
            "--maxmemory-policy",
            policy,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    for (policy, safe) in [
        ("allkeys-lru", false),
        ("volatile-ttl", false),
        ("noeviction", true),
    ] {
        let redis = Redis::start_with(free_port(), &args(policy));
        let settings = settings_for("127.0.0.1:9", &redis.url(), "");
        let store = ipg_switch::store::Store::new(&settings.redis).unwrap();
        let d = store.durability().await.unwrap();
        match (safe, &d) {
            (true, ipg_switch::store::Durability::Safe) => {}
            (false, ipg_switch::store::Durability::AtRisk(why)) => {
                assert!(why.contains("noeviction") && why.contains(policy), "{why}")
            }
            _ => panic!("{policy}: {d:?}"),
        }
    }
}
