//! The HTTP API end to end, over real HTTP against the running daemon (real redis-server,
//! Kafka-protocol broker): the Payment Channel API through the same rules as Kafka, OAuth
//! 2.0 and signed Active Client calls, bills created over HTTP and paid over Kafka, every
//! auth failure, institution isolation, validation, paging and filters.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipg_switch::signature;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const INST2: &str = "SCH02";
const INST2_KEY: &str = "sch2-key";
const PREFIX_B: &str = "857800";

fn overlay(port: u16, extra_api: &str) -> String {
    format!(
        r#"
[api]
listen = "127.0.0.1:{port}"
{extra_api}

[[channels]]
code = "{CHANNEL}"
api_key = "{CHANNEL_KEY}"
[[channels]]
code = "other_bank"
api_key = "other-key"

[[institutions]]
code = "{INST}"
name = "Sekolah Contoh"
prefixes = ["{PREFIX}", "{PREFIX2}"]
mode = "hosted"
api_key = "inst-key"
webhook_url = "http://127.0.0.1:9/webhook"
[[institutions]]
code = "{INST2}"
name = "Sekolah Dua"
prefixes = ["{PREFIX_B}"]
mode = "hosted"
api_key = "{INST2_KEY}"
"#
    )
}

/// A minimal signed client for the daemon's HTTP API.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn up(port: u16) -> Api {
        let api = Api {
            base: format!("http://127.0.0.1:{port}"),
            // No idle keep-alive reuse: a pooled connection the server is closing answers
            // IncompleteMessage (seen once in CI), which is the client racing, not the API.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = api
                .http
                .get(format!("{}/openapi.json", api.base))
                .send()
                .await
            {
                if r.status() == StatusCode::OK {
                    return api;
                }
            }
            assert!(
                Instant::now() < deadline,
                "HTTP API did not come up on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `req`; every JSON answer must be what docs/openapi.json says its operation
    /// answers with that status.
    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let req = req.build().expect("HTTP request");
        let (method, path) = (req.method().to_string(), req.url().path().to_owned());
        let r = self.http.execute(req).await.expect("HTTP request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        contract::assert_http_answer(&method, &path, status.as_u16(), &body);
        (status, body)
    }

    /// A Payment Channel API call signed with `key`.
    async fn ch(&self, kind: &str, channel: &str, key: &str, body: &[u8]) -> (StatusCode, Value) {
        let sig = signature::sign(key.as_bytes(), body);
        self.send(
            self.http
                .post(format!("{}/api/v2/ch/{kind}", self.base))
                .header("X-Channel", channel)
                .header("Signature", sig)
                .header("Content-Type", "application/json")
                .body(body.to_vec()),
        )
        .await
    }

    async fn token(&self, client_id: &str, secret: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}/oauth/token", self.base))
                .json(&json!({
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": secret, "scope": "*"})),
        )
        .await
    }

    async fn bearer(&self, client_id: &str, secret: &str) -> String {
        let (s, v) = self.token(client_id, secret).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// An Active Client call: GET signs the raw query, others the raw body.
    async fn gw(
        &self,
        method: Method,
        token: &str,
        key: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> (StatusCode, Value) {
        let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
        let signed: &[u8] = if method == Method::GET {
            query.as_bytes()
        } else {
            body.unwrap_or(b"")
        };
        let mut rb = self
            .http
            .request(method, format!("{}/api/v2/gw{path_and_query}", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Signature", signature::sign(key.as_bytes(), signed))
            .header("Accept", "application/json");
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_vec());
        }
        self.send(rb).await
    }

    async fn get(&self, token: &str, key: &str, pq: &str) -> (StatusCode, Value) {
        self.gw(Method::GET, token, key, pq, None).await
    }

    async fn post(&self, token: &str, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let b = serde_json::to_vec(body).unwrap();
        self.gw(Method::POST, token, key, path, Some(&b)).await
    }
}

fn assert_refused(got: &(StatusCode, Value), status: StatusCode, rc: &str, mentions: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["rc"], rc, "{}", got.1);
    assert!(
        got.1["message"]
            .as_str()
            .unwrap_or_default()
            .contains(mentions),
        "message should mention {mentions:?}: {}",
        got.1
    );
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_api_serves_the_same_rules_as_kafka() {
    let port = free_port();
    let metrics_port = free_port();
    let metrics = format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    let stack = Stack::start_with(&(overlay(port, "") + &metrics)).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let bill = stack
        .create_bill(bill_body("2000000001", "close", 150_000))
        .await;
    let v = va(PREFIX, "2000000001");

    let inq = body(&inquiry(&v, "INQ-1"));
    let (s, a) = api.ch("inquiry", CHANNEL, CHANNEL_KEY, &inq).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"][0]["hash"], bill.hash.as_str());
    assert!(a["timestamp"].as_str().unwrap().ends_with("+07:00"));

    // Authentication: wrong key, another channel's key, unknown channel, no headers.
    let bad = api.ch("inquiry", CHANNEL, "wrong-key", &inq).await;
    assert_refused(
        &bad,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "signature",
    );
    let bad = api.ch("inquiry", "other_bank", CHANNEL_KEY, &inq).await;
    assert_refused(
        &bad,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "signature",
    );
    let bad = api.ch("inquiry", "no_bank", CHANNEL_KEY, &inq).await;
    assert_refused(
        &bad,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "channel",
    );
    let bare = api
        .send(
            api.http
                .post(format!("{}/api/v2/ch/inquiry", api.base))
                .body(inq.clone()),
        )
        .await;
    assert_refused(
        &bare,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "X-Channel",
    );

    // Validation names the field; malformed JSON and oversized bodies are refused.
    let no_ref = body(
        &json!({"va_number": v, "amount": "150000", "transaction_date": "2026-01-10 10:00:00"}),
    );
    let r = api.ch("payment", CHANNEL, CHANNEL_KEY, &no_ref).await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "ref_id",
    );
    let r = api
        .ch("payment", CHANNEL, CHANNEL_KEY, b"{\"va_number\": ")
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "malformed JSON",
    );
    let huge = vec![b' '; 70_000];
    let r = api.ch("payment", CHANNEL, CHANNEL_KEY, &huge).await;
    assert_refused(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "BILLER_INVALID_TRANSACTION",
        "larger than",
    );

    // Business refusals answer 200 with their rc, as on Kafka.
    let r = api
        .ch(
            "inquiry",
            CHANNEL,
            CHANNEL_KEY,
            &body(&inquiry(&va(PREFIX, "2999999999"), "I2")),
        )
        .await;
    assert_eq!(
        (r.0, r.1["rc"].as_str()),
        (StatusCode::OK, Some("BILLER_BILL_NOT_FOUND")),
        "{}",
        r.1
    );
    let r = api
        .ch(
            "payment",
            CHANNEL,
            CHANNEL_KEY,
            &body(&payment(&v, "PAY-LOW", "1000")),
        )
        .await;
    assert_eq!(r.1["rc"], "BILLER_INVALID_TRANSACTION_AMOUNT", "{}", r.1);

    // Pay, with a request id that is echoed back.
    let pay = body(&payment(&v, "PAY-1", "150000"));
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), &pay);
    let resp = api
        .http
        .post(format!("{}/api/v2/ch/payment", api.base))
        .header("X-Channel", CHANNEL)
        .header("X-Request-Id", "http-pay-1")
        .header("Signature", sig)
        .body(pay.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "http-pay-1");
    let a: Value = resp.json().await.unwrap();
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"]["status"], "paid");
    assert_eq!(a["data"]["payment"]["payment_ref_id"], "PAY-1");
    // Its webhook job was queued before the answer, keyed by bill, as the Kafka door does.
    let job = stack
        .webhooks
        .wait_for("payment.received job", 30, |m| {
            m.iter()
                .find(|r| r.json()["event"] == "payment.received")
                .cloned()
        })
        .await;
    assert_eq!(job.key.as_deref(), Some(bill.hash.as_str()));

    // The same payment again is answered from its first result; the bill is not paid twice.
    let again = api.ch("payment", CHANNEL, CHANNEL_KEY, &pay).await;
    assert_eq!(again.1["rc"], "SUCCESS", "{}", again.1);
    assert_eq!(again.1["data"]["payment"]["id"], a["data"]["payment"]["id"]);
    // The same reference is visible to the Kafka door: a Kafka repeat replays it too.
    stack
        .send("payment", "kafka-dup", payment(&v, "PAY-1", "150000"))
        .await;
    assert_eq!(
        stack.answer("kafka-dup").await["data"]["payment"]["id"],
        a["data"]["payment"]["id"]
    );

    // Reversal with IPG's body (bill_id, payment_ref, amount as a number).
    let rev = body(&json!({"bill_id": bill.hash, "payment_ref": "PAY-1", "amount": 150000}));
    let r = api.ch("reversal", CHANNEL, CHANNEL_KEY, &rev).await;
    assert_eq!(r.1["rc"], "SUCCESS", "{}", r.1);
    assert_eq!(r.1["data"]["status"], "active");
    assert_eq!(r.1["data"]["payment"]["status"], "reversed");
    let r = api.ch("reversal", CHANNEL, CHANNEL_KEY, &rev).await;
    assert_eq!(r.1["rc"], "BILLER_PAYMENT_ALREADY_REVERSED", "{}", r.1);
    stack
        .webhooks
        .wait_for("payment.reversal job", 30, |m| {
            m.iter()
                .find(|r| r.json()["event"] == "payment.reversal")
                .cloned()
        })
        .await;
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (2, 0));

    // HTTP metrics are labelled by route pattern and status.
    let scrape = api
        .http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"ipg_http_requests_total{route="/api/v2/ch/payment",status="200"}"#,
        r#"ipg_http_requests_total{route="/api/v2/ch/inquiry",status="401"}"#,
        r#"ipg_http_request_duration_seconds_count{route="/api/v2/ch/reversal"}"#,
    ] {
        assert!(scrape.contains(needle), "metrics miss {needle}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_created_over_http_paid_over_kafka_shows_everywhere() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let t = api.bearer(INST, "inst-key").await;
    let k = "inst-key";

    let (s, created) = api
        .post(&t, k, "/bill", &bill_body("3000000001", "partial", 200_000))
        .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    assert_eq!(created["rc"], "SUCCESS");
    let hash = created["data"]["hash"].as_str().unwrap().to_owned();
    let v = va(PREFIX, "3000000001");
    assert_eq!(created["data"]["va_number"], v.as_str());

    let (s, info) = api.get(&t, k, &format!("/bill/{hash}")).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(info["data"]["billed_amount"], 200_000);

    stack
        .send("payment", "k-pay-1", payment(&v, "KREF-1", "50000"))
        .await;
    assert_eq!(stack.answer("k-pay-1").await["rc"], "SUCCESS");

    let (s, pays) = api.get(&t, k, &format!("/bill/{hash}/payment")).await;
    assert_eq!(s, StatusCode::OK, "{pays}");
    assert_eq!(pays["data"].as_array().unwrap().len(), 1, "{pays}");
    assert_eq!(pays["data"][0]["payment_ref_id"], "KREF-1");
    assert_eq!(pays["data"][0]["amount"], 50_000);
    assert_eq!(pays["data"][0]["channel"], CHANNEL);

    let (_, list) = api.get(&t, k, "/payment").await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["data"][0]["payment_ref_id"], "KREF-1");
    assert_eq!(list["data"][0]["bill"]["hash"], hash.as_str());
    assert_eq!(list["data"][0]["bill"]["paid_amount"], 50_000);
    let (_, filtered) = api
        .get(&t, k, &format!("/payment?va_number={v}&q=kref"))
        .await;
    assert_eq!(filtered["total"], 1, "{filtered}");
    let (_, none) = api.get(&t, k, "/payment?va_number=8574990000000000").await;
    assert_eq!(none["total"], 0, "{none}");

    let (s, muts) = api.get(&t, k, &format!("/account/{INST}/mutation")).await;
    assert_eq!(s, StatusCode::OK, "{muts}");
    assert_eq!(muts["total"], 1);
    assert_eq!(muts["data"][0]["mutation_type"], "credit");
    assert_eq!(muts["data"][0]["balance_after"], 50_000);
    let (_, debits) = api
        .get(
            &t,
            k,
            &format!("/account/{INST}/mutation?mutation_type=debit"),
        )
        .await;
    assert_eq!(debits["total"], 0, "{debits}");
    let (_, accounts) = api
        .get(&t, k, &format!("/institution/{INST}/account"))
        .await;
    assert_eq!(accounts["data"][0]["hash"], INST);
    assert_eq!(accounts["data"][0]["balance"], 50_000);
    let (_, detail) = api.get(&t, k, &format!("/institution/{INST}")).await;
    assert_eq!(detail["data"]["code"], INST);
    assert_eq!(detail["data"]["prefixes"], json!([PREFIX, PREFIX2]));
    assert!(detail["data"].get("api_key").is_none());
    let (_, insts) = api.get(&t, k, "/institution").await;
    assert_eq!(insts["total"], 1);

    // Validation: the field is named; one active bill per VA.
    let mut b = bill_body("30000001", "close", 1000);
    let r = api.post(&t, k, "/bill", &b).await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "va_number",
    );
    b = bill_body("3000000002", "close", 1000);
    b["institution_code"] = json!(INST2);
    let r = api.post(&t, k, "/bill", &b).await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "institution_code",
    );
    b = bill_body("3000000002", "close", 1000);
    b["prefix"] = json!(PREFIX_B);
    let r = api.post(&t, k, "/bill", &b).await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "prefix",
    );
    b = bill_body("3000000002", "close", 1000);
    b["components"] = json!([{"name": "SPP", "qty": 1, "price": 500, "total": 500}, {"name": "Buku", "qty": 1, "price": 400, "total": 400}]);
    let r = api.post(&t, k, "/bill", &b).await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "total_amount",
    );
    b = bill_body("3000000002", "close", 1000);
    b["valid_until"] = json!("2020-01-01T00:00:00+07:00");
    let r = api.post(&t, k, "/bill", &b).await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "valid_until",
    );
    let r = api
        .post(&t, k, "/bill", &bill_body("3000000001", "close", 1000))
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "already has an active bill",
    );
    let r = api
        .gw(Method::POST, &t, k, "/bill", Some(b"{\"va_number\":"))
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "malformed JSON",
    );
    let huge = vec![b' '; 70_000];
    let r = api.gw(Method::POST, &t, k, "/bill", Some(&huge)).await;
    assert_refused(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "BILLER_INVALID_TRANSACTION",
        "larger than",
    );

    // Revoke: IPG's message, then the bill is no longer payable through Kafka.
    let (s, revoked) = api
        .gw(Method::DELETE, &t, k, &format!("/bill/{hash}"), Some(b"{}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["message"], "Billing revoked.");
    assert_eq!(revoked["data"]["status"], "revoked");
    stack
        .send("inquiry", "k-inq-2", inquiry(&v, "KINQ-2"))
        .await;
    assert_eq!(stack.answer("k-inq-2").await["rc"], "BILLER_BILL_NOT_FOUND");
    let (s, _) = api.get(&t, k, "/bill/nosuchbill").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_list_pages_and_filters() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let t = api.bearer(INST, "inst-key").await;
    let k = "inst-key";
    for i in 0..17u64 {
        let mut b = bill_body(&format!("40000000{i:02}"), "close", 1000 + i);
        if i == 7 {
            b["customer_name"] = json!("Fatimah Zahra");
        }
        let (s, v) = api.post(&t, k, "/bill", &b).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, p1) = api.get(&t, k, "/bill").await;
    assert_eq!(
        (
            &p1["current_page"],
            &p1["from"],
            &p1["to"],
            &p1["per_page"],
            &p1["last_page"],
            &p1["total"]
        ),
        (
            &json!(1),
            &json!(1),
            &json!(15),
            &json!(15),
            &json!(2),
            &json!(17)
        ),
        "{p1}"
    );
    assert_eq!(p1["data"].as_array().unwrap().len(), 15);
    let (_, p2) = api.get(&t, k, "/bill?page=2").await;
    assert_eq!((&p2["from"], &p2["to"]), (&json!(16), &json!(17)), "{p2}");
    assert_eq!(p2["data"].as_array().unwrap().len(), 2);

    let (_, q) = api.get(&t, k, "/bill?q=fatimah").await;
    assert_eq!(q["total"], 1, "{q}");
    assert_eq!(q["data"][0]["customer_name"], "Fatimah Zahra");
    let (_, asc) = api
        .get(&t, k, "/bill?order_by=total_amount&order=asc")
        .await;
    assert_eq!(asc["data"][0]["total_amount"], 1000, "{asc}");
    let (_, desc) = api
        .get(&t, k, "/bill?order_by=total_amount&order=desc")
        .await;
    assert_eq!(desc["data"][0]["total_amount"], 1016, "{desc}");

    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .date_naive();
    let (_, day) = api
        .get(&t, k, &format!("/bill?date.0={today}&date.1={today}"))
        .await;
    assert_eq!(day["total"], 17, "{day}");
    let tomorrow = today.succ_opt().unwrap();
    let (_, later) = api.get(&t, k, &format!("/bill?date.0={tomorrow}")).await;
    assert_eq!(
        (&later["total"], &later["from"]),
        (&json!(0), &Value::Null),
        "{later}"
    );

    let r = api.get(&t, k, "/bill?order_by=secret").await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "order_by",
    );
    let r = api.get(&t, k, "/bill?date.0=31-01-2026").await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "date.0",
    );
    let r = api.get(&t, k, "/bill?page=0").await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "page",
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_failure_is_401() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let k = "inst-key";

    let r = api.token(INST, "wrong").await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "client credentials",
    );
    let r = api.token("NOPE", k).await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "client credentials",
    );
    let r = api
        .send(
            api.http
                .post(format!("{}/oauth/token", api.base))
                .json(&json!({
            "grant_type": "password", "client_id": INST, "client_secret": k})),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "grant_type",
    );

    let (s, tok) = api.token(INST, k).await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], "3600");
    let t = tok["access_token"].as_str().unwrap().to_owned();
    assert_eq!(t.len(), 64);

    let (s, _) = api.get(&t, k, "/bill?page=1").await;
    assert_eq!(s, StatusCode::OK);
    // No token, a made-up token, another institution's key, a signature over other bytes.
    let r = api
        .send(
            api.http
                .get(format!("{}/api/v2/gw/bill", api.base))
                .header("Signature", signature::sign(k.as_bytes(), b"")),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "Bearer",
    );
    let r = api.get("0123456789abcdef", k, "/bill").await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "token",
    );
    let r = api.get(&t, INST2_KEY, "/bill").await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "signature",
    );
    let sig_of_other_query = signature::sign(k.as_bytes(), b"page=2");
    let r = api
        .send(
            api.http
                .get(format!("{}/api/v2/gw/bill?page=1", api.base))
                .header("Authorization", format!("Bearer {t}"))
                .header("Signature", sig_of_other_query),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "signature",
    );
    let b = body(&bill_body("5000000001", "close", 1000));
    let sig_of_other_body = signature::sign(k.as_bytes(), b"{}");
    let r = api
        .send(
            api.http
                .post(format!("{}/api/v2/gw/bill", api.base))
                .header("Authorization", format!("Bearer {t}"))
                .header("Signature", sig_of_other_body)
                .body(b.clone()),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "signature",
    );
    let r = api
        .send(
            api.http
                .post(format!("{}/api/v2/gw/bill", api.base))
                .header("Authorization", format!("Bearer {t}"))
                .body(b.clone()),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "Signature",
    );
    // Nothing was created by the refused calls.
    let (_, list) = api.get(&t, k, "/bill").await;
    assert_eq!(list["total"], 0, "{list}");
    // Sandbox is off by default.
    let r = api.get(&t, k, "/bill/abc/mock?type=payment").await;
    assert_refused(
        &r,
        StatusCode::FORBIDDEN,
        "BILLER_INVALID_TRANSACTION",
        "disabled",
    );

    // Rotating the institution's key in the configuration kills its tokens.
    daemon.stop().await;
    let mut rotated = stack.settings.clone();
    for i in &mut rotated.institutions {
        if i.code == INST {
            i.api_key = Some("inst-key-2".into());
        }
    }
    let daemon = ipg_switch_daemon(rotated);
    let api = Api::up(port).await;
    let r = api.get(&t, "inst-key-2", "/bill").await;
    assert_refused(
        &r,
        StatusCode::UNAUTHORIZED,
        "BILLER_AUTHENTICATION",
        "token",
    );
    let t2 = api.bearer(INST, "inst-key-2").await;
    let (s, _) = api.get(&t2, "inst-key-2", "/bill").await;
    assert_eq!(s, StatusCode::OK);
    daemon.stop().await;
}

fn ipg_switch_daemon(settings: ipg_switch::settings::Settings) -> Daemon {
    Daemon::start(settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "token_ttl_secs = 1")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let (_, tok) = api.token(INST, "inst-key").await;
    assert_eq!(tok["expires_in"], "1");
    let t = tok["access_token"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = api.get(&t, "inst-key", "/bill").await;
        if r.0 == StatusCode::UNAUTHORIZED {
            assert_refused(
                &r,
                StatusCode::UNAUTHORIZED,
                "BILLER_AUTHENTICATION",
                "expired",
            );
            break;
        }
        assert!(Instant::now() < deadline, "token never expired: {}", r.1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_institution_sees_and_changes_only_its_own_bills() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "sandbox = true")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let (ta, ka) = (api.bearer(INST, "inst-key").await, "inst-key");
    let (tb, kb) = (api.bearer(INST2, INST2_KEY).await, INST2_KEY);

    let (_, a_bill) = api
        .post(&ta, ka, "/bill", &bill_body("6000000001", "close", 75_000))
        .await;
    let hash = a_bill["data"]["hash"].as_str().unwrap().to_owned();

    // B cannot read, list, revoke, see payments of, or mock-pay A's bill.
    let r = api.get(&tb, kb, &format!("/bill/{hash}")).await;
    assert_refused(
        &r,
        StatusCode::NOT_FOUND,
        "BILLER_BILL_NOT_FOUND",
        "not found",
    );
    let r = api
        .gw(
            Method::DELETE,
            &tb,
            kb,
            &format!("/bill/{hash}"),
            Some(b"{}"),
        )
        .await;
    assert_refused(
        &r,
        StatusCode::NOT_FOUND,
        "BILLER_BILL_NOT_FOUND",
        "not found",
    );
    let r = api.get(&tb, kb, &format!("/bill/{hash}/payment")).await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    let r = api
        .get(&tb, kb, &format!("/bill/{hash}/mock?type=payment"))
        .await;
    assert_refused(
        &r,
        StatusCode::NOT_FOUND,
        "BILLER_BILL_NOT_FOUND",
        "not found",
    );
    let (_, b_list) = api.get(&tb, kb, "/bill").await;
    assert_eq!(b_list["total"], 0, "{b_list}");
    let r = api
        .get(&tb, kb, &format!("/bill?institution_code={INST}"))
        .await;
    assert_refused(
        &r,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "institution_code",
    );
    let r = api.get(&tb, kb, &format!("/institution/{INST}")).await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    let r = api
        .get(&tb, kb, &format!("/institution/{INST}/account"))
        .await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    let r = api.get(&tb, kb, &format!("/account/{INST}/mutation")).await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    // B's token with A's key is not A.
    let r = api.get(&tb, ka, &format!("/bill/{hash}")).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.1);

    // A's bill is untouched, and A itself can mock-pay and mock-reverse it (sandbox on).
    let (_, still) = api.get(&ta, ka, &format!("/bill/{hash}")).await;
    assert_eq!(still["data"]["status"], "active", "{still}");
    let (s, paid) = api
        .get(
            &ta,
            ka,
            &format!("/bill/{hash}/mock?type=payment&ref=MOCK-1"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{paid}");
    assert_eq!(paid["rc"], "SUCCESS", "{paid}");
    assert_eq!(paid["data"]["status"], "paid");
    assert_eq!(paid["data"]["payment"]["channel"], "ipg_sandbox");
    let (_, rev) = api
        .get(
            &ta,
            ka,
            &format!("/bill/{hash}/mock?type=reversal&ref=MOCK-1"),
        )
        .await;
    assert_eq!(rev["rc"], "SUCCESS", "{rev}");
    assert_eq!(rev["data"]["status"], "active");
    let (_, pays) = api.get(&ta, ka, &format!("/bill/{hash}/payment")).await;
    assert_eq!(pays["data"][0]["status"], "reversed", "{pays}");

    // The day's statement, from the journal: JSON, or CSV with the same hash.
    let today = ipg_switch::clock::Clock::new(chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .now()
        .date_naive()
        .to_string();
    let pq = format!("/statement?date={today}");
    let (s, st) = api.get(&ta, ka, &pq).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    let kinds: Vec<(&str, &str)> = st["data"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["reference"] == "MOCK-1")
        .map(|l| (l["type"].as_str().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("payment", "reversed"), ("reversal", "reversed")],
        "{st}"
    );
    let csv = api
        .http
        .get(format!("{}/api/v2/gw{pq}", api.base))
        .header("Authorization", format!("Bearer {ta}"))
        .header(
            "Signature",
            signature::sign(ka.as_bytes(), pq.split_once('?').unwrap().1.as_bytes()),
        )
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("time,channel,reference,"), "{csv}");
    assert!(
        csv.ends_with(&format!(
            "# sha256,{}\n",
            st["data"]["sha256"].as_str().unwrap()
        )),
        "{csv}"
    );
    let bad = api.get(&ta, ka, "/statement?date=29-11-2026").await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);

    // Issue 24: 20 statements asked at once while payments flow. At most
    // statement.max_concurrent (4) are read at once; the others are refused at once with
    // 429 and a JSON error, never queued; every payment meanwhile is answered.
    for i in 0..10 {
        stack
            .create_bill(bill_body(&format!("61000000{i:02}"), "close", 10_000))
            .await;
    }
    let statements = (0..20).map(|_| api.get(&ta, ka, &pq));
    let payments = (0..10).map(|i| {
        let pay = body(&payment(
            &va(PREFIX, &format!("61000000{i:02}")),
            &format!("CONC-{i}"),
            10_000,
        ));
        let api = &api;
        async move { api.ch("payment", CHANNEL, CHANNEL_KEY, &pay).await }
    });
    let (read, paid) = tokio::join!(
        futures::future::join_all(statements),
        futures::future::join_all(payments)
    );
    for (s, v) in &read {
        assert!(
            *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS,
            "{s} {v}"
        );
        if *s == StatusCode::TOO_MANY_REQUESTS {
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("statement.max_concurrent"),
                "{v}"
            );
        }
    }
    assert!(read.iter().any(|(s, _)| *s == StatusCode::OK));
    let refused = read
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS);
    eprintln!(
        "20 statements at once: {} refused with 429",
        refused.count()
    );
    for (s, v) in &paid {
        assert_eq!(
            (*s, v["rc"].as_str()),
            (StatusCode::OK, Some("SUCCESS")),
            "{v}"
        );
    }
    let (s, after) = api.get(&ta, ka, &pq).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "nothing stays held after a burst: {after}"
    );
    daemon.stop().await;
}

#[test]
fn openapi_document_parses_and_lists_every_route() {
    let doc: Value =
        serde_json::from_str(include_str!("../docs/openapi.json")).expect("valid JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/oauth/token", &["post"][..]),
        ("/api/v2/ch/inquiry", &["post"]),
        ("/api/v2/ch/payment", &["post"]),
        ("/api/v2/ch/reversal", &["post"]),
        ("/api/v2/ch/check-status", &["post"]),
        ("/api/v2/gw/bill", &["get", "post"]),
        ("/api/v2/gw/bill/batch", &["post"]),
        ("/api/v2/gw/bill/batch/jobs", &["post"]),
        ("/api/v2/gw/bill/batch/recurring", &["post"]),
        ("/api/v2/gw/bill/batch/jobs/{job_id}", &["get"]),
        ("/api/v2/gw/bill/batch/jobs/{job_id}/results", &["get"]),
        ("/api/v2/gw/bill/{hash}", &["get", "delete"]),
        ("/api/v2/gw/bill/{hash}/payment", &["get"]),
        ("/api/v2/gw/bill/{hash}/mock", &["get"]),
        ("/api/v2/gw/payment", &["get"]),
        ("/api/v2/gw/account/{account}/mutation", &["get"]),
        ("/api/v2/gw/institution", &["get"]),
        ("/api/v2/gw/institution/{code}", &["get"]),
        ("/api/v2/gw/institution/{code}/account", &["get"]),
        ("/api/v2/gw/statement", &["get"]),
        ("/openapi.json", &["get"]),
        ("/snap/v1.0/access-token/b2b", &["post"]),
        ("/snap/v1.0/transfer-va/inquiry", &["post"]),
        ("/snap/v1.0/transfer-va/payment", &["post"]),
        ("/snap/v1.0/transfer-va/status", &["post"]),
        ("/snap/v1.0/transfer-va/create-va", &["post"]),
        ("/snap/v1.0/transfer-va/update-va", &["put"]),
        ("/snap/v1.0/transfer-va/update-status", &["put"]),
        ("/snap/v1.0/transfer-va/inquiry-va", &["post"]),
        ("/snap/v1.0/transfer-va/delete-va", &["delete"]),
        ("/snap/v1.0/transfer-va/report", &["post"]),
    ] {
        let p = paths
            .get(path)
            .unwrap_or_else(|| panic!("openapi.json misses {path}"));
        for m in methods {
            assert!(p.get(*m).is_some(), "openapi.json misses {m} {path}");
        }
    }
    assert_eq!(paths.len(), 31, "every documented path is a served route");
}

/// Issue 22 items 9 and 5: a body two parsers read differently is refused on every door,
/// naming the repeated field (a signed payment `{"amount":1,...,"amount":100000}` pays
/// nothing, over HTTP and over Kafka; an Active Client bill likewise), and every HTTP error,
/// even one no handler made (404, 405, a query the extractor cannot read), has the
/// documented JSON shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_names_are_refused_on_every_door_and_every_error_is_json() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    stack.create_bill(bill_body("6000000001", "open", 0)).await;
    let v = va(PREFIX, "6000000001");
    let twice = |amount_first: &str| {
        format!(
            r#"{{"va_number":"{v}","ref_id":"DUP-1","amount":{amount_first},"transaction_date":"2024-12-30 23:18:01","amount":100000}}"#
        )
    };

    let (s, a) = api
        .ch("payment", CHANNEL, CHANNEL_KEY, twice("1").as_bytes())
        .await;
    assert_refused(
        &(s, a),
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "amount",
    );

    let raw = format!(
        r#"{{"type":"payment","channel":"{CHANNEL}","request_id":"dup-k1","body":{}}}"#,
        twice("\"1\"")
    );
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), raw.as_bytes());
    stack
        .produce_raw(Some(&v), raw.as_bytes(), Some(&sig))
        .await;
    let a = stack.answer("dup-k1").await;
    assert_eq!(a["rc"], "BILLER_INVALID_TRANSACTION", "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("body.amount"),
        "{a}"
    );
    let dl = stack
        .dead_letters
        .wait_for("the dead letter", 30, |m| m.first().cloned())
        .await;
    assert_eq!(dl.headers["reason_code"], "invalid_field");

    // Nothing was paid: the same reference, well formed, pays now and only once.
    let (s, a) = api
        .ch(
            "payment",
            CHANNEL,
            CHANNEL_KEY,
            &body(&payment(&v, "DUP-1", 100_000)),
        )
        .await;
    assert_eq!(
        (s, a["rc"].as_str()),
        (StatusCode::OK, Some("SUCCESS")),
        "{a}"
    );

    // The Active Client API: a bill whose total is given twice.
    let t = api.bearer(INST, "inst-key").await;
    let mut bill = serde_json::to_string(&bill_body("6000000002", "close", 5_000)).unwrap();
    bill.insert_str(1, r#""total_amount":1,"#);
    let got = api
        .gw(Method::POST, &t, "inst-key", "/bill", Some(bill.as_bytes()))
        .await;
    assert_refused(
        &got,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "total_amount",
    );

    // Errors no handler made.
    let nowhere = api
        .send(api.http.get(format!("{}/api/v2/nowhere", api.base)))
        .await;
    assert_refused(
        &nowhere,
        StatusCode::NOT_FOUND,
        "BILLER_INVALID_TRANSACTION",
        "/api/v2/nowhere",
    );
    let wrong_method = api
        .send(api.http.get(format!("{}/api/v2/ch/payment", api.base)))
        .await;
    assert_refused(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "BILLER_INVALID_TRANSACTION",
        "does not take GET",
    );

    // The same kind in a query and in headers: a parameter or a deciding header twice.
    let q = api.get(&t, "inst-key", "/bill?page=1&page=2").await;
    assert_refused(
        &q,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "page",
    );
    let inq = body(&inquiry(&v, "DUP-INQ"));
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), &inq);
    let two_sigs = api
        .send(
            api.http
                .post(format!("{}/api/v2/ch/inquiry", api.base))
                .header("X-Channel", CHANNEL)
                .header("Signature", &sig)
                .header("Signature", "00")
                .body(inq.clone()),
        )
        .await;
    assert_refused(
        &two_sigs,
        StatusCode::BAD_REQUEST,
        "BILLER_INVALID_TRANSACTION",
        "signature",
    );
    // Over Kafka, two signature headers are no signature.
    let raw = serde_json::to_vec(&json!({"type": "inquiry", "channel": CHANNEL,
        "request_id": "dup-sig", "body": inquiry(&v, "DUP-INQ2")}))
    .unwrap();
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), &raw);
    let rec = rdkafka::producer::FutureRecord::<str, [u8]>::to(&stack.settings.topics.request)
        .payload(&raw)
        .key(&v)
        .headers(
            rdkafka::message::OwnedHeaders::new()
                .insert(rdkafka::message::Header {
                    key: "signature",
                    value: Some(&sig),
                })
                .insert(rdkafka::message::Header {
                    key: "signature",
                    value: Some("00"),
                }),
        );
    stack
        .producer
        .send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(stack.answer("dup-sig").await["rc"], "BILLER_AUTHENTICATION");
    daemon.stop().await;
}

/// Bulk issuance over the Active Client API (issue 28, docs/api.md "Bulk issuance"): a
/// JSON array and a CSV upload, each row on its own with its result; the same upload again
/// creates nothing; a dry run creates nothing; a body over api.max_body_bytes but within
/// api.max_batch_bytes is taken; another institution's rows are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_issuance_over_http_issues_each_row_once() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "max_body_bytes = 4096\n")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let t = api.bearer(INST, "inst-key").await;
    let k = "inst-key";
    // 60 bills (about 10 kB: over max_body_bytes), two of them bad.
    let mut bills: Vec<Value> = (0..60u64)
        .map(|i| bill_body(&format!("45000000{i:02}"), "close", 50_000 + i))
        .collect();
    bills[3]["total_amount"] = json!("abc");
    bills[7]["institution_code"] = json!(INST2);
    let body = serde_json::to_vec(&bills).unwrap();
    assert!(body.len() > 4096);
    let (s, v) = api
        .gw(Method::POST, &t, k, "/bill/batch?dry_run=true", Some(&body))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["data"]["valid"], &v["data"]["refused"]),
        (&json!(58), &json!(2)),
        "{v}"
    );
    let (s, v) = api
        .gw(Method::POST, &t, k, "/bill/batch", Some(&body))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["data"]["created"], &v["data"]["refused"]),
        (&json!(58), &json!(2)),
        "{v}"
    );
    let rows = v["data"]["rows"].as_array().unwrap();
    assert_eq!(rows[3]["field"], "total_amount");
    assert_eq!(rows[7]["field"], "institution_code");
    let (s, again) = api
        .gw(Method::POST, &t, k, "/bill/batch", Some(&body))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (&again["data"]["created"], &again["data"]["existing"]),
        (&json!(0), &json!(58))
    );
    for (a, b) in rows.iter().zip(again["data"]["rows"].as_array().unwrap()) {
        assert_eq!(a["hash"], b["hash"], "the same bill, row by row");
    }

    // A CSV upload, answered as CSV.
    let csv = format!(
        "va_number,prefix,type,name,customer_name,total_amount\n4600000001,{PREFIX},open,Infaq,Hamba Allah,0\n4600000002,{PREFIX},close,SPP,=1+1,100\n"
    );
    let r = api
        .http
        .post(format!("{}/api/v2/gw/bill/batch", api.base))
        .header("Authorization", format!("Bearer {t}"))
        .header("Signature", signature::sign(k.as_bytes(), csv.as_bytes()))
        .header("Content-Type", "text/csv")
        .header("Accept", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("row,status,hash,va_number,field,reason\n1,created,"),
        "{text}"
    );
    assert!(text.contains("2,refused,,,customer_name,"), "{text}");
    daemon.stop().await;
    stack.assert_verify_agrees().await;
}

/// A bulk issuance job (issue 28, docs/api.md "Bulk issuance jobs"): submitted over HTTP to
/// `ipg-switch run` as its own process, which is killed (SIGKILL) in the middle of the job;
/// after a restart the job completes by itself, every bill exists once, every row has one
/// result, the same upload again is the same job, and `verify` agrees. A second job holds
/// bad rows, each named (a row without `invoice_number` among them); a dry-run job creates
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_issuance_job_survives_kill_9_and_issues_each_row_once() {
    use std::process::{Command, Stdio};
    let port = free_port();
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .env("IPG__API__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let status_of = |api: &Api, t: String, id: String| {
        let api = Api {
            base: api.base.clone(),
            http: api.http.clone(),
        };
        async move {
            let (s, v) = api
                .get(&t, "inst-key", &format!("/bill/batch/jobs/{id}"))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["data"].clone()
        }
    };
    let mut child = spawn();
    let api = Api::up(port).await;
    let t = api.bearer(INST, "inst-key").await;
    let rows = 3_000u64;
    let bills: Vec<Value> = (0..rows)
        .map(|i| bill_body(&format!("81{i:08}"), "close", 150_000))
        .collect();
    let body = serde_json::to_vec(&bills).unwrap();
    let (s, v) = api
        .gw(
            Method::POST,
            &t,
            "inst-key",
            "/bill/batch/jobs",
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["data"]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(v["data"]["total"], rows);
    // Killed once some rows have results, before it is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = status_of(&api, t.clone(), id.clone()).await;
        assert_ne!(j["status"], "done", "killed before the end: {j}");
        if j["processed"].as_u64().unwrap() >= 200 {
            eprintln!("killed with {} of {rows} rows processed", j["processed"]);
            break;
        }
        assert!(Instant::now() < deadline, "the job never started: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let restarted = Instant::now();
    let mut child = spawn();
    let api = Api::up(port).await;
    let t = api.bearer(INST, "inst-key").await;
    // The same upload again: the same job, nothing new.
    let (s, again) = api
        .gw(
            Method::POST,
            &t,
            "inst-key",
            "/bill/batch/jobs",
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["job_id"], id.as_str());
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let j = status_of(&api, t.clone(), id.clone()).await;
        if j["status"] == "done" {
            break j;
        }
        assert!(Instant::now() < deadline, "the job was not taken up: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "job done {:.1} s after the restart: {} created, {} existing",
        restarted.elapsed().as_secs_f64(),
        done["created"],
        done["existing"]
    );
    assert_eq!(done["processed"], rows, "{done}");
    assert_eq!(
        done["created"].as_u64().unwrap() + done["existing"].as_u64().unwrap(),
        rows,
        "{done}"
    );
    assert_eq!(done["refused"], 0, "{done}");
    let (s, res) = api
        .get(&t, "inst-key", &format!("/bill/batch/jobs/{id}/results"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let res_rows = res["data"]["rows"].as_array().unwrap();
    assert_eq!(res_rows.len(), rows as usize);
    let hashes: std::collections::HashSet<&str> = res_rows
        .iter()
        .map(|r| r["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), rows as usize, "one bill per row");
    let mut conn = redis::Client::open(stack.settings.redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let n: u64 = redis::cmd("ZCARD")
        .arg(format!("ipg:{{{INST}}}:bills"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, rows, "every bill once");

    // Bad rows, each named; a dry run creates nothing; an unknown job is 404.
    let mut bad: Vec<Value> = (0..20u64)
        .map(|i| bill_body(&format!("82{i:08}"), "close", 10_000))
        .collect();
    bad[2]["total_amount"] = json!(-5);
    bad[5]["va_number"] = json!("12");
    // A job's row names its invoice number (docs/api.md "Bulk issuance jobs").
    bad[9].as_object_mut().unwrap().remove("invoice_number");
    let bad_body = serde_json::to_vec(&bad).unwrap();
    let (s, v) = api
        .gw(
            Method::POST,
            &t,
            "inst-key",
            "/bill/batch/jobs?dry_run=true",
            Some(&bad_body),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let dry = v["data"]["job_id"].as_str().unwrap().to_owned();
    let (s, v) = api
        .gw(
            Method::POST,
            &t,
            "inst-key",
            "/bill/batch/jobs",
            Some(&bad_body),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let real = v["data"]["job_id"].as_str().unwrap().to_owned();
    assert_ne!(dry, real);
    for (job, ok_status) in [(&dry, "valid"), (&real, "created")] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while status_of(&api, t.clone(), job.clone()).await["status"] != "done" {
            assert!(Instant::now() < deadline, "job {job} not done");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = api
            .http
            .get(format!(
                "{}/api/v2/gw/bill/batch/jobs/{job}/results",
                api.base
            ))
            .header("Authorization", format!("Bearer {t}"))
            .header("Signature", signature::sign(b"inst-key", b""))
            .header("Accept", "text/csv")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21, "{text}");
        assert!(lines[3].starts_with("3,refused,,,total_amount,"), "{text}");
        assert!(lines[6].starts_with("6,refused,,,va_number,"), "{text}");
        assert!(
            lines[10].starts_with("10,refused,,,invoice_number,"),
            "{text}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains(ok_status)).count(),
            17,
            "{text}"
        );
    }
    let (s, _) = api
        .get(
            &t,
            "inst-key",
            "/bill/batch/jobs/0123456789abcdef0123456789abcdef",
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    child.kill().unwrap();
    child.wait().unwrap();
    stack.assert_verify_agrees().await;
}

/// Recurring issuance over the API (issue 28, docs/api.md "Recurring issuance"): a
/// template, a customer list and a period as one job; the same request again is the same
/// job; a longer list for the same period creates only the new customer's bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurring_issuance_over_http_bills_each_customer_once_per_period() {
    let port = free_port();
    let stack = Stack::start_with(&overlay(port, "")).await;
    let daemon = stack.daemon();
    let api = Api::up(port).await;
    let t = api.bearer(INST, "inst-key").await;
    // Next month: its bills are due on the 10th, in the future whenever this runs.
    use chrono::Datelike;
    let next = (chrono::Utc::now().date_naive().with_day(1).unwrap() + chrono::Duration::days(40))
        .format("%Y-%m")
        .to_string();
    let template = json!({"prefix": PREFIX, "type": "close", "name": "SPP {period}",
        "total_amount": 250_000, "due_day": 10});
    let customers = |n: usize| {
        let mut c = String::from("va_number,customer_name,total_amount\n");
        for i in 0..n {
            let fee = if i == 0 { "125000" } else { "" };
            c.push_str(&format!("83000000{i:02},Siswa {i},{fee}\n"));
        }
        c
    };
    let request = |n: usize| {
        serde_json::to_vec(
            &json!({"period": next, "template": template, "customers": customers(n)}),
        )
        .unwrap()
    };
    let run = |body: Vec<u8>| {
        let api = Api {
            base: api.base.clone(),
            http: api.http.clone(),
        };
        let t = t.clone();
        async move {
            let (s, v) = api
                .gw(
                    Method::POST,
                    &t,
                    "inst-key",
                    "/bill/batch/recurring",
                    Some(&body),
                )
                .await;
            assert!(s == StatusCode::ACCEPTED || s == StatusCode::OK, "{v}");
            let id = v["data"]["job_id"].as_str().unwrap().to_owned();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (_, j) = api
                    .get(&t, "inst-key", &format!("/bill/batch/jobs/{id}/results"))
                    .await;
                if j["data"]["status"] == "done" {
                    return (s, id, j["data"].clone());
                }
                assert!(Instant::now() < deadline, "{j}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (s, first, j) = run(request(5)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        (&j["created"], &j["refused"]),
        (&json!(5), &json!(0)),
        "{j}"
    );
    let rows = j["rows"].as_array().unwrap();
    let (_, bill) = api
        .get(
            &t,
            "inst-key",
            &format!("/bill/{}", rows[0]["hash"].as_str().unwrap()),
        )
        .await;
    assert_eq!(bill["data"]["total_amount"], 125_000, "the list's own fee");
    assert_eq!(bill["data"]["name"], format!("SPP {next}"));
    let (s, again, _) = run(request(5)).await;
    assert_eq!(
        (s, again),
        (StatusCode::OK, first),
        "the same request, the same job"
    );
    let (_, _, j) = run(request(6)).await;
    assert_eq!(
        (&j["created"], &j["existing"]),
        (&json!(1), &json!(5)),
        "{j}"
    );
    daemon.stop().await;
    stack.assert_verify_agrees().await;
}

/// A job's results are saved only under its lease, and a row's first result stays
/// (`lua/batch_save.lua`): a run that lost its lease to another never rewrites a row nor
/// the job's status; a job no longer kept is not brought back by a late save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_issuance_job_is_written_only_by_the_run_holding_its_lease() {
    use ipg_switch::store::batch::Submitted;
    use ipg_switch::store::keys;
    let stack = Stack::start().await;
    let store = stack.switch().hosted.store.clone();
    let ttl = Duration::from_secs(600);
    let id = "0123456789abcdef0123456789abcdef";
    let sub = store
        .submit_batch_job(INST, id, "json", false, 2, b"[]", ttl, 20)
        .await
        .unwrap();
    assert_eq!(sub, Submitted::Created);
    let again = store
        .submit_batch_job(INST, id, "json", false, 2, b"[]", ttl, 20)
        .await
        .unwrap();
    assert_eq!(again, Submitted::Existing("queued".into()));
    let job = store.batch_job(INST, id).await.unwrap().unwrap();
    assert_eq!(job.expire_at_ms - job.created_ms, 600_000);
    let lease = keys::batch_job_lease(INST, id);
    assert!(store.try_lock(&lease, "run-a", ttl).await.unwrap());
    let first = [(1usize, "{\"row\":1,\"status\":\"created\"}".to_owned())];
    let other = [(1usize, "{\"row\":1,\"status\":\"existing\"}".to_owned())];
    let running = [("status", "running".to_owned())];
    // Another run's token writes nothing.
    assert!(!store
        .save_batch_results(INST, id, "run-b", &first, &running, job.expire_at_ms)
        .await
        .unwrap());
    assert_eq!(store.batch_job_rows_count(INST, id).await.unwrap(), 0);
    assert!(store
        .save_batch_results(INST, id, "run-a", &first, &running, job.expire_at_ms)
        .await
        .unwrap());
    assert!(store
        .save_batch_results(INST, id, "run-a", &other, &[], job.expire_at_ms)
        .await
        .unwrap());
    let rows = store.batch_job_results(INST, id).await.unwrap();
    assert_eq!(rows[&1], first[0].1, "a row's first result stays");
    assert_eq!(
        store.batch_job(INST, id).await.unwrap().unwrap().status,
        "running"
    );
    // A job gone (expired) is not brought back.
    let mut conn = redis::Client::open(stack.settings.redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(keys::batch_job(INST, id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!store
        .save_batch_results(INST, id, "run-a", &first, &running, job.expire_at_ms)
        .await
        .unwrap());
    assert!(store.batch_job(INST, id).await.unwrap().is_none());
}
