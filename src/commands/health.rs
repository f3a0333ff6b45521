//! `wxnotify health`: asks a health endpoint of a running wxnotify process (the image's
//! `HEALTHCHECK`: it has no curl) and exits 0 when it answers 2xx.

use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE};

/// Where `wxnotify health` asks by default: `serve`'s liveness on its default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/livez";

/// Arguments of `wxnotify health`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify health                                      # serve's /livez on 127.0.0.1:8080\n  wxnotify health --url http://127.0.0.1:8080/readyz   # serve, ready to take requests?\n  wxnotify health --url http://127.0.0.1:9101/readyz   # a worker (--metrics-listen), consuming?\n  WXNOTIFY_HEALTH_URL=http://127.0.0.1:9101/livez wxnotify health\n\nLiveness (/livez) answers 200 while the process works, even while RabbitMQ or Postgres is\naway; readiness (/readyz) answers 503 naming what is missing.\nExit codes: 0 healthy (2xx); 1 it answered another status (its body is printed);\n3 no answer (nothing listens, or no answer within --timeout-secs)."
)]
pub struct HealthArgs {
    /// The endpoint to ask.
    #[arg(long, env = "WXNOTIFY_HEALTH_URL", default_value = DEFAULT_URL)]
    pub url: url::Url,
    /// The longest wait for the answer, seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
    /// Print the answer as JSON (`{"url","status","body"}`).
    #[arg(long)]
    pub json: bool,
}

/// Runs `wxnotify health`.
pub async fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = match client.get(args.url.clone()).send().await {
        Ok(r) => {
            let status = r.status();
            Ok((status, r.text().await.unwrap_or_default()))
        }
        Err(e) => Err(e),
    };
    let (code, status, body) = match answer {
        Ok((status, body)) if status.is_success() => (EXIT_OK, Some(status.as_u16()), body),
        Ok((status, body)) => (EXIT_FAILURE, Some(status.as_u16()), body),
        Err(e) => (
            EXIT_UNAVAILABLE,
            None,
            format!(
                "no answer from {}: {e} (is the process running and listening there?)",
                args.url
            ),
        ),
    };
    if args.json {
        let out = serde_json::json!({"url": args.url.as_str(), "status": status, "body": body});
        println!("{out}");
    } else {
        match status {
            Some(s) => println!("{s} {}", body.trim_end()),
            None => eprintln!("error: {body}"),
        }
    }
    Ok(ExitCode::from(code))
}
