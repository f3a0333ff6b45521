//! `wxnotify dlq` as an operator runs it: the admin API's filters on list, stats, replay and
//! purge, dry runs that list what they would touch, unknown ids as errors, and
//! `outcome_unknown` letters replayed only by an explicit choice.

use serde_json::{Value, json};

use crate::serve_support::wxnotify;
use crate::support::TestDb;

const CAMPAIGN: &str = "0193a0f0-0000-7000-8000-00000000c0de";

/// Three open letters: a retried-out job and an `outcome_unknown` one of template `TPL_A`, and
/// a campaign's job of `TPL_B` WeChat refused with 43004 ("user block" in its message).
async fn letters(db: &TestDb) -> [i64; 3] {
    let job = |id: &str, template: &str, campaign: Option<&str>| {
        let mut j = json!({"id": id, "app": "default", "to": {"oa_openid": "oOA1"},
            "template_id": template, "data": {"thing1": {"value": "x"}}});
        if let Some(c) = campaign {
            j["campaign_id"] = json!(c);
        }
        j
    };
    let mut ids = [0; 3];
    for (i, (job_id, reason, errcode, errmsg, job)) in [
        (
            "job-busy",
            "retries_exhausted",
            Some(-1i64),
            "system busy rid: 1",
            job("job-busy", "TPL_A", None),
        ),
        (
            "job-unknown",
            "outcome_unknown",
            None,
            "the answer was lost",
            job("job-unknown", "TPL_A", None),
        ),
        (
            "job-block",
            "recipient_rejected",
            Some(43004),
            "require subscribe: user block rid: 2",
            job("job-block", "TPL_B", Some(CAMPAIGN)),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        ids[i] = sqlx::query_scalar(
            "INSERT INTO dead_letters (job_id, app, reason, errcode, errmsg, job, attempts, source)
             VALUES ($1, 'default', $2, $3, $4, $5, 1, 'worker') RETURNING id",
        )
        .bind(job_id)
        .bind(reason)
        .bind(errcode)
        .bind(errmsg)
        .bind(job)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    }
    ids
}

/// Runs `wxnotify dlq ARGS`: exit code, stdout as JSON (`Null` when not JSON), stderr.
async fn dlq(db: &TestDb, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["dlq"];
    all.extend_from_slice(args);
    let out = wxnotify(db, &all, &[]).await;
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids_of(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn dlq_filters_stats_dry_runs_unknown_ids_and_outcome_unknown_by_choice() {
    let db = TestDb::new().await;
    let [busy, unknown, block] = letters(&db).await;

    // The admin API's filters.
    let (code, list, err) = dlq(&db, &["list", "--errcode", "43004", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids_of(&list), [block]);
    let (_, list, _) = dlq(&db, &["list", "--errcode", "-1", "--json"]).await;
    assert_eq!(ids_of(&list), [busy]);
    let (_, list, _) = dlq(&db, &["list", "--template", "TPL_A", "--json"]).await;
    assert_eq!(ids_of(&list), [unknown, busy], "newest first");
    let (_, list, _) = dlq(&db, &["list", "--campaign", CAMPAIGN, "--json"]).await;
    assert_eq!(ids_of(&list), [block]);
    let (_, list, _) = dlq(&db, &["list", "--text", "USER BLOCK", "--json"]).await;
    assert_eq!(ids_of(&list), [block]);
    let (_, list, _) = dlq(&db, &["list", "--since", "1h", "--json"]).await;
    assert_eq!(ids_of(&list).len(), 3);
    let (_, list, _) = dlq(&db, &["list", "--until", "1h", "--json"]).await;
    assert_eq!(ids_of(&list), Vec::<i64>::new());

    // Stats by reason, errcode and hour.
    let (code, stats, err) = dlq(&db, &["stats", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(stats["total"], 3);
    let reasons: Vec<&str> = stats["by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{stats}");
    assert!(reasons.contains(&"outcome_unknown"));
    assert!(
        stats["by_errcode"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"] == "43004" && g["count"] == 1),
        "{stats}"
    );
    assert_eq!(stats["by_hour"][0]["count"], 3, "{stats}");

    // An unknown id is an error naming it, and nothing is done.
    let (code, _, err) = dlq(&db, &["replay", "999999"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("999999"), "{err}");
    let (code, _, err) = dlq(&db, &["purge", &busy.to_string(), "999998", "--dry-run"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no dead letter 999998"), "{err}");

    // A dry run lists the letters; outcome_unknown is left out and said so.
    let (code, dry, err) = dlq(
        &db,
        &["replay", "--template", "TPL_A", "--dry-run", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(dry["count"], 1, "{dry}");
    assert_eq!(
        dry["letters"],
        json!([{"id": busy, "job_id": "job-busy", "reason": "retries_exhausted"}])
    );
    assert_eq!(dry["outcome_unknown_skipped"], 1);
    assert!(
        dry["warning"]
            .as_str()
            .unwrap()
            .contains("may have reached the person already"),
        "{dry}"
    );
    let out = wxnotify(
        &db,
        &["dlq", "replay", "--template", "TPL_A", "--dry-run"],
        &[],
    )
    .await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("job-busy") && shown.contains("retries_exhausted"),
        "{shown}"
    );
    assert!(shown.contains("--include-outcome-unknown"), "{shown}");
    let (_, dry, _) = dlq(
        &db,
        &[
            "replay",
            "--template",
            "TPL_A",
            "--include-outcome-unknown",
            "--dry-run",
            "--json",
        ],
    )
    .await;
    assert_eq!(
        (&dry["count"], &dry["outcome_unknown_included"]),
        (&json!(2), &json!(1)),
        "{dry}"
    );

    // purge --dry-run lists and keeps; the real purge deletes exactly those.
    let (code, dry, err) = dlq(
        &db,
        &[
            "purge",
            "--reason",
            "recipient_rejected",
            "--dry-run",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&dry["count"], &dry["letters"][0]["id"]),
        (&json!(1), &json!(block)),
        "{dry}"
    );
    let (_, list, _) = dlq(&db, &["list", "--json"]).await;
    assert_eq!(ids_of(&list).len(), 3, "a dry run deletes nothing");
    let (code, done, err) = dlq(&db, &["purge", "--reason", "recipient_rejected", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(done["deleted"], 1);
    let (_, list, _) = dlq(&db, &["list", "--json"]).await;
    assert_eq!(ids_of(&list), [unknown, busy]);
    // No ids and no filter: nothing, exit 2.
    let (code, _, err) = dlq(&db, &["purge"]).await;
    assert_eq!(code, 2, "{err}");
}
