//! Named admins and the hardening of admin authentication, against real `wxnotify serve`
//! processes on one database: `admin-user add|list|disable|rotate` and the audit trail naming
//! the person; sessions that die with their user or their break-glass token; failed bearer tries
//! and logins limited across two processes; short break-glass tokens refused; the admin surface
//! on its own address and out of the public OpenAPI document.

use std::process::Output;

use reqwest::StatusCode;
use serde_json::Value;

use crate::hostile::{console_login, console_login_from};
use crate::serve_support::{ServeProcess, wxnotify};
use crate::support::TestDb;

/// A break-glass token long enough for `serve`.
const BREAK_GLASS: &str = "break-glass-admin-token-0123456789abcdef";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wxnotify admin-user add NAME --role ROLE --json`: the token it printed.
async fn add(db: &TestDb, name: &str, role: &str) -> String {
    let out = wxnotify(
        db,
        &["admin-user", "add", name, "--role", role, "--json"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed["name"], name);
    assert_eq!(printed["role"], role);
    printed["token"].as_str().unwrap().to_owned()
}

/// `wxnotify admin-user rotate NAME --json`: the new token.
async fn rotate(db: &TestDb, name: &str) -> String {
    let out = wxnotify(db, &["admin-user", "rotate", name, "--json"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    printed["token"].as_str().unwrap().to_owned()
}

async fn disable(db: &TestDb, name: &str) -> Output {
    wxnotify(db, &["admin-user", "disable", name], &[]).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An admin API call with a bearer token (and a client address for a trusting `serve`).
async fn call(
    method: reqwest::Method,
    url: url::Url,
    token: &str,
    from: Option<&str>,
) -> reqwest::Response {
    let mut req = client().request(method, url).bearer_auth(token);
    if let Some(from) = from {
        req = req.header("x-forwarded-for", from);
    }
    req.send().await.unwrap()
}

async fn get(base: &url::Url, path: &str, token: &str) -> StatusCode {
    call(reqwest::Method::GET, base.join(path).unwrap(), token, None)
        .await
        .status()
}

/// The `wxn_session=…` pair a login set.
fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("wxn_session="))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers()))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// `GET /admin` with a session cookie: 200, or a 303 to the login page.
async fn overview(base: &url::Url, cookie: &str) -> (u16, String) {
    let r = client()
        .get(base.join("admin").unwrap())
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), location)
}

async fn scalar_strings(db: &TestDb, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_user_add_list_disable_rotate_round_trip_and_the_audit_names_the_person() {
    let db = TestDb::new().await;
    let alice = add(&db, "alice", "admin").await;
    let bob = add(&db, "bob@example.com", "viewer").await;
    assert!(alice.starts_with("wxa_") && alice.len() >= 32, "{alice}");

    // Refusals say what to do: a taken name (exit 1), a name that is not one (exit 2).
    let again = wxnotify(&db, &["admin-user", "add", "alice", "--role", "admin"], &[]).await;
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("admin-user rotate alice"),
        "{}",
        stderr(&again)
    );
    let bad = wxnotify(
        &db,
        &["admin-user", "add", "not a name", "--role", "admin"],
        &[],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let unknown = disable(&db, "nobody").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("admin-user list"),
        "{}",
        stderr(&unknown)
    );

    // `list` shows the people, never their tokens.
    let out = wxnotify(&db, &["admin-user", "list", "--json"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob@example.com"]);
    assert_eq!(rows[0]["role"], "admin");
    assert_eq!(rows[1]["role"], "viewer");
    assert_eq!(rows[0]["token_prefix"], alice[..10]);
    let text = wxnotify(&db, &["admin-user", "list"], &[]).await;
    for printed in [stdout(&out), stdout(&text)] {
        assert!(
            !printed.contains(&alice) && !printed.contains(&bob),
            "{printed}"
        );
    }
    assert!(stdout(&text).contains("bob@example.com"));

    // No break-glass token: the surface is on because admin users exist.
    let serve = ServeProcess::start(&db, &[], &[], false).await;
    let base = &serve.base;
    assert_eq!(get(base, "admin/api/apps", &alice).await, 200);
    assert_eq!(get(base, "admin/api/apps", &bob).await, 200);
    let pause = base.join("admin/api/apps/default/pause?minutes=5").unwrap();
    let r = call(reqwest::Method::POST, pause.clone(), &bob, None).await;
    assert_eq!(r.status(), 403, "a viewer reads only");
    let r = call(reqwest::Method::POST, pause.clone(), &alice, None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The audit trail names the person, over the API too.
    let r = call(
        reqwest::Method::GET,
        base.join("admin/api/audit").unwrap(),
        &bob,
        None,
    )
    .await;
    let audit: Value = r.json().await.unwrap();
    let pause_row = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["action"] == "pause")
        .expect("the pause is audited");
    assert_eq!(pause_row["actor"], "alice", "{pause_row}");
    assert_eq!(pause_row["who"], "api:admin");

    // Rotation: the old token is refused at once, the new one works.
    let alice2 = rotate(&db, "alice").await;
    assert_ne!(alice2, alice);
    assert_eq!(get(base, "admin/api/apps", &alice).await, 401);
    assert_eq!(get(base, "admin/api/apps", &alice2).await, 200);

    // Disabling: the token is refused at once; a second disable changes nothing; a disabled
    // user cannot be rotated back.
    let out = disable(&db, "bob@example.com").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(base, "admin/api/apps", &bob).await, 401);
    let twice = disable(&db, "bob@example.com").await;
    assert!(twice.status.success());
    assert!(
        stdout(&twice).contains("disabled already"),
        "{}",
        stdout(&twice)
    );
    let back = wxnotify(&db, &["admin-user", "rotate", "bob@example.com"], &[]).await;
    assert_eq!(back.status.code(), Some(1));
    assert!(stderr(&back).contains("disabled"), "{}", stderr(&back));
    let out = wxnotify(&db, &["admin-user", "list", "--json"], &[]).await;
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(rows[1]["disabled_at"].is_string(), "{rows}");
    assert_eq!(rows[0]["generation"], 2);

    // The commands are audited too, as `cli`.
    let actions = scalar_strings(
        &db,
        "SELECT action FROM admin_audit WHERE actor = 'cli' ORDER BY id",
    )
    .await;
    assert_eq!(
        actions,
        [
            "admin-user add",
            "admin-user add",
            "admin-user rotate",
            "admin-user disable"
        ]
    );
    serve.stop().await;
}

#[tokio::test]
async fn a_console_session_dies_at_once_with_its_user_its_token_or_its_break_glass_token() {
    let db = TestDb::new().await;
    let carol = add(&db, "carol", "admin").await;
    let dave = add(&db, "dave", "viewer").await;
    let env = [("WXNOTIFY_ADMIN_TOKEN", BREAK_GLASS.to_owned())];
    let serve = ServeProcess::start(&db, &env, &[], false).await;
    let http = client();
    let mut cookies = Vec::new();
    for token in [carol.as_str(), dave.as_str(), BREAK_GLASS] {
        let r = console_login(&http, &serve.base, token).await;
        assert_eq!(r.status(), 303, "login");
        let cookie = session_cookie(&r);
        assert_eq!(overview(&serve.base, &cookie).await.0, 200);
        cookies.push(cookie);
    }
    let [carols, daves, break_glass] = <[String; 3]>::try_from(cookies).unwrap();
    let logins = scalar_strings(
        &db,
        "SELECT actor FROM admin_audit WHERE action = 'login' ORDER BY id",
    )
    .await;
    assert_eq!(logins, ["carol", "dave", "env:admin"]);

    // Disabled: the next request is sent to the login page.
    assert!(disable(&db, "carol").await.status.success());
    assert_eq!(
        overview(&serve.base, &carols).await,
        (303, "/admin/login".into())
    );
    // Rotated: likewise, even though the user is still enabled.
    rotate(&db, "dave").await;
    assert_eq!(
        overview(&serve.base, &daves).await,
        (303, "/admin/login".into())
    );
    assert_eq!(overview(&serve.base, &break_glass).await.0, 200);
    serve.stop().await;

    // A break-glass session outlives a restart with the same token, not a change of token.
    let same = ServeProcess::start(&db, &env, &[], false).await;
    assert_eq!(overview(&same.base, &break_glass).await.0, 200);
    same.stop().await;
    let other = [(
        "WXNOTIFY_ADMIN_TOKEN",
        "another-break-glass-token-0123456789abcdef".to_owned(),
    )];
    let changed = ServeProcess::start(&db, &other, &[], false).await;
    assert_eq!(
        overview(&changed.base, &break_glass).await,
        (303, "/admin/login".into())
    );
    changed.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_short_break_glass_token_naming_the_setting() {
    let db = TestDb::new().await;
    let short = "short-admin-token-31-characters";
    assert_eq!(short.len(), 31);
    for name in ["WXNOTIFY_ADMIN_TOKEN", "WXNOTIFY_VIEWER_TOKEN"] {
        let out = wxnotify(
            &db,
            &["serve", "--listen", "127.0.0.1:0"],
            &[(name, short.to_owned())],
        )
        .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        let line = err
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(line.contains(name) && line.contains("32"), "{name}: {line}");
        assert!(line.contains("admin-user add"), "says what to do: {line}");
        assert!(!err.contains(short), "the value is a secret: {err}");
    }
}

#[tokio::test]
async fn a_bearer_guessing_loop_gets_429_after_the_limit_from_two_serve_processes_together() {
    let db = TestDb::new().await;
    let erin = add(&db, "erin", "admin").await;
    // Both processes trust the proxy's header, as behind a load balancer.
    let args = ["--client-ip-header", "X-Forwarded-For"];
    let a = ServeProcess::start(&db, &[], &args, false).await;
    let b = ServeProcess::start(&db, &[], &args, false).await;
    let apps = |s: &ServeProcess| s.base.join("admin/api/apps").unwrap();
    let guesser = Some("198.51.100.7");
    let limit = wxnotify_api::failures::ADMIN_FAILURES_PER_MINUTE as usize;
    for i in 0..limit {
        let target = if i % 2 == 0 { &a } else { &b };
        let guess = format!("guess-{i:02}-wxa_0123456789abcdefghijklmnopqrstuvwxyz");
        let r = call(reqwest::Method::GET, apps(target), &guess, guesser).await;
        assert_eq!(r.status(), 401, "guess {i}");
    }
    // The sum of both processes' failures reached the limit: both refuse, even the right
    // token, with Retry-After.
    for (target, token) in [
        (&b, "guess-99-0123456789abcdefghijklmnopqrstuvwxyz"),
        (&a, erin.as_str()),
        (&b, erin.as_str()),
    ] {
        let r = call(reqwest::Method::GET, apps(target), token, guesser).await;
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("wait"), "{body}");
    }
    // The console's login counts with them, by the proxy's client address too.
    let http = client();
    let r = console_login_from(&http, &a.base, &erin, guesser).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Another client behind the same proxy is not locked out.
    let r = console_login_from(&http, &b.base, &erin, Some("198.51.100.8")).await;
    assert_eq!(r.status(), 303, "another client logs in");
    let r = call(reqwest::Method::GET, apps(&a), &erin, Some("198.51.100.8")).await;
    assert_eq!(r.status(), 200);

    // A guess spread over many addresses is limited by its token prefix.
    for i in 0..limit {
        let target = if i % 2 == 0 { &a } else { &b };
        let from = format!("203.0.113.{i}");
        let guess = format!("samepfx-{i}-0123456789abcdefghijklmnopqrstuvwxyz");
        let r = call(reqwest::Method::GET, apps(target), &guess, Some(&from)).await;
        assert_eq!(r.status(), 401, "spread guess {i}");
    }
    let r = call(
        reqwest::Method::GET,
        apps(&a),
        "samepfx-last-0123456789abcdefghijklmnopqrstuvwxyz",
        Some("203.0.113.200"),
    )
    .await;
    assert_eq!(r.status(), 429);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_api_keys_from_one_address_get_429_with_retry_after_across_two_serve_processes() {
    let db = TestDb::new().await;
    let args = ["--client-ip-header", "X-Forwarded-For"];
    let a = ServeProcess::start(&db, &[], &args, false).await;
    let b = ServeProcess::start(&db, &[], &args, false).await;
    let post = |s: &ServeProcess, key: String, from: &'static str| {
        let url = s.base.join("v1/notifications").unwrap();
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .header("x-forwarded-for", from)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap()
        }
    };
    let limit = wxnotify_api::failures::API_KEY_FAILURES_PER_MINUTE as usize;
    for i in 0..limit {
        let target = if i % 2 == 0 { &a } else { &b };
        let r = post(target, format!("wxn_unknown{i:040}"), "192.0.2.10").await;
        assert_eq!(r.status(), 401, "try {i}");
    }
    let r = post(&b, "wxn_unknown-one-more".into(), "192.0.2.10").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_failures", "{body}");
    // Another address is still looked up.
    let r = post(&a, "wxn_unknown-elsewhere".into(), "192.0.2.11").await;
    assert_eq!(r.status(), 401);
    a.stop().await;
    b.stop().await;
}

fn admin_paths(doc: &Value) -> Vec<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| p.starts_with("/admin"))
        .cloned()
        .collect()
}

async fn document(url: url::Url, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_public_openapi_lists_no_admin_path_and_the_admin_listen_address_takes_the_admin_surface()
 {
    let db = TestDb::new().await;
    let frank = add(&db, "frank", "viewer").await;

    // One address: the public document has no admin path; the whole one is behind admin auth.
    let one = ServeProcess::start(&db, &[], &[], false).await;
    let (status, public) = document(one.base.join("openapi.json").unwrap(), None).await;
    assert_eq!(status, 200);
    assert!(public["paths"]["/v1/notifications"].is_object());
    assert_eq!(admin_paths(&public), Vec::<String>::new());
    assert!(public["components"]["securitySchemes"]["admin_token"].is_null());
    let whole = one.base.join("admin/openapi.json").unwrap();
    assert_eq!(document(whole.clone(), None).await.0, 401);
    let (status, full) = document(whole, Some(&frank)).await;
    assert_eq!(status, 200);
    assert!(full["paths"]["/admin/api/dead-letters"].is_object());
    assert!(full["paths"]["/admin/api/campaigns"].is_object());
    assert_eq!(get(&one.base, "admin/api/apps", &frank).await, 200);
    one.stop().await;

    // With --admin-listen: nothing of the admin surface on the public address.
    let two = ServeProcess::start(&db, &[], &[], true).await;
    let admin = two.admin.clone().unwrap();
    for path in [
        "admin/api/apps",
        "admin/api/campaigns",
        "admin/openapi.json",
        "admin/login",
    ] {
        assert_eq!(get(&two.base, path, &frank).await, 404, "public {path}");
        assert_eq!(get(&admin, path, &frank).await, 200, "admin {path}");
    }
    let (_, public) = document(two.base.join("openapi.json").unwrap(), None).await;
    assert_eq!(admin_paths(&public), Vec::<String>::new());
    let (status, full) = document(admin.join("openapi.json").unwrap(), None).await;
    assert_eq!(status, 200);
    assert!(full["paths"]["/admin/api/apps"].is_object());
    assert_eq!(
        client()
            .get(admin.join("healthz").unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    two.stop().await;
}
