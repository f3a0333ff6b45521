//! The database schema and the job contract.

use crate::support::TestDb;

#[tokio::test]
async fn migrations_apply_and_are_idempotent() {
    let db = TestDb::new().await;
    wxnotify_core::db::migrate(&db.pool)
        .await
        .expect("second run is a no-op");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for t in [
        "access_tokens",
        "apps",
        "dead_letters",
        "deliveries",
        "mp_users",
        "oa_followers",
    ] {
        assert!(tables.iter().any(|x| x == t), "missing {t} in {tables:?}");
    }
}

#[tokio::test]
async fn ledger_invariants_are_enforced_by_named_constraints() {
    let db = TestDb::new().await;
    let err = sqlx::query(
        "INSERT INTO deliveries (job_id, app, recipient_kind, recipient, template_id, lane, state)
         VALUES ('j1', 'default', 'mp_openid', 'o1', 't1', 'jobs', 'sent')",
    )
    .execute(&db.pool)
    .await
    .unwrap_err();
    let constraint = err
        .as_database_error()
        .and_then(|e| e.constraint().map(str::to_owned));
    assert_eq!(constraint.as_deref(), Some("deliveries_sent_has_msgid"));
}

#[test]
fn committed_job_schema_matches_the_types() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/job.schema.json"))
        .expect("schemas/job.schema.json exists (regenerate: cargo run -- schema > schemas/job.schema.json)");
    assert_eq!(
        committed,
        wxnotify_core::domain::job::schema_json(),
        "schemas/job.schema.json is stale: run `cargo run -- schema > schemas/job.schema.json`"
    );
}
