//! SNAP BI's door (issue 26, docs/snap.md): a SNAP bank client written here (an RSA key pair
//! made by `openssl` for this test, the B2B access token, HMAC-SHA512-signed calls) against
//! the real daemon, real redis-server and the Kafka-protocol broker, on the same bills as
//! IPG's doors: inquiry -> payment -> status, every refusal with its code and nothing moved,
//! and copies of one payment through SNAP, IPG HTTP and Kafka at once paid once.

mod common;

use std::path::PathBuf;

use common::snap::{key_pair, now, Bank};
use common::*;
use ipg_switch::signature::snap::{string_to_sign, Hmac512};
use serde_json::{json, Value};

const CLIENT_ID: &str = "BANKSYARIAH-SNAP";
const SECRET: &str = "snap-client-secret";
const PSID: &str = "  857499";

fn identity(number: &str) -> Value {
    json!({"partnerServiceId": PSID, "customerNo": number,
        "virtualAccountNo": format!("{PSID}{number}")})
}

fn with(mut v: Value, extra: Value) -> Value {
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn pay_body(number: &str, request_id: &str, value: &str) -> Value {
    with(
        identity(number),
        json!({"paymentRequestId": request_id, "virtualAccountName": "Ahmad",
            "paidAmount": {"value": value, "currency": "IDR"}, "channelCode": 6011,
            "trxDateTime": now(), "referenceNo": "00113696201"}),
    )
}

fn code(a: &(u16, Value)) -> (u16, &str) {
    (a.0, a.1["responseCode"].as_str().unwrap_or("none"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snap_bank_pays_ipg_bills_and_every_door_pays_once() {
    let (private, public) = key_pair();
    let api = free_port();
    let mut stack = Stack::start_with(&format!("[api]\nlisten = \"127.0.0.1:{api}\"\n")).await;
    let ch = (stack.settings.channels.iter_mut())
        .find(|c| c.code == CHANNEL)
        .unwrap();
    ch.snap = Some(ipg_switch::routing::config::SnapPartnerSettings {
        client_id: CLIENT_ID.into(),
        services: None,
        public_key_file: public.display().to_string(),
        client_secret_env: "IPG_TEST_SNAP_SECRET".into(),
        resolved_secret: Some(SECRET.into()),
        resolved_public_key: Some(std::fs::read_to_string(&public).unwrap()),
    });
    let base = format!("http://127.0.0.1:{api}");
    let daemon = stack.daemon();
    http_up(&base).await;
    // Bills created through IPG's Active Client API path (the switch's create).
    let (one, two, three) = ("7300000001", "7300000002", "7300000003");
    for n in [one, two, three] {
        stack.create_bill(bill_body(n, "close", 150_000)).await;
    }
    // A partial, an open and a soon expired bill.
    let (part, open, soon) = ("7300000004", "7300000005", "7300000006");
    stack.create_bill(bill_body(part, "partial", 100_000)).await;
    stack.create_bill(bill_body(open, "open", 0)).await;
    let mut expiring = bill_body(soon, "close", 150_000);
    // Whole seconds, as the switch's clock compares them.
    let expiry =
        chrono::Timelike::with_nanosecond(&(chrono::Utc::now() + chrono::Duration::seconds(2)), 0)
            .unwrap();
    expiring["valid_until"] = expiry.to_rfc3339().into();
    stack.create_bill(expiring).await;

    // The token: a signature by another key, an unknown client, then the real one.
    let (other, _) = key_pair();
    let t = Bank::token_with(&base, &other, CLIENT_ID).await;
    assert_eq!(code(&t), (401, "4017300"), "{:?}", t.1);
    let t = Bank::token_with(&base, &private, "NOBODY").await;
    assert_eq!(code(&t), (401, "4017300"), "{:?}", t.1);
    let t = Bank::token_with(&base, &private, CLIENT_ID).await;
    assert_eq!(code(&t), (200, "2007300"), "{:?}", t.1);
    assert_eq!(t.1["tokenType"], "Bearer");
    assert_eq!(t.1["expiresIn"], "900");
    let bank = Bank {
        client_id: CLIENT_ID.into(),
        secret: SECRET.into(),
        base: base.clone(),
        http: reqwest::Client::new(),
        token: t.1["accessToken"].as_str().unwrap().to_owned(),
    };

    // 24: the bill as SNAP shows it.
    let a = bank
        .call(
            "inquiry",
            "X-INQ-1",
            &with(identity(one), json!({"inquiryRequestId": "PR-1"})),
        )
        .await;
    assert_eq!(code(&a), (200, "2002400"), "{:?}", a.1);
    let d = &a.1["virtualAccountData"];
    assert_eq!(d["inquiryStatus"], "00");
    assert_eq!(d["virtualAccountNo"], format!("{PSID}{one}"));
    assert_eq!(d["virtualAccountName"], "Ahmad");
    assert_eq!(
        d["totalAmount"],
        json!({"value": "150000.00", "currency": "IDR"})
    );
    assert_eq!(d["virtualAccountTrxType"], "C");

    // Every refusal has its code, and nothing moves.
    let body = pay_body(one, "PR-1", "150000.00");
    let refusals = [
        (
            bank.call("payment", "X-C", &pay_body(one, "PR-1", "150000.50"))
                .await,
            (400, "4002501"),
        ),
        (
            bank.call(
                "payment",
                "X-M",
                &with(body.clone(), json!({"paidAmount": null})),
            )
            .await,
            (400, "4002502"),
        ),
        (
            bank.call("payment", "X-A", &pay_body(one, "PR-A", "100.00"))
                .await,
            (404, "4042513"),
        ),
        (
            bank.call(
                "payment",
                "X-U",
                &pay_body("7399999999", "PR-U", "150000.00"),
            )
            .await,
            (404, "4042512"),
        ),
        (
            bank.call_with("payment", "X-S", &body, "2020-01-01T00:00:00+07:00", |r| r)
                .await,
            (401, "4012500"),
        ),
        (
            bank.call_with("payment", "X-G", &body, &now(), |r| {
                r.header("X-SIGNATURE", "AAAA")
            })
            .await,
            (400, "4002501"),
        ),
        (
            bank.call_with("payment", "X-T", &body, &now(), |r| {
                r.header("Authorization", "Bearer nope")
            })
            .await,
            (400, "4002501"),
        ),
        (
            bank.call_with("payment", "", &body, &now(), |r| r).await,
            (400, "4002502"),
        ),
    ];
    for (got, want) in &refusals {
        assert_eq!(code(got), *want, "{:?}", got.1);
    }
    // A wrong token and a bad signature, each sent alone.
    let wrong = Bank {
        client_id: CLIENT_ID.into(),
        secret: SECRET.into(),
        token: "nope".into(),
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let a = wrong.call("payment", "X-T2", &body).await;
    assert_eq!(code(&a), (401, "4012501"), "{:?}", a.1);
    let forged = Bank {
        client_id: CLIENT_ID.into(),
        secret: SECRET.into(),
        token: bank.token.clone(),
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let a = forged
        .call_with("payment", "X-G2", &body, &now(), |r| {
            r.body(serde_json::to_string(&pay_body(one, "PR-1", "1.00")).unwrap())
        })
        .await;
    assert_eq!(code(&a), (401, "4012500"), "{:?}", a.1);
    assert_eq!(stack.ledger().await.0.len(), 0, "no refusal moved money");

    // 25: paid; the same X-EXTERNAL-ID again, and an advice under a new one: the first
    // answer; the same X-EXTERNAL-ID for another payment: a conflict.
    let first = bank.call("payment", "X-PAY-1", &body).await;
    assert_eq!(code(&first), (200, "2002500"), "{:?}", first.1);
    let d = &first.1["virtualAccountData"];
    assert_eq!(d["paymentFlagStatus"], "00");
    assert_eq!(
        d["paidAmount"],
        json!({"value": "150000.00", "currency": "IDR"})
    );
    let payment_id = d["additionalInfo"]["paymentId"].clone();
    assert!(payment_id.is_string(), "{d}");
    for xid in ["X-PAY-1", "X-PAY-ADVICE"] {
        let again = bank
            .call(
                "payment",
                xid,
                &with(body.clone(), json!({"flagAdvise": "Y"})),
            )
            .await;
        assert_eq!(code(&again), (200, "2002500"), "{xid}: {:?}", again.1);
        assert_eq!(
            again.1["virtualAccountData"]["additionalInfo"]["paymentId"],
            payment_id
        );
    }
    // Ids are unique per service: an inquiry may use the payment's.
    let a = bank
        .call(
            "inquiry",
            "X-PAY-1",
            &with(identity(two), json!({"inquiryRequestId": "PR-2"})),
        )
        .await;
    assert_eq!(code(&a), (200, "2002400"), "{:?}", a.1);
    let a = bank
        .call("payment", "X-PAY-1", &pay_body(two, "PR-2", "150000.00"))
        .await;
    assert_eq!(code(&a), (409, "4092500"), "{:?}", a.1);
    let a = bank
        .call(
            "payment",
            "X-PAY-3",
            &pay_body(one, "PR-OTHER", "150000.00"),
        )
        .await;
    assert_eq!(code(&a), (404, "4042514"), "paid bill: {:?}", a.1);
    let a = bank
        .call("payment", "X-PAY-4", &pay_body(two, "PR-1", "150000.00"))
        .await;
    assert_eq!(
        code(&a),
        (404, "4042518"),
        "one reference, another VA: {:?}",
        a.1
    );

    // 26: the payment's status; one never made.
    let a = bank
        .call(
            "status",
            "X-ST-1",
            &with(identity(one), json!({"paymentRequestId": "PR-1"})),
        )
        .await;
    assert_eq!(code(&a), (200, "2002600"), "{:?}", a.1);
    assert_eq!(a.1["virtualAccountData"]["paymentFlagStatus"], "00");
    let a = bank
        .call(
            "status",
            "X-ST-2",
            &with(identity(two), json!({"paymentRequestId": "PR-NONE"})),
        )
        .await;
    assert_eq!(code(&a), (404, "4042601"), "{:?}", a.1);

    // Cross-door: the SNAP payment repeated over IPG HTTP is the same payment.
    let (status, a) = post_channel(
        &base,
        "payment",
        &payment(&va(PREFIX, one), "PR-1", 150_000),
    )
    .await;
    assert_eq!((status, a["rc"].as_str()), (200, Some("SUCCESS")), "{a}");
    assert_eq!(a["data"]["payment"]["id"], payment_id);

    // Copies of one payment at once: 3 over SNAP (two X-EXTERNAL-IDs), 2 over IPG HTTP,
    // 2 over Kafka: paid once, every answer the first answer in its own dialect.
    let body3 = pay_body(three, "PR-3", "150000.00");
    let ipg3 = payment(&va(PREFIX, three), "PR-3", 150_000);
    for k in 0..2 {
        stack
            .send("payment", &format!("kafka-3-{k}"), ipg3.clone())
            .await;
    }
    let (s1, s2, s3, h1, h2) = tokio::join!(
        bank.call("payment", "X-3-A", &body3),
        bank.call("payment", "X-3-A", &body3),
        bank.call("payment", "X-3-B", &body3),
        post_channel(&base, "payment", &ipg3),
        post_channel(&base, "payment", &ipg3),
    );
    let mut ids = std::collections::BTreeSet::new();
    for s in [&s1, &s2, &s3] {
        assert_eq!(code(s), (200, "2002500"), "{:?}", s.1);
        ids.insert(s.1["virtualAccountData"]["additionalInfo"]["paymentId"].to_string());
    }
    for (status, h) in [&h1, &h2] {
        assert_eq!((*status, h["rc"].as_str()), (200, Some("SUCCESS")), "{h}");
        ids.insert(h["data"]["payment"]["id"].to_string());
    }
    for k in 0..2 {
        let a = stack.answer(&format!("kafka-3-{k}")).await;
        assert_eq!(a["rc"], "SUCCESS", "{a}");
        ids.insert(a["data"]["payment"]["id"].to_string());
    }
    assert_eq!(ids.len(), 1, "one payment: {ids:?}");

    // Bill two paid over Kafka, its status asked over SNAP.
    stack
        .send(
            "payment",
            "kafka-2",
            payment(&va(PREFIX, two), "PR-K2", 150_000),
        )
        .await;
    assert_eq!(stack.answer("kafka-2").await["rc"], "SUCCESS");
    let a = bank
        .call(
            "status",
            "X-ST-3",
            &with(identity(two), json!({"paymentRequestId": "PR-K2"})),
        )
        .await;
    assert_eq!(code(&a), (200, "2002600"), "{:?}", a.1);

    // Partial: what remains, then less after a payment; open: any amount.
    let inq = |n: &'static str, r: &'static str| with(identity(n), json!({"inquiryRequestId": r}));
    let a = bank.call("inquiry", "X-PI-1", &inq(part, "PI-1")).await;
    assert_eq!(
        a.1["virtualAccountData"]["virtualAccountTrxType"], "I",
        "{:?}",
        a.1
    );
    let a = bank
        .call("payment", "X-PP-1", &pay_body(part, "PP-P1", "40000.00"))
        .await;
    assert_eq!(code(&a), (200, "2002500"), "{:?}", a.1);
    let a = bank.call("inquiry", "X-PI-2", &inq(part, "PI-2")).await;
    assert_eq!(
        a.1["virtualAccountData"]["totalAmount"],
        json!({"value": "60000.00", "currency": "IDR"}),
        "{:?}",
        a.1
    );
    let a = bank.call("inquiry", "X-OI-1", &inq(open, "OI-1")).await;
    assert_eq!(
        a.1["virtualAccountData"]["virtualAccountTrxType"], "O",
        "{:?}",
        a.1
    );
    let a = bank
        .call("payment", "X-OP-1", &pay_body(open, "PP-O1", "25000.00"))
        .await;
    assert_eq!(code(&a), (200, "2002500"), "{:?}", a.1);
    // Expired: refused with its own code, nothing moved.
    let wait = (expiry - chrono::Utc::now()).num_milliseconds() + 1_100;
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
    }
    let a = bank
        .call("payment", "X-EXP-1", &pay_body(soon, "PP-X1", "150000.00"))
        .await;
    assert_eq!(code(&a), (404, "4042519"), "{:?}", a.1);

    let (ledger, balance) = stack.ledger().await;
    assert_eq!(
        (ledger.len(), balance),
        (5, 515_000),
        "five payments, once each"
    );
    daemon.stop().await;
    stack.assert_verify_agrees().await;
}

const INST_CLIENT: &str = "SCH01-SNAP";
const INST_SECRET: &str = "school-snap-secret";

/// An institution as a SNAP partner: it issues a VA over SNAP (27), a bank pays it over
/// IPG's Kafka door, the institution reads it (30) and the day's report (35), revokes
/// another (31); a retried create is answered as the first, a conflicting one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_institution_issues_vas_over_snap_that_banks_pay_over_ipg() {
    let (private, public) = key_pair();
    let (bank_private, bank_public) = key_pair();
    let api = free_port();
    let mut stack = Stack::start_with(&format!("[api]\nlisten = \"127.0.0.1:{api}\"\n")).await;
    let partner = |id: &str, secret: &str, public: &PathBuf| {
        Some(ipg_switch::routing::config::SnapPartnerSettings {
            client_id: id.into(),
            services: None,
            public_key_file: public.display().to_string(),
            client_secret_env: "UNUSED_IN_TESTS".into(),
            resolved_secret: Some(secret.into()),
            resolved_public_key: Some(std::fs::read_to_string(public).unwrap()),
        })
    };
    let inst = (stack.settings.institutions.iter_mut())
        .find(|i| i.code == INST)
        .unwrap();
    inst.snap = partner(INST_CLIENT, INST_SECRET, &public);
    // The school may not update statuses (29): `services` leaves it out.
    if let Some(p) = inst.snap.as_mut() {
        p.services = Some(vec![27, 28, 30, 31, 35]);
    }
    let ch = (stack.settings.channels.iter_mut())
        .find(|c| c.code == CHANNEL)
        .unwrap();
    ch.snap = partner(CLIENT_ID, SECRET, &bank_public);
    let base = format!("http://127.0.0.1:{api}");
    let daemon = stack.daemon();
    http_up(&base).await;

    let t = Bank::token_with(&base, &private, INST_CLIENT).await;
    assert_eq!(code(&t), (200, "2007300"), "{:?}", t.1);
    let school = Bank {
        client_id: INST_CLIENT.into(),
        secret: INST_SECRET.into(),
        base: base.clone(),
        http: reqwest::Client::new(),
        token: t.1["accessToken"].as_str().unwrap().to_owned(),
    };
    // The school signs with its own secret.
    let call = |service: &'static str, method: reqwest::Method, xid: &'static str, body: Value| {
        let (school, base) = (&school, base.clone());
        async move {
            let raw = serde_json::to_string(&body).unwrap();
            let path = format!("/snap/v1.0/transfer-va/{service}");
            let ts = now();
            let s = string_to_sign(method.as_str(), &path, &school.token, raw.as_bytes(), &ts);
            let r = school
                .http
                .request(method, format!("{base}{path}"))
                .header("Content-Type", "application/json")
                .header("Authorization", format!("Bearer {}", school.token))
                .header("X-TIMESTAMP", &ts)
                .header("X-SIGNATURE", Hmac512::new(INST_SECRET.as_bytes()).sign(&s))
                .header("X-PARTNER-ID", INST_CLIENT)
                .header("X-EXTERNAL-ID", xid)
                .header("CHANNEL-ID", "95231")
                .body(raw)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (n1, n2) = ("7400000001", "7400000002");
    let create = |n: &str, trx: &str, kind: &str| {
        with(
            identity(n),
            json!({"virtualAccountName": "Siti", "trxId": trx, "virtualAccountTrxType": kind,
                "totalAmount": {"value": "250000.00", "currency": "IDR"},
                "billDetails": [{"billName": "SPP Februari"}],
                "expiredDate": "2099-12-31T23:59:59+07:00"}),
        )
    };
    let post = reqwest::Method::POST;
    let a = call(
        "create-va",
        post.clone(),
        "X-CV-1",
        create(n1, "INV-1", "C"),
    )
    .await;
    assert_eq!(code(&a), (200, "2002700"), "{:?}", a.1);
    let d = &a.1["virtualAccountData"];
    assert_eq!(d["trxId"], "INV-1");
    assert_eq!(
        d["totalAmount"],
        json!({"value": "250000.00", "currency": "IDR"})
    );
    // A retry (another X-EXTERNAL-ID): the same VA record; another trxId: a conflict.
    let again = call(
        "create-va",
        post.clone(),
        "X-CV-2",
        create(n1, "INV-1", "C"),
    )
    .await;
    assert_eq!(code(&again), (200, "2002700"), "{:?}", again.1);
    assert_eq!(
        again.1["virtualAccountData"]["additionalInfo"]["billHash"],
        d["additionalInfo"]["billHash"]
    );
    let a = call(
        "create-va",
        post.clone(),
        "X-CV-3",
        create(n1, "INV-OTHER", "C"),
    )
    .await;
    assert_eq!(code(&a), (409, "4092700"), "{:?}", a.1);
    let a = call(
        "create-va",
        post.clone(),
        "X-CV-4",
        create(n2, "INV-2", "V"),
    )
    .await;
    assert_eq!(code(&a), (400, "4002701"), "{:?}", a.1);
    let a = call(
        "create-va",
        post.clone(),
        "X-CV-5",
        create(n2, "INV-2", "C"),
    )
    .await;
    assert_eq!(code(&a), (200, "2002700"), "{:?}", a.1);

    // A bank's token may not issue VAs.
    let t = Bank::token_with(&base, &bank_private, CLIENT_ID).await;
    let bank = Bank {
        client_id: CLIENT_ID.into(),
        secret: SECRET.into(),
        base: base.clone(),
        http: reqwest::Client::new(),
        token: t.1["accessToken"].as_str().unwrap().to_owned(),
    };
    let raw = serde_json::to_string(&create(n2, "INV-X", "C")).unwrap();
    let ts = now();
    let s = string_to_sign(
        "POST",
        "/snap/v1.0/transfer-va/create-va",
        &bank.token,
        raw.as_bytes(),
        &ts,
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/snap/v1.0/transfer-va/create-va"))
        .header("Authorization", format!("Bearer {}", bank.token))
        .header("X-TIMESTAMP", &ts)
        .header("X-SIGNATURE", Hmac512::new(SECRET.as_bytes()).sign(&s))
        .header("X-PARTNER-ID", CLIENT_ID)
        .header("X-EXTERNAL-ID", "X-BANK-CV")
        .header("CHANNEL-ID", "95231")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Paid over IPG's Kafka door, as a bank that speaks IPG would.
    stack
        .send(
            "payment",
            "kafka-snap-va",
            payment(&va(PREFIX, n1), "PR-SNAPVA", 250_000),
        )
        .await;
    assert_eq!(stack.answer("kafka-snap-va").await["rc"], "SUCCESS");
    let a = call(
        "inquiry-va",
        post.clone(),
        "X-IV-1",
        with(identity(n1), json!({"trxId": "INV-1"})),
    )
    .await;
    assert_eq!(code(&a), (200, "2003000"), "{:?}", a.1);
    assert_eq!(
        a.1["virtualAccountData"]["additionalInfo"]["status"],
        "paid"
    );
    let a = call(
        "inquiry-va",
        post.clone(),
        "X-IV-2",
        with(identity(n1), json!({"trxId": "INV-9"})),
    )
    .await;
    assert_eq!(code(&a), (404, "4043012"), "{:?}", a.1);

    // A create retried after its bill was paid: the bill issued the first time (paid),
    // never a second bill on the VA.
    let a = call(
        "create-va",
        post.clone(),
        "X-CV-6",
        create(n1, "INV-1", "C"),
    )
    .await;
    assert_eq!(code(&a), (200, "2002700"), "{:?}", a.1);
    assert_eq!(
        a.1["virtualAccountData"]["additionalInfo"]["billHash"],
        d["additionalInfo"]["billHash"]
    );
    assert_eq!(
        a.1["virtualAccountData"]["additionalInfo"]["status"],
        "paid"
    );

    // 31: the second VA revoked; a bank's inquiry then finds no payable bill.
    let a = call(
        "delete-va",
        reqwest::Method::DELETE,
        "X-DV-1",
        with(identity(n2), json!({"trxId": "INV-2"})),
    )
    .await;
    assert_eq!(code(&a), (200, "2003100"), "{:?}", a.1);
    let a = bank
        .call(
            "inquiry",
            "X-INQ-R",
            &with(identity(n2), json!({"inquiryRequestId": "PR-R"})),
        )
        .await;
    assert_eq!(code(&a), (404, "4042412"), "{:?}", a.1);

    // SNAP's M, L and N bills, issued over SNAP and paid by the bank over SNAP.
    for (n, kind, trx) in [
        ("7400000011", "M", "INV-M"),
        ("7400000012", "L", "INV-L"),
        ("7400000013", "N", "INV-N"),
    ] {
        let a = call(
            "create-va",
            post.clone(),
            Box::leak(format!("X-CV-{kind}").into_boxed_str()),
            create(n, trx, kind),
        )
        .await;
        assert_eq!(code(&a), (200, "2002700"), "{kind}: {:?}", a.1);
        assert_eq!(a.1["virtualAccountData"]["virtualAccountTrxType"], kind);
    }
    let pay = |n: &'static str, r: &'static str, v: &'static str| {
        let bank = &bank;
        async move {
            bank.call(
                "payment",
                Box::leak(format!("X-{r}").into_boxed_str()),
                &pay_body(n, r, v),
            )
            .await
        }
    };
    let bounded = [
        (
            pay("7400000011", "PM-1", "249999.00").await,
            (404, "4042513"),
        ),
        (
            pay("7400000011", "PM-2", "300000.00").await,
            (200, "2002500"),
        ),
        (
            pay("7400000011", "PM-3", "300000.00").await,
            (404, "4042514"),
        ),
        (
            pay("7400000012", "PL-1", "250001.00").await,
            (404, "4042513"),
        ),
        (
            pay("7400000012", "PL-2", "100000.00").await,
            (200, "2002500"),
        ),
        (
            pay("7400000012", "PL-3", "100000.00").await,
            (404, "4042514"),
        ),
        (pay("7400000013", "PN-1", "1000.00").await, (404, "4042513")),
        (
            pay("7400000013", "PN-2", "250000.00").await,
            (200, "2002500"),
        ),
        (
            pay("7400000013", "PN-3", "400000.00").await,
            (200, "2002500"),
        ),
    ];
    for (got, want) in &bounded {
        assert_eq!(code(got), *want, "{:?}", got.1);
    }

    // 28 and 29 are not offered.
    let a = call(
        "update-va",
        reqwest::Method::PUT,
        "X-UV-1",
        create(n1, "INV-1", "C"),
    )
    .await;
    assert_eq!(code(&a), (405, "4052800"), "{:?}", a.1);
    let a = call(
        "update-status",
        reqwest::Method::PUT,
        "X-US-1",
        with(identity(n1), json!({"trxId": "INV-1", "paidStatus": "Y"})),
    )
    .await;
    assert_eq!(code(&a), (403, "4032901"), "not in its services: {:?}", a.1);

    // 35: today's payments on the prefix, from the journal.
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string();
    let a = call(
        "report",
        post.clone(),
        "X-RP-1",
        json!({"partnerServiceId": PSID, "startDate": today}),
    )
    .await;
    assert_eq!(code(&a), (200, "2003500"), "{:?}", a.1);
    let rows = a.1["virtualAccountdata"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    let row = rows
        .iter()
        .find(|r| r["paymentRequestId"] == "PR-SNAPVA")
        .expect("the Kafka payment of the SNAP VA is in the report");
    assert_eq!(
        row["paidAmount"],
        json!({"value": "250000.00", "currency": "IDR"})
    );
    assert_eq!(row["paymentFlagStatus"], "00");

    daemon.stop().await;
    stack.assert_verify_agrees().await;
}

/// A SNAP bank paying a passive institution's VA (docs/snap.md): forwarded once over IPG's
/// Passive Client API, a repeat answered as the first without asking again, and a payment
/// the institution leaves in doubt answered 2022500 (flag 02), resolved by the switch's
/// resolver as today, then answered paid by service 26.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snap_bank_pays_a_passive_institution_forwarded_once() {
    use common::institution::{Institution, Mode};
    let inst = Institution::start("pas-key").await;
    let (ok, doubt) = ("7500000001", "7500000002");
    inst.add_bill(ok, 150_000);
    inst.add_bill(doubt, 90_000);
    let (private, public) = key_pair();
    let api = free_port();
    let mut stack = Stack::start_with(&format!(
        "[api]\nlisten = \"127.0.0.1:{api}\"\n[passive]\ntimeout_ms = 700\nconnect_timeout_ms = 300\n\
         resolve_poll_ms = 50\nresolve_window_ms = 60000\ncheck_backoff_ms = [150]\n\
         reversal_backoff_ms = [150]\n"
    ))
    .await;
    (stack.settings.institutions.iter_mut())
        .find(|i| i.code == "PAS01")
        .unwrap()
        .base_url = Some(inst.base_url());
    (stack.settings.channels.iter_mut())
        .find(|c| c.code == CHANNEL)
        .unwrap()
        .snap = Some(ipg_switch::routing::config::SnapPartnerSettings {
        client_id: CLIENT_ID.into(),
        services: None,
        public_key_file: public.display().to_string(),
        client_secret_env: "UNUSED_IN_TESTS".into(),
        resolved_secret: Some(SECRET.into()),
        resolved_public_key: Some(std::fs::read_to_string(&public).unwrap()),
    });
    let base = format!("http://127.0.0.1:{api}");
    let daemon = stack.daemon();
    http_up(&base).await;
    let t = Bank::token_with(&base, &private, CLIENT_ID).await;
    let bank = Bank {
        client_id: CLIENT_ID.into(),
        secret: SECRET.into(),
        base: base.clone(),
        http: reqwest::Client::new(),
        token: t.1["accessToken"].as_str().unwrap().to_owned(),
    };
    let psid = format!("  {PASSIVE_PREFIX}");
    let id = |n: &str| {
        json!({"partnerServiceId": psid, "customerNo": n,
            "virtualAccountNo": format!("{psid}{n}")})
    };
    let pay = |n: &str, r: &str, v: &str| {
        with(
            id(n),
            json!({"paymentRequestId": r, "paidAmount": {"value": v, "currency": "IDR"}}),
        )
    };

    let a = bank
        .call(
            "inquiry",
            "XP-INQ",
            &with(id(ok), json!({"inquiryRequestId": "PP-1"})),
        )
        .await;
    assert_eq!(code(&a), (200, "2002400"), "{:?}", a.1);
    assert_eq!(
        a.1["virtualAccountData"]["totalAmount"],
        json!({"value": "150000.00", "currency": "IDR"}),
        "{:?}",
        a.1
    );
    let first = bank
        .call("payment", "XP-1", &pay(ok, "PP-1", "150000.00"))
        .await;
    assert_eq!(code(&first), (200, "2002500"), "{:?}", first.1);
    let again = bank
        .call(
            "payment",
            "XP-2",
            &with(pay(ok, "PP-1", "150000.00"), json!({"flagAdvise": "Y"})),
        )
        .await;
    assert_eq!(code(&again), (200, "2002500"), "{:?}", again.1);
    assert_eq!(inst.hits("payment").len(), 1, "forwarded once");

    // Left in doubt by the institution (it applied the payment): 2022500, then resolved.
    inst.set_mode("payment", Mode::SuspectApplied);
    let a = bank
        .call("payment", "XP-3", &pay(doubt, "PP-2", "90000.00"))
        .await;
    assert_eq!(code(&a), (202, "2022500"), "{:?}", a.1);
    assert_eq!(a.1["virtualAccountData"]["paymentFlagStatus"], "02");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut k = 0;
    loop {
        k += 1;
        let xid: &'static str = Box::leak(format!("XP-ST-{k}").into_boxed_str());
        let s = bank
            .call(
                "status",
                xid,
                &with(id(doubt), json!({"paymentRequestId": "PP-2"})),
            )
            .await;
        if code(&s) == (200, "2002600") && s.1["virtualAccountData"]["paymentFlagStatus"] == "00" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never resolved: {:?}",
            s.1
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(inst.payment_state("PP-2").as_deref(), Some("paid"));
    daemon.stop().await;
}
