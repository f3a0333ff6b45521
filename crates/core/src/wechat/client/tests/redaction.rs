//! Secrets (access token, AppSecret, login code, session key) never reach the logs or the text of
//! an error, whatever way a call fails, even with every crate logging at TRACE.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;

const SECRET_TOKEN: &str = "TOK3N-never-logged";
const SECRET_APP: &str = "S3CRET-never-logged";
const SECRET_CODE: &str = "C0DE-never-logged";
const SECRET_SESSION_KEY: &str = "S3SSIONKEY-never-logged";
const ALL: [&str; 4] = [SECRET_TOKEN, SECRET_APP, SECRET_CODE, SECRET_SESSION_KEY];

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn assert_clean(what: &str, text: &str) {
    for secret in ALL {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

/// Runs every failing call; returns the errors as their `Display` and `Debug` text.
async fn fail_in_every_way() -> Vec<String> {
    let appid = appid();
    let secret = SecretString::from(SECRET_APP);
    let token = AccessToken::new(SECRET_TOKEN);
    let to = openid("oOA_user-1");
    let template = TemplateId::parse("tmpl-1").unwrap();
    let data = data(&[("thing1", "x")]);
    let msg = TemplateMessage {
        touser: &to,
        template_id: &template,
        data: &data,
        url: None,
        miniprogram: None,
        client_msg_id: Some("job-1"),
    };
    let mut errors: Vec<WechatError> = Vec::new();

    // Every endpoint against a closed port, then against a server that is too slow.
    let closed = client_with_timeout(
        &format!("http://127.0.0.1:{}", closed_port()),
        Duration::from_secs(2),
    );
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let slow = client_with_timeout(&server.uri(), Duration::from_millis(150));
    for client in [&closed, &slow] {
        errors.push(client.classic_token(&appid, &secret).await.unwrap_err());
        errors.push(
            client
                .stable_token(&appid, &secret, false)
                .await
                .unwrap_err(),
        );
        errors.push(
            client
                .jscode2session(&appid, &secret, SECRET_CODE)
                .await
                .unwrap_err(),
        );
        errors.push(client.send_template(&token, &msg).await.unwrap_err());
        errors.push(client.user_get(&token, None).await.unwrap_err());
    }

    // HTTP 500 everywhere.
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .mount(&server)
        .await;
    let failing = client_for(&server);
    errors.push(failing.classic_token(&appid, &secret).await.unwrap_err());
    errors.push(
        failing
            .jscode2session(&appid, &secret, SECRET_CODE)
            .await
            .unwrap_err(),
    );
    errors.push(failing.send_template(&token, &msg).await.unwrap_err());

    // WeChat's own refusals: 40001 on a send, a bad secret on the login and on the token.
    let server = MockServer::start().await;
    Mock::given(path("/cgi-bin/message/template/send"))
        .respond_with(json_body(
            r#"{"errcode":40001,"errmsg":"invalid credential, access_token is invalid or not latest rid: 6a-1b"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path("/sns/jscode2session"))
        .respond_with(json_body(
            r#"{"errcode":40125,"errmsg":"invalid appsecret rid: 6a-2b"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path("/cgi-bin/token"))
        .respond_with(json_body(
            r#"{"errcode":40125,"errmsg":"invalid appsecret rid: 6a-3b"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path("/cgi-bin/user/get"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"<html>".to_vec(), "text/html"))
        .mount(&server)
        .await;
    let refusing = client_for(&server);
    errors.push(refusing.send_template(&token, &msg).await.unwrap_err());
    errors.push(
        refusing
            .jscode2session(&appid, &secret, SECRET_CODE)
            .await
            .unwrap_err(),
    );
    errors.push(refusing.classic_token(&appid, &secret).await.unwrap_err());
    errors.push(refusing.user_get(&token, None).await.unwrap_err());

    // A successful login: the session key must not be logged either.
    let server = MockServer::start().await;
    Mock::given(path("/sns/jscode2session"))
        .respond_with(json_body(&format!(
            r#"{{"openid":"oMP","session_key":"{SECRET_SESSION_KEY}"}}"#
        )))
        .mount(&server)
        .await;
    let session = client_for(&server)
        .jscode2session(&appid, &secret, SECRET_CODE)
        .await
        .unwrap();
    assert_clean("the session's Debug", &format!("{session:?}"));

    assert_eq!(errors.len(), 17);
    errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .collect()
}

#[tokio::test]
async fn secrets_never_appear_in_trace_logs_or_error_text() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The global subscriber, not a scoped one: a scoped one misses events whose callsites other
    // test threads registered concurrently (tracing's interest cache), which made this flaky.
    // `try_init` also forwards `log` records (reqwest, hyper-util) into tracing. Other tests'
    // events land in the buffer too, which only widens what is checked.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("no other test installs a global subscriber");

    let errors = fail_in_every_way().await;

    for text in &errors {
        assert_clean("an error", text);
    }
    let logs = captured.text();
    // The capture works: our own event and the HTTP stack's records are in it.
    assert!(logs.contains("WeChat error"), "{logs}");
    assert!(logs.contains(r#"rid="6a-1b""#), "{logs}");
    assert!(
        logs.contains("reqwest"),
        "the HTTP stack's logs are captured:\n{logs}"
    );
    assert_clean("the TRACE logs", &logs);
}
