//! What `wxnotify campaign` prints: JSON or a text line, the preview line, and the live
//! progress bar of `campaign status` on a terminal.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use wxnotify_services::campaigns::{CampaignError, Channels, progress};

/// Prints `value` as one JSON line, or the text `text` gives.
pub(super) fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).expect("serialisable output")
        );
    } else {
        println!("{}", text());
    }
}
/// The summary of a campaign's audience: how many are reachable, why not the rest, and the
/// audience by channel.
pub(super) fn preview_text<K: std::fmt::Display>(
    id: &str,
    audience: u64,
    reachable: u64,
    unreachable: &std::collections::BTreeMap<K, u64>,
    by_channel: &Channels,
) -> String {
    let reasons: Vec<String> = unreachable
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    format!(
        "campaign {id}: {audience} recipients, {reachable} reachable, {} unreachable{}",
        audience - reachable,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    ) + &format!(
        "\n  by channel: {} followers (OA template), {} grant holders (subscribe), {} unreachable",
        by_channel.followers, by_channel.grant_holders, by_channel.unreachable
    )
}

/// A live progress bar until the campaign ends (or Ctrl-C), then its status line.
pub(super) async fn follow(pool: &PgPool, id: Uuid) -> Result<(), CampaignError> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} finished  {msg}",
        )
        .expect("the progress template is valid"),
    );
    let first = progress::status(pool, id).await?;
    bar.set_prefix(format!(
        "campaign {}",
        first.name.as_deref().unwrap_or(&id.to_string()[..8])
    ));
    let mut every = tokio::time::interval(Duration::from_millis(500));
    let last = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break progress::status(pool, id).await?,
            _ = every.tick() => {}
        }
        let s = progress::status(pool, id).await?;
        bar.set_length(s.reachable);
        bar.set_position(s.finished());
        bar.set_message(format!(
            "{} | {} sent, {} dead | {}",
            s.state,
            s.sent,
            s.dead.values().sum::<u64>(),
            s.pace_text()
        ));
        if s.state.is_final() {
            break s;
        }
    };
    bar.finish_and_clear();
    println!("{}", last.line());
    Ok(())
}
