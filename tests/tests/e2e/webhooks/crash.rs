use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::receiver::Receiver;
use crate::support::{Harness, Tenant};
use palmlink_tests::{operator, ServerProcess, UNTHROTTLED};

/// `palmlink serve` allowing loopback webhooks, with fast retries and no rate limits
/// in the way of the burst.
fn start_server(bin: &Path, data_dir: &Path) -> ServerProcess {
    ServerProcess::start(
        bin,
        data_dir,
        &["--allow-http-webhooks"],
        &[
            [
                ("PALMLINK_WEBHOOK_RETRY_SCHEDULE", "200ms,500ms,1s,2s"),
                ("PALMLINK_WEBHOOK_TIMEOUT", "5s"),
            ]
            .as_slice(),
            UNTHROTTLED,
        ]
        .concat(),
    )
}

#[tokio::test]
async fn no_event_is_lost_when_the_server_is_killed_during_a_burst() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(&bin, dir.path());
    let tenant = operator(&bin, dir.path(), &["tenant", "create", "--name", "burst"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let client = operator(
        &bin,
        dir.path(),
        &["client", "create", "--tenant", &tenant_id, "--name", "app"],
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();

    let mut h = Harness::start().await;
    h.base = server.base.clone();
    let token = h.token(&client_id, &secret).await;
    let t = Tenant {
        id: tenant_id,
        client_id,
        secret,
        token,
    };

    // A slow receiver: deliveries pile up while events are written.
    let rx = Receiver::start(vec![]).await;
    rx.set_delay(Duration::from_millis(300));
    let r = h
        .post(
            "/v1/webhooks",
            &t.token,
            json!({"name": "burst", "events": ["device.paired"], "endpoint": rx.url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // The burst: every acknowledged pairing is an event that must arrive.
    let mut acknowledged = HashSet::new();
    for i in 0..30 {
        let s = h.scanner(&t, &format!("hw-burst-{i}")).await;
        acknowledged.insert(s.device_id);
    }
    let before_kill = rx.seen().len();
    server.kill();
    assert!(
        before_kill < acknowledged.len(),
        "the kill must come while deliveries are outstanding"
    );

    rx.set_delay(Duration::from_millis(10));
    let server = start_server(&bin, dir.path());
    h.base = server.base.clone();
    // Deliveries pending at start-up are attempted within 30 seconds.
    let seen = rx
        .wait_until(30, |seen| {
            let got: HashSet<String> = seen
                .iter()
                .filter_map(|r| r.json()["data"]["device_id"].as_str().map(str::to_owned))
                .collect();
            acknowledged.iter().all(|d| got.contains(d))
        })
        .await;
    let distinct: HashSet<String> = seen.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "one event per pairing, each delivered at least once"
    );

    let log = h
        .call(Method::GET, "/v1/webhooks", Some(&t.token), None)
        .await;
    let webhook = log.body["data"][0]["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut succeeded = 0;
    for _ in 0..100 {
        let page = h
            .get(
                &format!("/v1/webhooks/{webhook}/deliveries?limit=100"),
                &t.token,
            )
            .await;
        succeeded = page.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "succeeded")
            .count();
        if succeeded == acknowledged.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(succeeded, acknowledged.len());
    drop(server);
    if let Some(inner) = h.server.take() {
        inner.stop().await.expect("stop");
    }
}
