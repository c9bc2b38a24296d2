//! `handover serve` driven over HTTP only: the built binary as a child process, the six
//! emulators behind it, a real HTTP client as the bot, and a callback endpoint that checks
//! every signature.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod serve_kit;

use std::collections::BTreeSet;
use std::time::Duration;

use handover_emulator::{AgentAction, FaultSettings};
use serde_json::{Value, json};
use serve_kit::*;

const PROVIDERS: [&str; 6] = ["8x8", "genesys", "liveagent", "miaw", "ringcentral", "salesforce"];

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_through_the_api_alone() {
    let port = free_port();
    let emulators = emulators(&PROVIDERS, port).await;
    let dir = temp_dir("all");
    let store = format!("sqlite://{}/store.db", dir.display());
    let service = Service::start(&dir, "a", &config("a", port, &store, &emulators, "")).await;
    let api = service.api();
    let mut kinds_seen = BTreeSet::new();
    for provider in PROVIDERS {
        let emulator = &emulators[provider];
        // The endpoint refuses the first POST: the service retries it.
        let callbacks = Callbacks::start(1).await;
        let id = api.create(handover(provider, Some(&callbacks))).await;
        let created = api.wait_state(&id, "queued").await;
        assert_eq!(created["provider"], provider);
        assert_eq!(created["status"], Value::Null);

        agent(emulator, AgentAction::Queued { position: Some(2), wait_secs: Some(60) });
        agent(emulator, AgentAction::Joined { agent: "Ann".into() });
        agent(emulator, AgentAction::Typing { agent: "Ann".into(), on: true });
        agent(emulator, AgentAction::Message { agent: "Ann".into(), text: "Hello".into() });
        let first = api.poll_until(&id, 0, |e| e["type"] == "agent_message").await;
        assert_eq!(first[0]["type"], "say", "{provider}: the accepted message comes first");
        assert_eq!(first.last().unwrap()["text"], "Hello", "{provider}");
        assert_eq!(api.get(&id).await["state"], "active", "{provider}: active after the first agent message");

        // The same input id twice: accepted twice, sent once.
        let sent = api.input(&id, json!({ "type": "message", "text": "Hi Ann", "id": "m-1" })).await;
        assert_eq!((sent.status, &sent.body["duplicate"]), (202, &json!(false)), "{sent:?}");
        let again = api.input(&id, json!({ "type": "message", "text": "Hi Ann", "id": "m-1" })).await;
        assert_eq!((again.status, &again.body["duplicate"]), (202, &json!(true)), "{again:?}");
        assert_eq!(api.input(&id, json!({ "type": "typing", "on": true })).await.status, 202);
        wait_for(&format!("{provider}: the agent gets the message"), || {
            customer_texts(emulator).contains(&"Hi Ann".to_owned())
        })
        .await;

        if provider == "miaw" {
            // The SSE stream to the contact center drops and comes back.
            emulator.hub().faults.apply(&FaultSettings { drop_streams: true, ..FaultSettings::default() });
            api.poll_until(&id, 0, |e| e["type"] == "connection" && e["state"] == "resumed").await;
        }
        agent(emulator, AgentAction::Left { agent: "Ann".into(), transfer: true });
        agent(emulator, AgentAction::Joined { agent: "Bob".into() });
        agent(emulator, AgentAction::Message { agent: "Bob".into(), text: "Still there?".into() });
        api.poll_until(&id, 0, |e| e["text"] == "Still there?").await;
        agent(emulator, AgentAction::Ended);

        // SSE from the start to its end after the status event.
        let frames = api.sse(&id, None).await;
        let events: Vec<Value> = frames.iter().map(|f| f.data.clone()).collect();
        assert_gap_free(&events);
        for frame in &frames {
            assert_eq!(frame.id, frame.data["seq"].as_u64().unwrap());
            assert_eq!(frame.event, frame.data["type"].as_str().unwrap());
            assert_eq!(frame.data["handover_id"], id.as_str());
        }
        let last = events.last().unwrap();
        assert_eq!((last["type"].as_str(), last["status"].as_str()), (Some("status"), Some("completed")), "{provider}");
        let texts: Vec<&str> =
            events.iter().filter(|e| e["type"] == "agent_message").map(|e| e["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["Hello", "Still there?"], "{provider}: each agent message once, in order");
        assert_eq!(
            customer_texts(emulator).iter().filter(|t| *t == "Hi Ann").count(),
            1,
            "{provider}: the repeated input reached the agent once"
        );

        // SSE resumed mid-way with Last-Event-ID, and after the end.
        let middle = frames[frames.len() / 2].id;
        let rest = api.sse(&id, Some(middle)).await;
        assert_eq!(rest, frames[frames.len() / 2 + 1..].to_vec(), "{provider}: resume after {middle}");
        assert!(api.sse(&id, Some(frames.last().unwrap().id)).await.is_empty(), "a resume after the end ends at once");

        // Long-poll reads the same log, in pages that say where they stopped.
        let (page, last_seq) = api.poll(&id, 0, 0).await;
        assert_eq!(page, events);
        assert_eq!(last_seq, events.len() as u64);
        let (none, same) = api.poll(&id, last_seq, 2_000).await;
        assert!(none.is_empty(), "an ended handover's long-poll answers at once");
        assert_eq!(same, last_seq);

        // The callback got the same events, in order, signed; the refused first one again.
        let called = callbacks.until_status().await;
        assert_eq!(called, events, "{provider}: callbacks in seq order, each once after its 2xx");
        assert_eq!(*callbacks.bad_signatures.lock().unwrap(), 0);

        let ended = api.get(&id).await;
        assert_eq!(ended["state"], "ended");
        assert_eq!(ended["status"], json!({ "status": "completed" }));
        // The acknowledgement is recorded right after the endpoint's 2xx.
        let deadline = tokio::time::Instant::now() + GUARD;
        while api.get(&id).await["callback"]["acked_seq"] != events.len() {
            assert!(tokio::time::Instant::now() < deadline, "{provider}: {}", api.get(&id).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(api.get(&id).await["callback"]["failed"], false);
        let late = api.input(&id, json!({ "type": "message", "text": "late" })).await;
        assert_eq!((late.status, late.body["error"]["code"].as_str()), (409, Some("handover_ended")));
        assert_eq!(api.call("DELETE", &format!("/v1/handovers/{id}"), None, &[]).await.status, 409);
        kinds_seen.extend(kinds(&events));
    }
    for kind in [
        "say",
        "agent_message",
        "queue_update",
        "event",
        "agent_joined",
        "agent_left",
        "agent_typing",
        "connection",
        "status",
    ] {
        assert!(kinds_seen.contains(kind), "no provider produced `{kind}`: {kinds_seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_close_and_cancel() {
    let port = free_port();
    let emulators = emulators(&["liveagent", "miaw"], port).await;
    let dir = temp_dir("idem");
    let store = format!("sqlite://{}/store.db", dir.display());
    let service = Service::start(&dir, "a", &config("a", port, &store, &emulators, "")).await;
    let api = service.api();

    // A repeated Idempotency-Key: 200 with the first body, and nothing started again.
    let body = handover("miaw", None);
    let first = api.call("POST", "/v1/handovers", Some(body.clone()), &[("idempotency-key", "k-1")]).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.body["state"], "starting");
    let id = first.body["id"].as_str().unwrap().to_owned();
    assert_eq!(first.body["events_url"], format!("/v1/handovers/{id}/events"));
    api.wait_state(&id, "queued").await;
    let repeat = api.call("POST", "/v1/handovers", Some(body), &[("idempotency-key", "k-1")]).await;
    assert_eq!((repeat.status, &repeat.body), (200, &first.body));
    assert_eq!(emulators["miaw"].hub().all().len(), 1, "one conversation at the contact center");

    // DELETE closes at the contact center; the status is completed.
    let closing = api.call("DELETE", &format!("/v1/handovers/{id}"), None, &[]).await;
    assert_eq!(closing.status, 202, "{closing:?}");
    let events = api.poll_until(&id, 0, |e| e["type"] == "status").await;
    assert_eq!(events.last().unwrap()["status"], "completed");
    wait_for("closed at the contact center", || emulators["miaw"].hub().latest().unwrap().view().closed_by_customer)
        .await;

    // The cancel intent while queued cancels.
    let id = api.create(handover("liveagent", None)).await;
    api.wait_state(&id, "queued").await;
    assert_eq!(api.input(&id, json!({ "type": "intent", "name": "cancel_handover" })).await.status, 202);
    let events = api.poll_until(&id, 0, |e| e["type"] == "status").await;
    assert_eq!(events.last().unwrap()["status"], "cancelled");
    assert_eq!(api.get(&id).await["status"], json!({ "status": "cancelled" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_that_name_the_field() {
    let port = free_port();
    let emulators = emulators(&["miaw"], port).await;
    let dir = temp_dir("errors");
    let store = format!("sqlite://{}/store.db", dir.display());
    let service = Service::start(&dir, "a", &config("a", port, &store, &emulators, "max_body_bytes = 4096")).await;
    let api = service.api();
    let client = reqwest::Client::new();
    let id = api.create(handover("miaw", None)).await;

    let routes = [
        ("POST", "/v1/handovers".to_owned()),
        ("GET", "/v1/handovers".to_owned()),
        ("GET", format!("/v1/handovers/{id}")),
        ("DELETE", format!("/v1/handovers/{id}")),
        ("POST", format!("/v1/handovers/{id}/inputs")),
        ("GET", format!("/v1/handovers/{id}/events")),
    ];
    for (method, path) in &routes {
        for key in [None, Some("wrong-key-0123456789")] {
            let mut request = client.request(method.parse().unwrap(), format!("{}{path}", service.url));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    for path in ["/livez", "/readyz", "/openapi.json", "/metrics"] {
        let response = client.get(format!("{}{path}", service.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} needs no key");
    }

    let unknown = "no-such-handover";
    for (method, path) in [
        ("GET", format!("/v1/handovers/{unknown}")),
        ("DELETE", format!("/v1/handovers/{unknown}")),
        ("GET", format!("/v1/handovers/{unknown}/events")),
    ] {
        let answer = api.call(method, &path, None, &[]).await;
        assert_eq!((answer.status, answer.body["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let answer = api.input(unknown, json!({ "type": "connected" })).await;
    assert_eq!(answer.status, 404);

    let malformed = client
        .post(format!("{}/v1/handovers", service.url))
        .bearer_auth(API_KEY)
        .body("{\"provider\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<Value>().await.unwrap()["error"]["code"], "malformed_json");

    let cases = [
        (json!({ "provider": "miaw", "usr": {} }), "invalid_request", "usr"),
        (json!({ "provider": "zendesk" }), "unknown_provider", "zendesk"),
        (json!({ "provider": "miaw", "node": { "cancel": "x" } }), "invalid_request", "node.cancel"),
        (
            json!({ "provider": "miaw", "node": { "queue_update_interval": 0 } }),
            "invalid_request",
            "queue_update_interval",
        ),
        (
            json!({ "provider": "miaw", "transcript": [{ "from": "ghost", "text": "x" }] }),
            "invalid_request",
            "transcript[0].from",
        ),
        (
            json!({ "provider": "miaw", "callback": { "url": "http://example.com/h", "secret": CALLBACK_SECRET } }),
            "invalid_request",
            "callback.url",
        ),
        (
            json!({ "provider": "miaw", "callback": { "url": "https://example.com/h", "secret": "s3cret" } }),
            "invalid_request",
            "callback.secret",
        ),
        (json!({}), "invalid_request", "provider"),
    ];
    for (body, code, names) in cases {
        let answer = api.call("POST", "/v1/handovers", Some(body.clone()), &[]).await;
        assert_eq!(answer.status, 422, "{body}: {answer:?}");
        assert_eq!(answer.body["error"]["code"], code, "{body}");
        assert!(answer.body["error"]["message"].as_str().unwrap().contains(names), "{body}: {answer:?}");
    }
    let answer = api.input(&id, json!({ "type": "dance" })).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    let answer = api.input(&id, json!({ "type": "message", "txt": "x" })).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    let answer = api.call("GET", &format!("/v1/handovers/{id}/events?wait_ms=60001"), None, &[]).await;
    assert_eq!((answer.status, answer.body["error"]["message"].as_str().unwrap().contains("wait_ms")), (422, true));
    let answer = api.call("GET", &format!("/v1/handovers/{id}/events?after=x"), None, &[]).await;
    assert_eq!(answer.status, 422);

    let big = json!({ "type": "message", "text": "x".repeat(10_000) });
    let answer = api.input(&id, big).await;
    assert_eq!((answer.status, answer.body["error"]["code"].as_str()), (413, Some("body_too_large")));

    let metrics = client.get(format!("{}/metrics", service.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("handover_handovers_started_total"), "{metrics}");
    assert!(metrics.contains("handover_api_requests_total"), "{metrics}");
    assert!(!metrics.contains(API_KEY) && !service.log().contains(API_KEY), "the API key is never shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_checked_in_one() {
    let port = free_port();
    let emulators = emulators(&["miaw"], port).await;
    let dir = temp_dir("openapi");
    let store = format!("sqlite://{}/store.db", dir.display());
    let service = Service::start(&dir, "a", &config("a", port, &store, &emulators, "")).await;
    let served = reqwest::get(format!("{}/openapi.json", service.url)).await.unwrap().text().await.unwrap();
    let checked_in = include_str!("../../handover-server/openapi.json");
    assert!(served == checked_in, "handover-server/openapi.json is stale: run `cargo xtask openapi` and commit it");
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero_with_stdin_open() {
    let port = free_port();
    let emulators = emulators(&["liveagent"], port).await;
    let dir = temp_dir("drain");
    let store = format!("sqlite://{}/store.db", dir.display());
    let mut service = Service::start(&dir, "a", &config("a", port, &store, &emulators, "")).await;
    let api = service.api();
    let id = api.create(handover("liveagent", None)).await;
    api.wait_state(&id, "queued").await;
    service.signal("TERM");
    assert_eq!(service.exit_code(), 0, "{}", service.log());
    assert!(service.log().contains("drained"), "{}", service.log());
    assert!(!emulators["liveagent"].hub().latest().unwrap().view().ended, "a drain ends nothing at the contact center");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_prints_a_key_and_a_curl_that_work() {
    let port = free_port();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("[providers.");
            lines.push(line);
            if done {
                break;
            }
        }
        lines.join("\n")
    })
    .await
    .unwrap();
    let key = banner.lines().find_map(|l| l.strip_prefix("API key:")).unwrap().trim().to_owned();
    assert!(banner.contains(&format!("curl -s -X POST http://127.0.0.1:{port}/v1/handovers")), "{banner}");
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/handovers"))
        .bearer_auth(&key)
        .json(&json!({ "provider": "miaw" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_cross_both_ways_through_the_api_where_the_provider_carries_them() {
    use base64::Engine as _;
    use handover_emulator::EmulatedFile;
    use handover_emulator::model::sha256_hex;

    let port = free_port();
    let emulators = emulators(&PROVIDERS, port).await;
    let dir = temp_dir("files");
    let store = format!("sqlite://{}/store.db", dir.display());
    let service = Service::start(&dir, "a", &config("a", port, &store, &emulators, "")).await;
    let api = service.api();
    let registry = handover::Registry::default();
    let invoice = EmulatedFile::new("invoice.png", "image/png", (0..3000u32).map(|i| (i * 7 % 251) as u8).collect());
    let label = handover_emulator::agent::reply_file();
    for provider in PROVIDERS {
        let emulator = &emulators[provider];
        let table = toml::Value::try_from(emulator.provider_config()).unwrap();
        let caps = registry.build(provider, table).unwrap().info().capabilities;
        let id = api.create(handover(provider, None)).await;
        api.wait_state(&id, "queued").await;
        agent(emulator, AgentAction::Joined { agent: "Ann".into() });

        // Bytes where the provider uploads, a URL where it takes links.
        let mut input = json!({ "type": "attachment", "name": invoice.name, "media_type": invoice.media_type, "id": "f-1", "caption": "my invoice" });
        if caps.attachment_uploads() || !caps.attachments_to_agent() {
            input["data"] = json!(base64::engine::general_purpose::STANDARD.encode(&invoice.data));
        } else {
            input["url"] = json!(emulator.hub().host_file(invoice.clone()));
        }
        let sent = api.input(&id, input.clone()).await;
        assert_eq!(sent.status, 202, "{provider}: {sent:?}");
        assert_eq!(api.input(&id, input).await.body["duplicate"], true, "{provider}: a repeated file id");
        if caps.attachments_to_agent() {
            let conversation = emulator.hub().latest().unwrap();
            let deadline = tokio::time::Instant::now() + GUARD;
            while conversation.customer_files().is_empty() {
                assert!(tokio::time::Instant::now() < deadline, "{provider}: the agent never got the file");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(conversation.customer_files(), [invoice.received()], "{provider}: the file, intact, once");
        } else {
            let rejected = api.poll_until(&id, 0, |e| e["type"] == "input_rejected").await;
            let rejected = rejected.last().unwrap();
            assert_eq!(rejected["id"], "f-1", "{provider}");
            assert!(rejected["reason"].as_str().unwrap().contains("not supported"), "{provider}: {rejected}");
        }

        if caps.attachments_to_user() {
            agent(
                emulator,
                AgentAction::File { agent: "Ann".into(), file: label.clone(), caption: Some("Your label".into()) },
            );
            let events = api.poll_until(&id, 0, |e| e["type"] == "agent_message" && e["attachments"].is_array()).await;
            let message = events.last().unwrap();
            assert_eq!(message["text"], "Your label", "{provider}");
            let file = &message["attachments"][0];
            assert_eq!(
                (file["name"].as_str(), file["media_type"].as_str()),
                (Some(label.name.as_str()), Some(label.media_type.as_str())),
                "{provider}: {file}"
            );
            let body = reqwest::get(file["url"].as_str().unwrap()).await.unwrap().bytes().await.unwrap();
            assert_eq!(sha256_hex(&body), label.sha256(), "{provider}: the agent's file, fetched from its URL");
        }
        agent(emulator, AgentAction::Ended);
        api.wait_state(&id, "ended").await;
    }
    // A path is a local file of the service's host: refused.
    let id = api.create(handover("8x8", None)).await;
    let refused = api.input(&id, json!({ "type": "attachment", "name": "x", "path": "/etc/passwd" })).await;
    assert_eq!((refused.status, refused.body["error"]["code"].as_str()), (422, Some("invalid_request")), "{refused:?}");
    let both = api.input(&id, json!({ "type": "attachment", "name": "x", "data": "AAAA", "url": "https://x/y" })).await;
    assert_eq!(both.status, 422, "{both:?}");
    assert!(both.body["error"]["message"].as_str().unwrap().contains("exactly one of"), "{both:?}");
    let bad = api.input(&id, json!({ "type": "attachment", "name": "x", "data": "%%%" })).await;
    assert!(bad.body["error"]["message"].as_str().unwrap().contains("base64"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_is_off_by_default_and_lists_handovers_with_their_owner_when_on() {
    let port = free_port();
    let emulators = emulators(&["miaw"], port).await;
    let dir = temp_dir("ui");
    let store = format!("sqlite://{}/store.db", dir.display());
    let client = reqwest::Client::new();
    {
        let off = Service::start(&dir, "a", &config("a", port, &store, &emulators, "")).await;
        assert_eq!(client.get(format!("{}/ui", off.url)).send().await.unwrap().status(), 404, "off by default");
    }
    let service = Service::start(&dir, "b", &config("b", port, &store, &emulators, "ui = true")).await;
    let page = client.get(format!("{}/ui", service.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    let html = page.text().await.unwrap();
    for id in ["id=\"key\"", "id=\"handovers\"", "id=\"events\"", "/ui/ui.js", "/ui/ui.css"] {
        assert!(html.contains(id), "the page has {id}");
    }
    assert!(!html.contains("https://"), "nothing is loaded from elsewhere");
    for asset in ["ui.js", "ui.css"] {
        assert_eq!(client.get(format!("{}/ui/{asset}", service.url)).send().await.unwrap().status(), 200, "{asset}");
    }

    let api = service.api();
    let id = api.create(handover("miaw", None)).await;
    api.wait_state(&id, "queued").await;
    let listed = api.call("GET", "/v1/handovers?limit=10", None, &[]).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let first = &listed.body["handovers"][0];
    assert_eq!((first["id"].as_str(), first["provider"].as_str()), (Some(id.as_str()), Some("miaw")), "{listed:?}");
    assert_eq!(first["owner"], "b", "the instance holding the lease");
    assert!(first["epoch"].as_u64().unwrap() >= 1, "{first}");
    assert_eq!(api.get(&id).await["owner"], "b");
    let queued = api.call("GET", "/v1/handovers?state=queued", None, &[]).await;
    assert!(queued.body["handovers"].as_array().unwrap().iter().any(|h| h["id"] == id.as_str()), "{queued:?}");
    let ended = api.call("GET", "/v1/handovers?state=ended", None, &[]).await;
    assert!(!ended.body["handovers"].as_array().unwrap().iter().any(|h| h["id"] == id.as_str()), "{ended:?}");
    for bad in ["state=lost", "limit=0", "limit=1001", "colour=red"] {
        let answer = api.call("GET", &format!("/v1/handovers?{bad}"), None, &[]).await;
        assert_eq!(
            (answer.status, answer.body["error"]["code"].as_str()),
            (422, Some("invalid_request")),
            "{bad}: {answer:?}"
        );
    }
}
