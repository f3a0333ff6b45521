//! The dead-letter list with 1,000,000 letters: how long a filtered page takes through the admin
//! API (HTTP request to JSON answer). Ignored by default (it writes a million rows); run it with
//!
//! ```text
//! cargo nextest run --run-ignored only -E 'test(/dead_letter_list_with_a_million_letters/)' --no-capture
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wxnotify_api::admin::{self, AdminOptions, AdminState};
use wxnotify_core::config::Settings;

use crate::admin_support::ADMIN_TOKEN;
use crate::support::TestDb;

const LETTERS: i64 = 1_000_000;
const RUNS: usize = 21;
/// The md5 of letter 777,777's number: its errmsg alone contains it.
const RARE: &str = "f63f4fbc9f8c";

async fn fill(db: &TestDb) {
    sqlx::query(
        "INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, attempts, source, created_at, replayed_at)
         SELECT 'job-' || i,
                (ARRAY['default', 'shop', 'news'])[1 + i % 3],
                (ARRAY['retries_exhausted', 'recipient_rejected', 'payload_rejected', 'not_following', 'expired'])[1 + i % 5],
                (ARRAY[43101, 40037, 47003, -1, 45009, 40003, NULL, 43004])[1 + i % 8],
                'errmsg ' || i || ' rid: ' || md5(i::text),
                jsonb_build_object('id', 'job-' || i, 'app', 'default', 'to', jsonb_build_object('mp_openid', 'o' || (i % 50000)),
                                   'template_id', 'TPL_' || (i % 20), 'data', jsonb_build_object('thing1', jsonb_build_object('value', 'x')),
                                   'campaign_id', CASE WHEN i % 10 = 0 THEN '00000000-0000-0000-0000-00000000000' || (i % 7) END),
                1 + i % 5, 'worker',
                now() - make_interval(secs => (1000000 - i) * 2.6),
                CASE WHEN i % 4 = 0 THEN now() END
         FROM generate_series(1, $1) AS i",
    )
    .bind(LETTERS)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE dead_letters")
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "writes a million rows; run by hand (see the module doc)"]
async fn dead_letter_list_with_a_million_letters() {
    let db = TestDb::new().await;
    let started = Instant::now();
    fill(&db).await;
    println!(
        "inserted {LETTERS} dead letters in {:.1?}",
        started.elapsed()
    );
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", db.url()),
        ("WXNOTIFY_ADMIN_TOKEN", ADMIN_TOKEN.into()),
    ]);
    let settings = Settings::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let state = AdminState::new(db.pool.clone(), &settings, AdminOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, admin::router(state)).await.unwrap() });
    let http = reqwest::Client::new();

    // A page deep in the list: the keyset cursor of letter 500,000.
    let deep = "after=500000";
    let filters = [
        ("no filter, first page", String::new()),
        ("app", "app=shop".into()),
        ("reason", "reason=retries_exhausted".into()),
        ("errcode", "errcode=40037".into()),
        (
            "errcode whose letters were all replayed",
            "errcode=43101".into(),
        ),
        (
            "app + reason + errcode",
            "app=shop&reason=not_following&errcode=40037".into(),
        ),
        ("template", "template=TPL_7".into()),
        (
            "campaign",
            "campaign=00000000-0000-0000-0000-000000000003".into(),
        ),
        (
            "last 24 hours",
            format!(
                "since={}",
                (chrono::Utc::now() - chrono::Duration::hours(24))
                    .to_rfc3339()
                    .replace('+', "%2B")
            ),
        ),
        (
            "errcode, page at letter 500,000",
            format!("errcode=40037&{deep}"),
        ),
        ("text in job or message", "text=rid:%20ab".into()),
        ("rare text (one letter)", "text=rid:%20".to_owned() + RARE),
        (
            "text that matches nothing",
            "text=no-such-text-anywhere".into(),
        ),
    ];
    println!("| filter | median ms | max ms | letters on the page |");
    println!("|---|---:|---:|---:|");
    let mut medians = HashMap::new();
    for (name, query) in &filters {
        let url = format!("{base}/admin/api/dead-letters?limit=50&{query}");
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = http
                .get(&url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{name}");
            let body: serde_json::Value = r.json().await.unwrap();
            times.push(t.elapsed());
            n = body["letters"].as_array().unwrap().len();
        }
        times.sort();
        let median = times[RUNS / 2];
        println!(
            "| {name} | {:.1} | {:.1} | {n} |",
            ms(median),
            ms(*times.last().unwrap())
        );
        medians.insert(*name, median);
    }
    for (name, median) in &medians {
        assert!(
            *median < Duration::from_millis(100),
            "{name}: a filtered page took {median:?}"
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
