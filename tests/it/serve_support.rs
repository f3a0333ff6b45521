#![allow(dead_code)] // not every test module uses every helper
//! Real `wxnotify` processes on a test's database: `serve` on free ports (waited for until it
//! answers `/healthz`), and one-shot commands.

use std::process::Output;
use std::time::Duration;

use url::Url;

use crate::support::{TestDb, amqp_url, queue_prefix};

/// The environment every process of a test gets: its database, the broker, a queue prefix and
/// the default app.
fn base_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url()),
        ("AMQP_URL", amqp_url()),
        ("WXNOTIFY_QUEUE_PREFIX", queue_prefix()),
        ("WXNOTIFY_OA_APPID", "wx0123456789abcdef".into()),
        ("WXNOTIFY_OA_SECRET", "serve-support-secret".into()),
        ("WECHAT_API_BASE", "http://127.0.0.1:1/".into()),
        ("WXNOTIFY_LOG_FORMAT", "json".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

pub fn command(db: &TestDb, args: &[&str], env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxnotify"));
    cmd.args(args)
        .env_remove("WXNOTIFY_CONFIG")
        .env_remove("WXNOTIFY_ADMIN_TOKEN")
        .env_remove("WXNOTIFY_VIEWER_TOKEN")
        .env_remove("WXNOTIFY_ADMIN_LISTEN")
        .env_remove("WXNOTIFY_CLIENT_IP_HEADER")
        .kill_on_drop(true);
    for (k, v) in base_env(db).iter().chain(env) {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `wxnotify ARGS` on `db` with `env` to its end (30 s at most).
pub async fn wxnotify(db: &TestDb, args: &[&str], env: &[(&str, String)]) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command(db, args, env).output())
        .await
        .unwrap_or_else(|_| panic!("wxnotify {args:?} did not exit within 30 s"))
        .expect("run wxnotify")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running `wxnotify serve`, killed when dropped.
pub struct ServeProcess {
    /// The public address (`--listen`).
    pub base: Url,
    /// The admin address (`--admin-listen`), when asked for.
    pub admin: Option<Url>,
    child: tokio::process::Child,
}

impl ServeProcess {
    /// Starts `serve` on `db` with `env` and `args` (plus `--listen` on a free port, and
    /// `--admin-listen` on another when `admin_listen`), and waits until it answers.
    pub async fn start(
        db: &TestDb,
        env: &[(&str, String)],
        args: &[&str],
        admin_listen: bool,
    ) -> ServeProcess {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all: Vec<String> = vec!["serve".into(), "--listen".into(), listen.clone()];
        let admin = admin_listen.then(|| format!("127.0.0.1:{}", free_port()));
        if let Some(admin) = &admin {
            all.extend(["--admin-listen".into(), admin.clone()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut child = command(db, &refs, env)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn wxnotify serve");
        let base = Url::parse(&format!("http://{listen}/")).unwrap();
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(base.join("healthz").unwrap()).send().await
                && r.status() == 200
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("wxnotify serve exited early: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wxnotify serve did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServeProcess {
            base,
            admin: admin.map(|a| Url::parse(&format!("http://{a}/")).unwrap()),
            child,
        }
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        self.child.start_kill().ok();
        self.child.wait().await.ok();
    }
}
