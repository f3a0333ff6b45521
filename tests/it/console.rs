//! The ops console in a real headless Chromium, driven through WebDriver (chromedriver, started
//! here on a free port, with a fresh profile): log in, filter dead letters, replay the filtered
//! ones after the dry-run count, see them leave the list and their jobs become sent; a viewer
//! sees no button that changes anything; a POST without the CSRF token is refused.
//!
//! Every page visited is saved as a PNG under `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use wxnotify_core::domain::Job;

use crate::admin_support::{ADMIN_TOKEN, AdminWorld, VIEWER_TOKEN};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver and one browser session; both end when this is dropped.
struct Browser {
    client: Option<Client>,
    _driver: tokio::process::Child,
    profile: PathBuf,
    shots: PathBuf,
    shot: u32,
}

impl Browser {
    async fn start(name: &str) -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "the console tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)"
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let webdriver = format!("http://127.0.0.1:{port}");
        // Ready when its status endpoint answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(format!("{webdriver}/status"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!(
            "wxnotify-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&webdriver)
            .await
            .expect("a Chromium session");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let _ = name;
        Browser {
            client: Some(client),
            _driver: driver,
            profile,
            shots,
            shot: 0,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Saves a screenshot of the current page as `target/console-screenshots/{name}.png`.
    async fn screenshot(&mut self, name: &str) {
        self.shot += 1;
        let png = self.c().screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// The element `css`, waiting up to 10 s for it to appear (a click's page load may still
    /// be under way when the click returns).
    async fn find(
        &self,
        css: &str,
    ) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
        self.c()
            .wait()
            .at_most(std::time::Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
    }

    /// The text of `css`. Found again when the page it was found on went away before its text
    /// was read (a click's page load finishing just then: a stale element).
    async fn text(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let element = self
                .find(css)
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
            match element.text().await {
                Ok(text) => return text,
                Err(e)
                    if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{css}: {e}"),
            }
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.c().find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Waits (at most 10 s) until `css` matches `n` elements: a click's page load may still
    /// be under way when the click returns.
    async fn wait_count(&self, css: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = self.count(css).await;
            if now == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css}: {now} elements, not {n}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self
            .find(css)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Asserts the current path (waiting up to 10 s for a click's navigation to finish), showing
    /// the page's text when it is another.
    async fn expect_path(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let text = self.text("body").await;
                panic!("on {now}, not {path}; the page says:\n{text}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn path(&self) -> String {
        let u = self.c().current_url().await.unwrap();
        u.path().to_owned()
    }

    async fn login(&self, base: &url::Url, token: &str) {
        self.c()
            .goto(base.join("admin").unwrap().as_str())
            .await
            .unwrap();
        assert_eq!(
            self.path().await,
            "/admin/login",
            "no session: the login page"
        );
        self.fill("#token", token).await;
        self.click("#login").await;
        self.expect_path("/admin").await;
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            c.close().await.ok();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn console_in_chromium_filter_dry_run_replay_and_the_jobs_are_sent() {
    let w = AdminWorld::new().await;
    let mut b = Browser::start("admin").await;

    // Log in with the token.
    b.c().goto(w.url("admin").as_str()).await.unwrap();
    b.expect_path("/admin/login").await;
    b.screenshot("01-login").await;
    b.fill("#token", "not-the-token").await;
    b.click("#login").await;
    assert!(
        b.text("#login-error")
            .await
            .contains("not an admin or viewer token")
    );
    b.fill("#token", ADMIN_TOKEN).await;
    b.click("#login").await;
    b.expect_path("/admin").await;
    assert_eq!(b.text("#role").await, "admin");
    assert!(b.text("#queues").await.contains(".jobs"));
    assert_eq!(b.count("#workers tr").await, 2, "one live worker");
    b.screenshot("02-overview").await;
    let cookie = b
        .c()
        .get_named_cookie("wxn_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");

    // Dead letters: all six, then filtered by errcode.
    b.click("header a[href='/admin/dead-letters']").await;
    b.wait_count("tr.letter", 6).await;
    assert!(b.text("#by-errcode").await.contains("43101 4"));
    b.screenshot("03-dead-letters").await;
    b.fill("#filter input[name=errcode]", "43101").await;
    b.click("#apply").await;
    b.wait_count("tr.letter", 4).await;
    assert_eq!(b.text("#total-count").await, "4");
    b.screenshot("04-dead-letters-filtered").await;

    // Replay all matching: first the dry run's count, and nothing has changed yet.
    b.click("#replay-all").await;
    b.expect_path("/admin/dead-letters/confirm").await;
    assert_eq!(b.text("#dry-run-count").await, "4");
    b.screenshot("05-confirm-replay").await;
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
            .await,
        6
    );
    assert_eq!(w.states(&w.refused).await, vec!["dead"; 4]);

    // Confirm: they leave the list, and the worker sends them.
    b.click("#confirm").await;
    b.expect_path("/admin/dead-letters").await;
    assert!(b.text("#notice").await.contains("Replayed 4 dead letters"));
    assert_eq!(
        b.count("tr.letter").await,
        0,
        "the filtered letters left the list"
    );
    b.screenshot("06-after-replay").await;
    w.wait_state(&w.refused, "sent").await;
    assert_eq!(w.states(&w.unknown_template).await, vec!["dead"; 2]);
    b.click("a[href='/admin/dead-letters']").await;
    assert_eq!(
        b.count("tr.letter").await,
        2,
        "only the letters outside the filter remain"
    );

    // The job's page says sent.
    let job = w.refused[0].id.as_str().to_owned();
    b.click("header a[href='/admin/jobs']").await;
    b.fill("#q", &job).await;
    b.click("#find").await;
    assert!(b.text("#deliveries td.state").await.starts_with("sent"));
    b.screenshot("07-job-lookup").await;
    b.click("header a[href='/admin']").await;
    b.expect_path("/admin").await;
    assert_eq!(
        sum_of_counts(&b, "#activity-chart rect.bar[data-series='sent']").await,
        4,
        "the replayed sends are on the chart"
    );
    b.screenshot("07b-overview-after-replay").await;

    // One dead letter's page, with its attempts.
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM dead_letters WHERE errcode = 40037 ORDER BY id LIMIT 1")
            .fetch_one(&w.sys.db.pool)
            .await
            .unwrap();
    b.c()
        .goto(w.url(&format!("admin/dead-letters/{id}")).as_str())
        .await
        .unwrap();
    assert!(b.text("#attempts").await.contains("40037"));
    assert!(b.text("#job").await.contains("TPL_UNKNOWN"));
    b.screenshot("08-dead-letter").await;

    // On a phone.
    b.c().set_window_size(390, 844).await.unwrap();
    b.c()
        .goto(w.url("admin/dead-letters").as_str())
        .await
        .unwrap();
    b.screenshot("09-dead-letters-phone").await;
    b.c().set_window_size(1280, 900).await.unwrap();

    // A POST without the CSRF token, with the browser's own session cookie, is refused.
    let session = b
        .c()
        .get_named_cookie("wxn_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let before = w
        .count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = http
        .post(w.url("admin/dead-letters/act"))
        .header("cookie", format!("wxn_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("op", "replay:filter")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let wrong = http
        .post(w.url("admin/dead-letters/act"))
        .header("cookie", format!("wxn_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("op", "purge:filter"), ("csrf", "0000")]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
            .await,
        before
    );
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters").await,
        6,
        "nothing purged"
    );
    // And in the browser itself: the list's form with its CSRF field removed.
    b.c()
        .goto(w.url("admin/dead-letters").as_str())
        .await
        .unwrap();
    b.c()
        .execute(
            "document.querySelector('#letters-form input[name=csrf]').remove()",
            vec![],
        )
        .await
        .unwrap();
    b.click("#purge-all").await;
    assert!(b.text("#refused").await.contains("CSRF"));
    b.screenshot("10-csrf-refused").await;
    assert_eq!(w.count("SELECT count(*) FROM dead_letters").await, 6);

    // The audit trail has the login, the dry run and the replay.
    let actions: Vec<(String, String, bool, i64)> =
        sqlx::query_as("SELECT who, action, dry_run, affected FROM admin_audit ORDER BY id")
            .fetch_all(&w.sys.db.pool)
            .await
            .unwrap();
    assert_eq!(
        actions,
        vec![
            ("console:admin".into(), "login".into(), false, 0),
            ("console:admin".into(), "replay".into(), true, 4),
            ("console:admin".into(), "replay".into(), false, 4),
        ]
    );
    b.close().await;
}

#[tokio::test]
async fn console_in_chromium_a_viewer_sees_no_replay_button_and_cannot_post() {
    let w = AdminWorld::new().await;
    let mut b = Browser::start("viewer").await;
    b.login(&w.base, VIEWER_TOKEN).await;
    assert_eq!(b.text("#role").await, "viewer");
    assert_eq!(
        b.count("#apps form").await,
        0,
        "no pause / resume for a viewer"
    );
    b.screenshot("11-viewer-overview").await;
    b.c()
        .goto(w.url("admin/dead-letters").as_str())
        .await
        .unwrap();
    assert_eq!(b.count("tr.letter").await, 6);
    for button in [
        "#replay-all",
        "#replay-selected",
        "#purge-all",
        "#purge-selected",
        "input[name=id]",
        "form[action='/admin/dead-letters/confirm'] button",
    ] {
        assert_eq!(b.count(button).await, 0, "a viewer sees no {button}");
    }
    b.screenshot("12-viewer-dead-letters").await;
    b.click("tr.letter a").await;
    assert_eq!(b.count("#replay-one").await, 0);
    assert_eq!(b.count("#purge-one").await, 0);
    b.screenshot("13-viewer-dead-letter").await;

    // Even with a valid CSRF token, a viewer's POST is refused.
    let csrf = b
        .c()
        .find(Locator::Css("header form input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let session = b
        .c()
        .get_named_cookie("wxn_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let r = reqwest::Client::new()
        .post(w.url("admin/dead-letters/act"))
        .header("cookie", format!("wxn_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("op", "replay:filter"), ("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        w.count("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
            .await,
        6
    );
    b.close().await;
}

/// A running campaign of the world's followers (no dispatcher runs here, so it stays running
/// until someone changes it).
async fn running_campaign(w: &AdminWorld) -> uuid::Uuid {
    use wxnotify_services::campaigns::store::{self, AudienceSource, NewCampaign};
    use wxnotify_services::campaigns::{Action, Pacing};
    let new = NewCampaign {
        app: wxnotify_core::domain::AppName::default_app(),
        template_id: wxnotify_core::domain::TemplateId::parse("TPL_ORDER_SHIPPED").unwrap(),
        data: wxnotify_core::domain::TemplateData::from_pairs(&[
            ("thing1", "Winter sale"),
            ("time2", "2026-12-12"),
        ])
        .unwrap(),
        url: None,
        miniprogram: None,
        not_after: None,
        pacing: Pacing {
            rate_per_second: 5,
            window: None,
            time_zone: chrono_tz::UTC,
            start_at: None,
            daily_cap: None,
        },
        created_by: "test".into(),
        name: None,
        truncate: false,
        mp_subscribe: None,
    };
    let report = store::create(&w.sys.db.pool, &new, 1000, AudienceSource::Followers)
        .await
        .unwrap();
    assert!(report.reachable > 0, "{report:?}");
    store::apply(&w.sys.db.pool, report.id, Action::Start, "test")
        .await
        .unwrap();
    report.id
}

async fn campaign_state(w: &AdminWorld, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_one(&w.sys.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn console_in_chromium_campaigns_pause_resume_cancel_and_a_viewer_sees_no_buttons() {
    let w = AdminWorld::new().await;
    let first = running_campaign(&w).await;
    let second = running_campaign(&w).await;
    let status = wxnotify_services::campaigns::progress::status(&w.sys.db.pool, first)
        .await
        .unwrap();
    let mut b = Browser::start("campaigns").await;
    b.login(&w.base, ADMIN_TOKEN).await;

    // The list, from the navigation.
    b.click("header a[href='/admin/campaigns']").await;
    b.expect_path("/admin/campaigns").await;
    b.wait_count("tr.campaign", 2).await;
    assert!(b.text("#campaigns").await.contains("running"));
    b.screenshot("14-campaigns").await;

    // One campaign's numbers are the status the API gives.
    b.click(&format!("tr.campaign[data-id='{first}'] a")).await;
    b.expect_path(&format!("/admin/campaigns/{first}")).await;
    assert_eq!(b.text("#campaign-state").await, "running");
    assert_eq!(b.text("#n-audience").await, status.audience.to_string());
    assert_eq!(b.text("#n-reachable").await, status.reachable.to_string());
    assert_eq!(b.text("#n-sent").await, "0");
    assert_eq!(b.count("#campaign-resume").await, 0, "not paused");
    b.screenshot("15-campaign").await;

    // Pause, then resume: the state changes in Postgres, by the console's admin.
    b.click("#campaign-pause").await;
    assert!(b.text("#notice").await.contains("now paused"));
    assert_eq!(b.text("#campaign-state").await, "paused");
    assert_eq!(campaign_state(&w, first).await, "paused");
    assert_eq!(b.count("#campaign-pause").await, 0);
    b.screenshot("16-campaign-paused").await;
    b.click("#campaign-resume").await;
    assert!(b.text("#notice").await.contains("now running"));
    assert_eq!(campaign_state(&w, first).await, "running");
    let actors: Vec<(String, String)> = sqlx::query_as(
        "SELECT to_state, actor FROM campaign_state_changes WHERE campaign_id = $1 AND actor LIKE 'console:%' ORDER BY id",
    )
    .bind(first)
    .fetch_all(&w.sys.db.pool)
    .await
    .unwrap();
    assert_eq!(
        actors,
        vec![
            ("paused".into(), "console:admin".into()),
            ("running".into(), "console:admin".into()),
        ]
    );
    assert_eq!(
        w.count(
            "SELECT count(*) FROM admin_audit WHERE action IN ('campaign_pause', 'campaign_resume')"
        )
        .await,
        2
    );

    // Cancel asks first; "No" keeps it running, "Yes" cancels it.
    b.click("#campaign-cancel").await;
    assert!(b.text("#cancel-warning").await.contains("final"));
    b.screenshot("17-campaign-confirm-cancel").await;
    assert_eq!(campaign_state(&w, first).await, "running");
    b.click("#keep-campaign").await;
    b.expect_path(&format!("/admin/campaigns/{first}")).await;
    assert_eq!(campaign_state(&w, first).await, "running");
    b.click("#campaign-cancel").await;
    b.click("#confirm-cancel").await;
    assert!(b.text("#notice").await.contains("now cancelled"));
    assert_eq!(campaign_state(&w, first).await, "cancelled");
    assert_eq!(
        b.count("#campaign-actions form").await,
        0,
        "final: no action"
    );

    // A POST without the CSRF token is refused and changes nothing.
    let session = b
        .c()
        .get_named_cookie("wxn_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let r = reqwest::Client::new()
        .post(w.url(&format!("admin/campaigns/{second}/pause")))
        .header("cookie", format!("wxn_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("op", "x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(campaign_state(&w, second).await, "running");

    // The admin sees the buttons of the second campaign; a viewer does not.
    b.c()
        .goto(w.url(&format!("admin/campaigns/{second}")).as_str())
        .await
        .unwrap();
    assert_eq!(b.count("#campaign-pause").await, 1);
    b.click("header form button").await;
    b.expect_path("/admin/login").await;
    b.login(&w.base, VIEWER_TOKEN).await;
    b.c()
        .goto(w.url(&format!("admin/campaigns/{second}")).as_str())
        .await
        .unwrap();
    assert_eq!(b.text("#campaign-state").await, "running");
    assert_eq!(
        b.count("form[action^='/admin/campaigns/']").await,
        0,
        "a viewer sees no campaign button"
    );
    b.screenshot("18-viewer-campaign").await;
    // Even with its valid CSRF token, a viewer's pause is refused.
    let csrf = b
        .c()
        .find(Locator::Css("header form input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let session = b
        .c()
        .get_named_cookie("wxn_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let r = reqwest::Client::new()
        .post(w.url(&format!("admin/campaigns/{second}/pause")))
        .header("cookie", format!("wxn_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(campaign_state(&w, second).await, "running");
    b.close().await;
}

#[tokio::test]
async fn console_in_chromium_templates_show_their_source_and_an_admin_registers_and_removes_one() {
    let sys = crate::system::System::seeded(1).await;
    let (base, _) =
        crate::admin_support::serve_admin(&sys, Some(ADMIN_TOKEN), Some(VIEWER_TOKEN)).await;
    let mut b = Browser::start("templates").await;
    b.login(&base, ADMIN_TOKEN).await;
    b.click("header a[href='/admin/templates']").await;
    b.expect_path("/admin/templates").await;
    assert_eq!(b.count("tr.template").await, 0, "nothing listed yet");
    b.fill("#template-id", "TPL_ORDER_SHIPPED").await;
    b.fill("#template-title", "订单发货提醒").await;
    b.fill(
        "#template-content",
        "商品：{{thing1.DATA}} 时间：{{time2.DATA}}",
    )
    .await;
    b.click("#add").await;
    b.expect_path("/admin/templates").await;
    assert!(b.text("#notice").await.contains("added"), "the notice");
    b.wait_count("tr.template", 1).await;
    assert_eq!(
        b.text("tr.template[data-id='TPL_ORDER_SHIPPED'] td.source")
            .await,
        "manual"
    );
    assert!(
        b.text("tr.template[data-id='TPL_ORDER_SHIPPED']")
            .await
            .contains("thing1, time2")
    );
    b.screenshot("31-templates").await;
    let who: String =
        sqlx::query_scalar("SELECT who FROM admin_audit WHERE action = 'template_add'")
            .fetch_one(&sys.db.pool)
            .await
            .unwrap();
    assert_eq!(who, "console:admin");

    // A POST without the CSRF token is refused, and changes nothing.
    let session = b
        .c()
        .get_named_cookie("wxn_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let r = reqwest::Client::new()
        .post(
            base.join("admin/templates/default/TPL_ORDER_SHIPPED/remove")
                .unwrap(),
        )
        .header("cookie", format!("wxn_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    b.click("tr.template[data-id='TPL_ORDER_SHIPPED'] button")
        .await;
    b.wait_count("tr.template", 0).await;
    assert!(b.text("#notice").await.contains("removed"));
    b.close().await;

    // A viewer sees the page and no form.
    let mut v = Browser::start("templates-viewer").await;
    v.login(&base, VIEWER_TOKEN).await;
    v.c()
        .goto(base.join("admin/templates").unwrap().as_str())
        .await
        .unwrap();
    v.expect_path("/admin/templates").await;
    assert_eq!(v.count("#add-template").await, 0);
    v.screenshot("32-templates-viewer").await;
    v.close().await;
}

#[tokio::test]
async fn console_in_chromium_a_suspended_app_shows_wechats_errcode_the_fix_and_a_resume_button() {
    let w = AdminWorld::new().await;
    wxnotify_services::app_pause::suspend(
        &w.sys.db.pool,
        "default",
        50002,
        "user limited rid: 6584c1a2-1b2c3d4e-5f6a7b8c",
        Some("/cgi-bin/message/template/send"),
    )
    .await
    .unwrap();
    let mut b = Browser::start("suspended").await;
    b.login(&w.base, ADMIN_TOKEN).await;
    let alert = b.text(".alert.suspended").await;
    assert!(alert.contains("App default sends nothing"), "{alert}");
    assert!(alert.contains("errcode 50002"), "{alert}");
    let row = b.text("#apps").await;
    assert!(
        row.contains("WeChat refuses the account (errcode 50002)"),
        "{row}"
    );
    assert!(row.contains("user limited"), "{row}");
    assert!(
        row.contains("To fix: WeChat restricted the account"),
        "{row}"
    );
    b.screenshot("40-suspended-app").await;
    b.click("#apps form button").await;
    b.expect_path("/admin").await;
    let row = b.text("#apps").await;
    assert!(!row.contains("WeChat refuses"), "resumed: {row}");
    assert_eq!(b.count(".alert.suspended").await, 0);
    b.close().await;
}

/// The start (RFC 3339) of the `bucket_min`-minute bucket that holds `t`, as the charts write it.
fn bucket_of(t: chrono::DateTime<chrono::Utc>, bucket_min: i64) -> String {
    use chrono::DurationRound;
    t.duration_trunc(chrono::Duration::minutes(bucket_min))
        .unwrap()
        .to_rfc3339()
}

/// The console URL of the dead letter whose id `sql` selects.
async fn letter_url(w: &AdminWorld, sql: &'static str) -> url::Url {
    let id: i64 = sqlx::query_scalar(sql)
        .fetch_one(&w.sys.db.pool)
        .await
        .unwrap();
    w.url(&format!("admin/dead-letters/{id}"))
}

/// The sum of `data-count` of the elements `css`.
async fn sum_of_counts(b: &Browser, css: &str) -> i64 {
    let mut sum = 0;
    for e in b.c().find_all(Locator::Css(css)).await.unwrap() {
        sum += e
            .attr("data-count")
            .await
            .unwrap()
            .expect("data-count")
            .parse::<i64>()
            .unwrap();
    }
    sum
}

#[tokio::test]
async fn console_in_chromium_charts_have_time_axes_and_totals_and_a_replayed_job_shows_its_last_life()
 {
    let w = AdminWorld::new().await;
    // A job that dies inside wxnotify: expired before it was sent (no errcode).
    let mut expired = Job::new(
        wxnotify_core::domain::Recipient::MpOpenid(
            wxnotify_core::domain::OpenId::parse(wxnotify_sandbox::mock_wechat::mp_openid(7))
                .unwrap(),
        ),
        "TPL_ORDER_SHIPPED".parse().unwrap(),
        wxnotify_core::domain::TemplateData::from_pairs(&[("thing1", "x"), ("time2", "y")])
            .unwrap(),
    );
    expired.not_after = Some(chrono::Utc::now() - chrono::Duration::hours(1));
    w.sys.publish(std::slice::from_ref(&expired)).await;
    w.wait_state(std::slice::from_ref(&expired), "dead").await;

    // The four refused jobs are replayed and sent: their second life.
    let (status, body) = w
        .call(
            reqwest::Method::POST,
            "admin/api/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({ "filter": { "errcode": 43101 } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    w.wait_state(&w.refused, "sent").await;

    // A burst 95 minutes ago and deaths 5 hours ago: the charts must put them where they were.
    let burst_at = chrono::Utc::now() - chrono::Duration::minutes(95);
    let died_at = chrono::Utc::now() - chrono::Duration::hours(5);
    let ids: Vec<String> = w.refused.iter().map(|j| j.id.as_str().to_owned()).collect();
    sqlx::query("UPDATE deliveries SET sent_at = $1 WHERE job_id = ANY($2)")
        .bind(burst_at)
        .bind(&ids)
        .execute(&w.sys.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE dead_letters SET created_at = $1 WHERE errcode = 40037")
        .bind(died_at)
        .execute(&w.sys.db.pool)
        .await
        .unwrap();
    // Two of the sent and both 40037 deaths belong to a campaign, whose bar must show them.
    let campaign = running_campaign(&w).await;
    let in_campaign: Vec<String> = ids[..2]
        .iter()
        .cloned()
        .chain(w.unknown_template.iter().map(|j| j.id.as_str().to_owned()))
        .collect();
    sqlx::query("UPDATE deliveries SET campaign_id = $1 WHERE job_id = ANY($2)")
        .bind(campaign)
        .bind(&in_campaign)
        .execute(&w.sys.db.pool)
        .await
        .unwrap();
    let dead_total = w.count("SELECT count(*) FROM dead_letters").await;
    assert_eq!(dead_total, 7, "4 replayed, 2 refused as unknown, 1 expired");

    let mut b = Browser::start("charts").await;
    b.login(&w.base, ADMIN_TOKEN).await;

    // The overview's chart over time: a time axis with labelled ticks on round times, a y axis,
    // the burst in its own bucket (not at the right edge), and the totals in the legend.
    let ticks = b
        .c()
        .find_all(Locator::Css("#activity-chart .x-axis text.tick"))
        .await
        .unwrap();
    assert!(ticks.len() >= 6, "a tick every 30 minutes over 3 hours");
    for t in &ticks {
        let label = t.text().await.unwrap();
        assert!(
            label.len() == 5 && (label.ends_with(":00") || label.ends_with(":30")),
            "tick {label:?}"
        );
    }
    assert!(b.count("#activity-chart .y-axis text.tick").await >= 2);
    let burst = b
        .find("#activity-chart rect.bar[data-series='sent']")
        .await
        .unwrap();
    assert_eq!(
        burst.attr("data-at").await.unwrap().as_deref(),
        Some(bucket_of(burst_at, 5).as_str()),
        "the burst is drawn in the 5 minutes it happened"
    );
    assert_eq!(
        burst.attr("data-count").await.unwrap().as_deref(),
        Some("4")
    );
    assert_eq!(
        sum_of_counts(&b, "#activity-chart rect.bar[data-series='dead']").await,
        5,
        "the last 3 hours saw the four refused die (before their replay) and the expired one"
    );
    assert!(b.text("#activity-chart-legend").await.contains("sent 4"));
    // Outcomes as bars, with the right totals.
    assert_eq!(
        sum_of_counts(&b, "#outcomes-chart rect.bar[data-series='sent']").await,
        4
    );
    assert_eq!(
        sum_of_counts(&b, "#outcomes-chart rect.bar:not([data-series='sent'])").await,
        dead_total
    );
    // Retry tiers: empty ones folded into one row; names break only at dots.
    assert!(
        b.text("#idle-retry-tiers")
            .await
            .contains("retry tiers, empty")
    );
    assert!(
        !b.text("#queues").await.contains(".retry."),
        "no empty tier listed on its own"
    );
    assert!(b.count("#queues td.name wbr").await >= 3);
    b.screenshot("30-overview-charts").await;

    // Dead letters by hour and reason: the two 40037 deaths in the hour they happened, the
    // expired one in this hour; the legend's totals are the open letters of the last day.
    b.click("header a[href='/admin/dead-letters']").await;
    b.expect_path("/admin/dead-letters").await;
    let bars = b
        .c()
        .find_all(Locator::Css("#dead-chart rect.bar"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for bar in bars {
        seen.push((
            bar.attr("data-series").await.unwrap().unwrap(),
            bar.attr("data-at").await.unwrap().unwrap(),
            bar.attr("data-count").await.unwrap().unwrap(),
        ));
    }
    let reason_40037: String =
        sqlx::query_scalar("SELECT reason FROM dead_letters WHERE errcode = 40037 LIMIT 1")
            .fetch_one(&w.sys.db.pool)
            .await
            .unwrap();
    seen.sort();
    let expired_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM dead_letters WHERE reason = 'expired'")
            .fetch_one(&w.sys.db.pool)
            .await
            .unwrap();
    let mut want = vec![
        (reason_40037, bucket_of(died_at, 60), "2".to_owned()),
        (
            "expired".to_owned(),
            bucket_of(expired_at, 60),
            "1".to_owned(),
        ),
    ];
    want.sort();
    assert_eq!(seen, want);
    assert!(b.count("#dead-chart .x-axis text.tick").await >= 8);
    assert_eq!(b.text("#total-count").await, "3");
    // Placeholders are examples, not values.
    let errcode = b.find("#filter input[name=errcode]").await.unwrap();
    assert_eq!(errcode.prop("value").await.unwrap().as_deref(), Some(""));
    assert_eq!(
        errcode.attr("placeholder").await.unwrap().as_deref(),
        Some("e.g. 45009")
    );
    b.screenshot("31-dead-letters-chart").await;

    // A letter that died inside wxnotify is labelled as wxnotify's; WeChat's refusal as WeChat's.
    let internal = letter_url(&w, "SELECT id FROM dead_letters WHERE reason = 'expired'").await;
    b.c().goto(internal.as_str()).await.unwrap();
    assert_eq!(b.text("#message-source").await, "wxnotify's reason");
    b.screenshot("32-letter-internal").await;
    let refused = letter_url(
        &w,
        "SELECT id FROM dead_letters WHERE errcode = 40037 LIMIT 1",
    )
    .await;
    b.c().goto(refused.as_str()).await.unwrap();
    assert_eq!(b.text("#message-source").await, "WeChat's message");

    // The replayed job's page: its last life (sent, no old error), the first one in the history.
    let job = w.refused[0].id.as_str().to_owned();
    b.click("header a[href='/admin/jobs']").await;
    b.fill("#q", &job).await;
    b.click("#find").await;
    assert!(b.text("#life").await.contains("Life 2"));
    assert!(b.text("#deliveries td.state").await.starts_with("sent"));
    assert_eq!(
        b.text("#last-error").await,
        "–",
        "not the first life's 43101"
    );
    let lives = b.text("#lives").await;
    assert!(lives.contains("this life: sent"), "{lives}");
    assert_eq!(b.count("#lives tr.life").await, 2);
    assert!(b.text("#attempts tr.earlier-life").await.contains("43101"));
    b.screenshot("33-replayed-job").await;

    // The campaign's progress as a bar of sent, dead and left.
    let st = wxnotify_services::campaigns::progress::status(&w.sys.db.pool, campaign)
        .await
        .unwrap();
    b.c()
        .goto(w.url(&format!("admin/campaigns/{campaign}")).as_str())
        .await
        .unwrap();
    let part = |name: &'static str| {
        let b = &b;
        async move {
            b.find(&format!("#campaign-progress rect.part[data-part='{name}']"))
                .await
                .unwrap()
                .attr("data-count")
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(part("sent").await, "2");
    assert_eq!(part("dead").await, "2");
    assert_eq!(part("left").await, (st.reachable - 4).to_string());
    assert!(b.text("#campaign-progress-legend").await.contains("left"));
    b.screenshot("34-campaign-progress").await;
    b.close().await;
}

#[tokio::test]
async fn console_in_chromium_a_waiting_campaign_shows_its_name_why_it_waits_and_until_when() {
    let w = AdminWorld::new().await;
    let id = running_campaign(&w).await;
    // Named, and outside its window: 09:00-10:00 Shanghai time, unless that is now.
    let now_shanghai = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .time();
    let nine = chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap();
    let (open, close) = if now_shanghai >= nine && now_shanghai < nine + chrono::Duration::hours(1)
    {
        (
            chrono::NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
            chrono::NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
        )
    } else {
        (nine, nine + chrono::Duration::hours(1))
    };
    sqlx::query(
        "UPDATE campaigns SET name = 'Winter sale', window_start = $2, window_end = $3,
             time_zone = 'Asia/Shanghai' WHERE id = $1",
    )
    .bind(id)
    .bind(open)
    .bind(close)
    .execute(&w.sys.db.pool)
    .await
    .unwrap();
    let status = wxnotify_services::campaigns::progress::status(&w.sys.db.pool, id)
        .await
        .unwrap();
    let waiting = status.waiting.clone().expect("the window is closed");
    let until = waiting.until.expect("it opens at a known time");

    let mut b = Browser::start("campaign-waiting").await;
    b.login(&w.base, ADMIN_TOKEN).await;
    b.c().goto(w.url("admin/campaigns").as_str()).await.unwrap();
    b.wait_count("tr.campaign", 1).await;
    assert_eq!(b.text("tr.campaign td.name").await, "Winter sale");
    b.click(&format!("tr.campaign[data-id='{id}'] a")).await;
    b.expect_path(&format!("/admin/campaigns/{id}")).await;
    assert_eq!(b.text("#campaign-name").await, "Winter sale");
    let shown = b.text("#campaign-waiting").await;
    assert!(shown.contains("outside its send window"), "{shown}");
    let local = until
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M")
        .to_string();
    assert!(
        shown.contains(&local) && shown.contains("Asia/Shanghai"),
        "{shown} names {local}"
    );
    let element = b.find("#campaign-waiting").await.unwrap();
    assert_eq!(
        element.attr("data-reason").await.unwrap().as_deref(),
        Some("window_closed")
    );
    let attr = b
        .find("#campaign-waiting-until")
        .await
        .unwrap()
        .attr("datetime")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&attr).unwrap(),
        until,
        "the machine-readable time is the status's"
    );
    assert!(
        b.text("#n-eta").await.contains("waiting"),
        "no ETA while waiting"
    );
    b.screenshot("campaign-waiting").await;
    b.close().await;
}

#[tokio::test]
async fn console_in_chromium_outcome_unknown_letters_are_replayed_only_when_chosen() {
    let w = AdminWorld::new().await;
    // The four 43101 letters stand for sends whose answer was lost.
    sqlx::query("UPDATE dead_letters SET reason = 'outcome_unknown' WHERE errcode = 43101")
        .execute(&w.sys.db.pool)
        .await
        .unwrap();
    // The admin API: left out and said so unless chosen.
    let (status, dry) = w
        .call(
            reqwest::Method::POST,
            "admin/api/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({"filter": {"errcode": 43101}, "dry_run": true})),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (&dry["affected"], &dry["outcome_unknown_skipped"]),
        (&json!(0), &json!(4)),
        "{dry}"
    );
    assert!(
        dry["warning"]
            .as_str()
            .unwrap()
            .contains("may have reached the person already"),
        "{dry}"
    );
    let (_, dry) = w
        .call(
            reqwest::Method::POST,
            "admin/api/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({"filter": {"errcode": 43101}, "dry_run": true, "include_outcome_unknown": true})),
        )
        .await;
    assert_eq!(
        (&dry["affected"], &dry["outcome_unknown_included"]),
        (&json!(4), &json!(4)),
        "{dry}"
    );
    assert_eq!(dry["letters"].as_array().unwrap().len(), 4, "{dry}");

    let id: i64 = w
        .count("SELECT min(id) FROM dead_letters WHERE reason = 'outcome_unknown'")
        .await;
    let replayed = |id: i64| {
        let pool = w.sys.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT replayed_at IS NOT NULL FROM dead_letters WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let mut b = Browser::start("outcome-unknown").await;
    b.login(&w.base, ADMIN_TOKEN).await;
    b.c()
        .goto(w.url(&format!("admin/dead-letters/{id}")).as_str())
        .await
        .unwrap();
    b.click("#replay-one").await;
    b.expect_path("/admin/dead-letters/confirm").await;
    let warning = b.text("#outcome-unknown-warning").await;
    assert!(
        warning.contains("may have reached the person already"),
        "{warning}"
    );
    b.screenshot("outcome-unknown-confirm").await;
    // Confirmed without choosing them: nothing is replayed.
    b.click("#confirm").await;
    b.expect_path("/admin/dead-letters").await;
    assert!(!replayed(id).await, "left out without the choice");
    // Chosen explicitly: replayed.
    b.c()
        .goto(w.url(&format!("admin/dead-letters/{id}")).as_str())
        .await
        .unwrap();
    b.click("#replay-one").await;
    b.expect_path("/admin/dead-letters/confirm").await;
    b.click("#include-outcome-unknown").await;
    b.click("#confirm").await;
    b.expect_path("/admin/dead-letters").await;
    assert!(replayed(id).await, "replayed once chosen");
    b.close().await;
}
