//! `wxnotify serve`: the HTTP API until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use wxnotify_api::edge::login_limits::LoginLimits;
use wxnotify_api::{EdgeOptions, ServeOptions, ServerLimits};
use wxnotify_app::Application;
use wxnotify_core::config::Settings;

/// Arguments of `wxnotify serve`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wxnotify serve\n  wxnotify serve --listen 0.0.0.0:8080\n  wxnotify serve --listen 0.0.0.0:8080 --admin-listen 10.0.0.5:8081\n  WXNOTIFY_CALLBACK_TOKEN=... WXNOTIFY_ENCODING_AES_KEY=... wxnotify serve\n\nServes POST /v1/miniprogram/login, POST /v1/miniprogram/subscriptions, GET|POST\n/wechat/callback[/{app}] and /wechat/mp-callback[/{app}], /healthz, /readyz, /metrics,\nthe producer API, and the admin surface (/admin, /admin/api) when WXNOTIFY_ADMIN_TOKEN,\nWXNOTIFY_VIEWER_TOKEN (each at least 32 characters) or an admin user (`wxnotify admin-user add`) exists."
)]
pub struct ServeArgs {
    /// Address to listen on (the public one: login and the OA callback).
    #[arg(long, env = "WXNOTIFY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A second, private address for `/metrics` (and `/healthz`, `/readyz`); when set,
    /// `/metrics` is not served on `--listen`.
    #[arg(long, env = "WXNOTIFY_SERVE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// A private address for the admin surface (the console at `/admin`, the admin API at
    /// `/admin/api/...` and the whole `/openapi.json`); when set, none of it is served on
    /// `--listen`.
    #[arg(long, env = "WXNOTIFY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Seconds a callback's `timestamp` may differ from this server's clock.
    #[arg(long, env = "WXNOTIFY_CALLBACK_MAX_SKEW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(30..=3600))]
    pub callback_max_skew_secs: u64,
    /// Accept plaintext pushes for apps with an EncodingAESKey (WeChat's compatible mode, while
    /// switching to safe mode); otherwise they are refused.
    #[arg(long, env = "WXNOTIFY_CALLBACK_ALLOW_PLAINTEXT")]
    pub callback_allow_plaintext: bool,
    /// Logins per minute from one client address (an IPv6 /64).
    #[arg(long, env = "WXNOTIFY_LOGIN_PER_CLIENT_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub login_per_client_per_minute: u32,
    /// Logins per minute from all clients (keep it below WeChat's jscode2session quota).
    #[arg(long, env = "WXNOTIFY_LOGIN_PER_MINUTE", default_value_t = 3000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub login_per_minute: u32,
    /// Producer API requests per second per API key (429 with Retry-After past it); 0: no limit.
    #[arg(long, env = "WXNOTIFY_API_KEY_RATE", default_value_t = wxnotify_api::producer::link::DEFAULT_KEY_REQUESTS_PER_SECOND)]
    pub api_key_rate: u32,
    /// Header in which a trusted reverse proxy puts the client's address (e.g.
    /// X-Forwarded-For; its last value is used). Only set it behind such a proxy.
    #[arg(long, env = "WXNOTIFY_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Timeouts and the connection limit.
    #[command(flatten)]
    pub server: ServerArgs,
}

impl From<&ServeArgs> for EdgeOptions {
    fn from(a: &ServeArgs) -> Self {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            callback_max_skew: Duration::from_secs(a.callback_max_skew_secs),
            callback_allow_plaintext: a.callback_allow_plaintext,
            login: LoginLimits {
                per_client_per_minute: nz(a.login_per_client_per_minute),
                global_per_minute: nz(a.login_per_minute),
                client_ip_header: a.client_ip_header.clone(),
            },
        }
    }
}

/// The flags of `ServerLimits` (part of `wxnotify serve`'s arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Seconds a client has to send a request's headers; also how long an idle kept-alive
    /// connection stays open.
    #[arg(long, env = "WXNOTIFY_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout_secs: u64,
    /// Seconds allowed between two pieces of a request body.
    #[arg(long, env = "WXNOTIFY_BODY_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub body_timeout_secs: u64,
    /// Seconds allowed for a whole request, handler included.
    #[arg(long, env = "WXNOTIFY_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout_secs: u64,
    /// Connections open at once (per listening address); more wait in the backlog.
    #[arg(long, env = "WXNOTIFY_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_connections: u64,
    /// Connections open at once from one client address (an IPv6 /64); 0 turns the limit off
    /// (behind a reverse proxy, where every connection comes from the proxy).
    #[arg(long, env = "WXNOTIFY_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub max_connections_per_client: u64,
}

impl From<&ServerArgs> for ServerLimits {
    fn from(a: &ServerArgs) -> Self {
        Self {
            header_timeout: Duration::from_secs(a.header_timeout_secs),
            body_timeout: Duration::from_secs(a.body_timeout_secs),
            request_timeout: Duration::from_secs(a.request_timeout_secs),
            max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
            max_connections_per_client: usize::try_from(a.max_connections_per_client)
                .unwrap_or(usize::MAX),
            ..ServerLimits::default()
        }
    }
}

/// Runs `wxnotify serve` until SIGTERM or Ctrl-C; in-flight requests and background work finish
/// first.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    settings.require_apps()?;
    settings.require_strong_admin_tokens()?;
    let app = Application::connect(settings, 16).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let ops_listener = match args.metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let admin_listener = match args.admin_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let options = ServeOptions {
        listener,
        ops_listener,
        admin_listener,
        edge: EdgeOptions::from(&args),
        limits: ServerLimits::from(&args.server),
        producer: wxnotify_api::producer::link::ProducerOptions {
            key_requests_per_second: NonZeroU32::new(args.api_key_rate),
            client_ip_header: args.client_ip_header.clone(),
            ..wxnotify_api::producer::link::ProducerOptions::default()
        },
    };
    app.serve(options, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
