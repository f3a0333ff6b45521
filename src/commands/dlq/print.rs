//! What `wxnotify dlq` prints as text: the letter table, the letters an action touches, and the
//! counts of `dlq stats`.

use wxnotify_services::dlq::query::{GroupCount, Groups};
use wxnotify_services::dlq::{DeadLetterRow, Touched};

/// The letters of `list`.
pub(super) fn table(rows: &[DeadLetterRow]) {
    println!(
        "{:>8}  {:<20}  {:<36}  {:<12}  {:>7}  {:<20}  message",
        "id", "reason", "job id", "channel", "errcode", "dead at"
    );
    for r in rows {
        let message: String = r.errmsg.as_deref().unwrap_or("").chars().take(60).collect();
        println!(
            "{:>8}  {:<20}  {:<36}  {:<12}  {:>7}  {:<20}  {}{}",
            r.id,
            r.reason,
            r.job_id.as_deref().unwrap_or("-"),
            r.channel.as_deref().unwrap_or("-"),
            r.errcode
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            message,
            if r.replayed_at.is_some() {
                "  (replayed)"
            } else {
                ""
            }
        );
    }
    if rows.is_empty() {
        println!("(no dead letters match)");
    }
}

/// The letters an action touches (or, in a dry run, would touch).
pub(super) fn touched(letters: &[Touched], total: usize) {
    if letters.is_empty() {
        return;
    }
    println!("{:>8}  {:<36}  reason", "id", "job id");
    for l in letters {
        println!(
            "{:>8}  {:<36}  {}",
            l.id,
            l.job_id.as_deref().unwrap_or("-"),
            l.reason
        );
    }
    if total > letters.len() {
        println!("… and {} more", total - letters.len());
    }
}

/// The counts of `dlq stats`.
pub(super) fn stats(total: i64, g: &Groups) {
    println!("{total} dead letters match");
    let section = |title: &str, rows: &[GroupCount], none: &str| {
        println!("\n{title}");
        if rows.is_empty() {
            println!("  (none)");
        }
        for r in rows {
            println!("  {:<24} {:>8}", r.key.as_deref().unwrap_or(none), r.count);
        }
    };
    section("by reason", &g.by_reason, "-");
    section(
        "by errcode (none: not a WeChat refusal)",
        &g.by_errcode,
        "none",
    );
    section("by hour (UTC)", &g.by_hour, "-");
}
