//! The long-poll loop over real HTTP: 204 re-polls, 200 returns, failures back off.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use handover_testkit::mock::strict_server;
use handover_transport::CancellationToken;
use handover_transport::http::{request_error, status_error};
use handover_transport::longpoll::{LongPoll, LongPollConfig, PollOutcome};
use handover_transport::reqwest::Client;
use handover_transport::retry::{RetryPolicy, Sleeper};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn polls_through_empty_and_failed_answers_to_data_one_at_a_time() {
    let server = strict_server().await;
    let answers = [
        ResponseTemplate::new(204),
        ResponseTemplate::new(502),
        ResponseTemplate::new(204),
        ResponseTemplate::new(200).set_body_string(r#"{"messages":[]}"#),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        Mock::given(method("GET"))
            .and(path("/Messages"))
            .respond_with(answer)
            .up_to_n_times(1)
            .with_priority(u8::try_from(i + 1).expect("few mocks"))
            .expect(1)
            .mount(&server)
            .await;
    }
    let delays = Arc::new(Mutex::new(Vec::new()));
    let recorded = delays.clone();
    let config = LongPollConfig::default().with_server_hold(Duration::from_secs(1)).with_backoff(
        RetryPolicy::default().with_jitter(false).with_sleeper(Sleeper::new(move |d| {
            recorded.lock().expect("delays lock").push(d);
            async {}
        })),
    );
    let mut poll = LongPoll::new(config, CancellationToken::new());
    let client = Client::new();
    let url = format!("{}/Messages", server.uri());
    let body = poll
        .next(|timeout| {
            let request = client.get(&url).timeout(timeout);
            async move {
                match request.send().await {
                    Ok(r) if r.status() == 204 => PollOutcome::Empty,
                    Ok(r) if r.status() == 200 => PollOutcome::Data(r.text().await.unwrap()),
                    Ok(r) => PollOutcome::Retry(status_error("test", "poll", r.status(), r.headers(), "")),
                    Err(e) => PollOutcome::Fail(request_error("test", "poll", e)),
                }
            }
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, r#"{"messages":[]}"#);
    assert_eq!(poll.polls(), 4);
    assert_eq!(delays.lock().unwrap().len(), 1, "only the 502 backed off");
}
