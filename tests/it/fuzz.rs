//! Property tests of every parser that takes outside bytes: the OA callback's XML and JSON
//! (plaintext and the safe-mode envelope), AES decryption, the job decoder and the id hint of a dead
//! letter. Each property runs a bounded number of cases (a few seconds in all): no input panics,
//! and every refusal is a clear error. (The NDJSON reader's properties are unit tests in
//! `crates/core/src/queue/ndjson.rs`, next to its private functions.)

use std::time::{Duration, Instant};

use proptest::prelude::*;
use wxnotify_core::domain::Job;
use wxnotify_core::domain::id_hint::{MAX_ID_HINT_CHARS, id_hint};
use wxnotify_core::wechat::crypto::AesKey;
use wxnotify_core::wechat::event::{parse_encrypted, parse_push};

const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const APPID: &str = "wx49f0ab532d5d035a";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    }
}

/// XML-ish text: tags of the push format, CDATA, entities and junk.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<xml>".to_owned()),
        Just("</xml>".to_owned()),
        Just("<FromUserName><![CDATA[oABC]]></FromUserName>".to_owned()),
        Just("<CreateTime>1714036504</CreateTime>".to_owned()),
        Just("<MsgType><![CDATA[event]]></MsgType>".to_owned()),
        Just("<Event><![CDATA[subscribe]]></Event>".to_owned()),
        Just(
            "<Event>TEMPLATESENDJOBFINISH</Event><MsgID>99</MsgID><Status>success</Status>"
                .to_owned()
        ),
        Just("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>".to_owned()),
        Just("&a;&amp;&#0;&#xFFFFFF;".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("<Encrypt>abc=</Encrypt>".to_owned()),
        "[<>/a-zA-Z0-9!\\[\\]&;#\"' =\\-]{0,40}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// JSON-ish text: the push's fields with odd values, nesting and junk.
fn pushjsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(",".to_owned()),
        Just("\"FromUserName\":\"oABC\"".to_owned()),
        Just("\"CreateTime\":1714036504".to_owned()),
        Just("\"CreateTime\":-1e400".to_owned()),
        Just("\"MsgType\":\"event\"".to_owned()),
        Just("\"Event\":\"TEMPLATESENDJOBFINISH\",\"MsgID\":18446744073709551616".to_owned()),
        Just("\"Status\":[[[[[[[[]]]]]]]]".to_owned()),
        Just("\"Encrypt\":\"abc=\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        "[{}\\[\\]:,\"a-zA-Z0-9 .eE+\\-]{0,40}",
        any::<String>(),
    ];
    // Starting with `{` sends the body to the JSON reader (anything else is refused before).
    proptest::collection::vec(piece, 0..24).prop_map(|p| format!("{{{}", p.concat()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_callback_parsers_never_panic(body in prop_oneof![xmlish(), pushjsonish()]) {
        let started = Instant::now();
        if let Err(e) = parse_push(&body) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = parse_encrypted(&body) {
            prop_assert!(!e.to_string().is_empty());
        }
        prop_assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn aes_decryption_of_any_text_is_a_message_or_an_error(text in "[A-Za-z0-9+/=]{0,400}|\\PC{0,200}") {
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        if let Err(e) = key.decrypt(&text, APPID) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn a_tampered_ciphertext_never_panics_and_never_yields_another_appid(
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
    ) {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        let sealed = key.encrypt(&msg, APPID);
        prop_assert_eq!(key.decrypt(&sealed, APPID).unwrap(), msg.clone());
        let mut bytes = engine.decode(&sealed).unwrap();
        for (at, bits) in flips {
            let i = at % bytes.len();
            bytes[i] ^= bits;
        }
        // Anything but an error or a message for this appid is a bug.
        let _ = key.decrypt(&engine.encode(&bytes), APPID);
        prop_assert!(key.decrypt(&sealed, "wxsomeoneelse0001").is_err());
    }

    #[test]
    fn the_job_decoder_answers_every_input_with_a_job_or_a_clear_error(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            jobish().prop_map(String::into_bytes),
        ]
    ) {
        match Job::from_json(&body) {
            Ok(job) => prop_assert!(job.check().is_ok()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        if let Some(id) = id_hint(&body) {
            prop_assert!(id.chars().count() <= MAX_ID_HINT_CHARS);
        }
    }
}

/// JSON-ish jobs: the job's fields with odd values.
fn jobish() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("\"x\"".to_owned()),
        Just("12345678901234567890123".to_owned()),
        Just("-0.0e400".to_owned()),
        Just("{\"unionid\":\"u\"}".to_owned()),
        Just("{\"k\":\"v\"}".to_owned()),
        Just("[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let field = prop_oneof![
        Just("id"),
        Just("app"),
        Just("to"),
        Just("template_id"),
        Just("data"),
        Just("url"),
        Just("miniprogram"),
        Just("not_after"),
        Just("campaign_id"),
        Just("extra"),
    ];
    proptest::collection::vec((field, value), 0..10).prop_map(|fields| {
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    })
}

#[test]
fn a_deeply_nested_or_huge_job_is_refused_quickly() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!("{{\"id\":\"j\",\"data\":\"{}\"}}", "a".repeat(50_000_000));
    for body in [deep.as_bytes(), huge.as_bytes()] {
        let started = Instant::now();
        assert!(Job::from_json(body).is_err());
        let _ = id_hint(body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(id_hint(huge.as_bytes()).as_deref(), Some("j"));
}
