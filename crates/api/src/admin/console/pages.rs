//! The console's HTML (maud): one layout and one function per page. No script; forms only.
//! Tables scroll sideways on a phone; buttons that change anything are rendered for the admin
//! role only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::admin::actions::ActionReport;
use crate::admin::api::{DeadLetterDetail, DeliveryLookup};
use crate::admin::console::charts::{self, Series, Window};
use crate::admin::console::filter::FilterForm;
use crate::admin::console::session::Session;
use crate::admin::queues::QueueDepth;
use crate::admin::store::{Activity, AppRow, MinuteCount, WorkerRow};
use wxnotify_services::dlq::AttemptRow;
use wxnotify_services::dlq::query::{Groups, Page};
use wxnotify_services::dlq::store::LifeRow;

const CSS: &str = r#"
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:500}
header .brand{font-weight:700;margin-right:.5rem}
header .me{margin-left:auto;font-size:.85rem;opacity:.85;display:flex;gap:.6rem;align-items:center}
header form{margin:0}
header button{background:none;border:1px solid #fff6;color:#fff;padding:.15rem .5rem;border-radius:4px;cursor:pointer}
main{padding:1rem;max-width:1200px;margin:0 auto}
h1{font-size:1.35rem;margin:.2rem 0 1rem}
h2{font-size:1.05rem;margin:1.2rem 0 .5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:1rem}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:.8rem 1rem;overflow-x:auto;min-width:0}
td.name{white-space:normal;word-break:normal;overflow-wrap:normal}
.scroll{overflow-x:auto;background:#fff;border:1px solid #e1e4ea;border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #eef0f3;vertical-align:top;white-space:nowrap}
td.msg{white-space:normal;min-width:16rem;max-width:32rem;word-break:break-word}
th{background:#fafbfc;font-weight:600}
a{color:#1a5fd0}
.filters{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:.5rem;background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:.8rem}
label{display:flex;flex-direction:column;font-size:.8rem;color:#555;gap:.15rem}
label.check{flex-direction:row;align-items:center;gap:.4rem}
input[type=text],input[type=password],input:not([type]),textarea,select{font:inherit;padding:.35rem .45rem;border:1px solid #c9ced8;border-radius:5px;width:100%}
button,.button{font:inherit;padding:.4rem .8rem;border-radius:5px;border:1px solid #1a5fd0;background:#1a5fd0;color:#fff;cursor:pointer;text-decoration:none;display:inline-block}
button.secondary,.button.secondary{background:#fff;color:#1a5fd0}
button.danger{background:#c0392b;border-color:#c0392b}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
.notice{background:#e8f5e9;border:1px solid #a5d6a7;padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}
.error{background:#fdecea;border:1px solid #f5b7b1;padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}
.groups{display:flex;flex-wrap:wrap;gap:.4rem;margin:.4rem 0}
.chip{background:#fff;border:1px solid #c9ced8;border-radius:999px;padding:.15rem .6rem;font-size:.85rem;text-decoration:none;color:#1d2433}
.chip b{color:#1a5fd0}
.muted{color:#777;font-size:.85rem}
pre{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:.8rem;overflow-x:auto;font-size:.85rem}
.paused{color:#c0392b;font-weight:600}
.alert{background:#fdecea;border:1px solid #f5b7b1;padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}
svg.chart{width:100%;height:auto;background:#fff;border:1px solid #e1e4ea;border-radius:8px;display:block}
svg.bar{width:100%;height:22px;border-radius:4px;display:block}
.legend{display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:center;margin:.4rem 0 .8rem;font-size:.85rem}
.legend .key i{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-1px}
::placeholder{color:#9aa1ad;font-style:italic;opacity:1}
.login{max-width:360px;margin:10vh auto;background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:1.2rem}
.login form{display:flex;flex-direction:column;gap:.8rem}
@media (max-width:600px){main{padding:.6rem}th,td{padding:.35rem .4rem}}
"#;

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "–".into())
}

/// The page frame, with the navigation and the logout form.
pub fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wxnotify" }
                style { (PreEscaped(CSS)) }
            }
            body {
                @if let Some(s) = session {
                    header {
                        span.brand { "wxnotify" }
                        a href="/admin" { "Overview" }
                        a href="/admin/dead-letters" { "Dead letters" }
                        a href="/admin/jobs" { "Job lookup" }
                        a href="/admin/campaigns" { "Campaigns" }
                        a href="/admin/templates" { "Templates" }
                        span.me {
                            span #actor { (s.principal.actor) }
                            " · "
                            span #role { (s.principal.role.as_str()) }
                            form method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A 403 page.
pub fn refused(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        layout("Refused", None, html! { h1 { "Refused" } p.error #refused { (why) } p { a href="/admin" { "Back to the console" } } }),
    )
        .into_response()
}

/// The login form.
pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            div.login {
                h1 { "wxnotify ops console" }
                @if let Some(e) = error { p.error #login-error { (e) } }
                form method="post" action="/admin/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Your admin token (personal wxa_…, or break-glass)" input #token type="password" name="token" autocomplete="current-password" required; }
                    button #login type="submit" { "Log in" }
                }
            }
        },
    )
}

/// The overview's chart over time: sends and deaths in 5-minute buckets over the last `hours`,
/// a tick every 30 minutes.
fn activity_chart(a: &Activity, hours: u32) -> Markup {
    let window = Window::ending(
        Utc::now(),
        chrono::Duration::minutes(5),
        hours as usize * 12,
        chrono::Duration::minutes(30),
    );
    let points = |v: &[MinuteCount]| v.iter().map(|m| (m.minute, m.count)).collect();
    let series = [
        Series {
            name: "sent".into(),
            color: charts::SENT,
            points: points(&a.sent),
        },
        Series {
            name: "dead".into(),
            color: charts::DEAD,
            points: points(&a.dead),
        },
    ];
    charts::time_bars(
        "activity-chart",
        &format!("sends and deaths per 5 minutes, last {hours} hours"),
        &window,
        &series,
    )
}

/// The overview's outcomes as bars: `sent` first, then each dead reason, largest first.
fn outcomes_chart(outcomes: &[(String, i64)]) -> Markup {
    let mut palette = charts::PALETTE.iter().skip(1).cycle();
    let items: Vec<(String, i64, &'static str)> = outcomes
        .iter()
        .map(|(k, n)| {
            let color = if k == "sent" {
                charts::SENT
            } else {
                palette.next().copied().unwrap_or(charts::DEAD)
            };
            (k.clone(), *n, color)
        })
        .collect();
    charts::total_bars("outcomes-chart", "outcomes, last 24 hours", &items)
}

/// A queue's name with a line break allowed after each dot only, so a narrow column never cuts
/// it mid-word.
fn queue_name(name: &str) -> Markup {
    let parts: Vec<&str> = name.split_inclusive('.').collect();
    html! { @for p in parts { (p) wbr; } }
}

/// The queues as the overview lists them: lanes and dead letters always; a retry tier only when
/// it holds messages; the empty tiers folded into one row.
fn queue_rows(queues: &[QueueDepth]) -> Markup {
    let is_tier = |q: &QueueDepth| q.name.contains(".retry.");
    let (tiers, others): (Vec<&QueueDepth>, Vec<&QueueDepth>) =
        queues.iter().partition(|q| is_tier(q));
    let (busy, idle): (Vec<&QueueDepth>, Vec<&QueueDepth>) =
        tiers.into_iter().partition(|q| q.messages.unwrap_or(0) > 0);
    let tier_name = |q: &QueueDepth| q.name.rsplit(".retry.").next().unwrap_or("").to_owned();
    html! {
        @for q in others.iter().chain(&busy) {
            tr.queue { td.name { (queue_name(&q.name)) } td { (opt(&q.messages)) } td { (opt(&q.consumers)) } }
        }
        @if !idle.is_empty() {
            tr.queue #idle-retry-tiers {
                td.name { (idle.len()) " retry tiers, empty" br; span.muted { (idle.iter().map(|q| tier_name(q)).collect::<Vec<_>>().join(" · ")) } }
                td { "0" }
                td { "–" }
            }
        }
    }
}

/// Everything the overview shows.
pub struct Overview {
    pub activity: Activity,
    pub outcomes: Vec<(String, i64)>,
    pub queues: Result<Vec<QueueDepth>, String>,
    pub workers: Vec<WorkerRow>,
    pub apps: Vec<AppRow>,
    pub hours: u32,
}

/// `/admin`.
pub fn overview(s: &Session, o: &Overview, notice: Option<&str>) -> Markup {
    layout(
        "Overview",
        Some(s),
        html! {
            h1 { "Overview" }
            @if let Some(n) = notice { p.notice #notice { (n) } }
            // An app WeChat refuses sends nothing until someone acts: say it first.
            @for a in &o.apps {
                @if let Some(s) = &a.suspension {
                    div.alert.suspended {
                        strong { "App " (a.name) " sends nothing: WeChat refuses the account (errcode " (s.errcode) ")." }
                        " Its jobs wait; none dies. To fix: " (s.fix()) "."
                    }
                }
            }
            h2 { "Sends and deaths over time" }
            (activity_chart(&o.activity, o.hours))
            div.cards {
                div.card {
                    h2 { "Outcomes, last 24 hours" }
                    (outcomes_chart(&o.outcomes))
                }
                div.card {
                    h2 { "Queues" }
                    @match &o.queues {
                        Ok(qs) => table #queues { tr { th { "queue" } th { "ready" } th { "consumers" } }
                            (queue_rows(qs)) },
                        Err(e) => p.error { "RabbitMQ did not answer: " (e) },
                    }
                }
                div.card {
                    h2 { "Live workers (" (o.workers.len()) ")" }
                    table #workers { tr { th { "host" } th { "pid" } th { "since" } }
                        @for w in &o.workers { tr { td { (w.hostname) } td { (w.pid) } td { (time(&w.started_at)) } } } }
                }
            }
            h2 { "Apps" }
            div.scroll {
                table #apps {
                    tr { th { "app" } th { "sending" } th { "sent today" } th { "dead today" } @if s.is_admin() { th {} } }
                    @for a in &o.apps {
                        tr {
                            td { (a.name) }
                            td {
                                @if let Some(s) = &a.suspension {
                                    span.paused { "paused: WeChat refuses the account (errcode " (s.errcode) ")" } br;
                                    span.muted { "since " (time(&s.since)) "; WeChat said: " (s.errmsg) } br;
                                    span { "To fix: " (s.fix()) }
                                } @else if let Some(until) = &a.paused_until {
                                    span.paused { "paused until " (time(until)) } br; span.muted { (opt(&a.pause_reason)) }
                                } @else { "sending" }
                            }
                            td { (a.sends_today) }
                            td { (a.dead_today) }
                            @if s.is_admin() {
                                td {
                                    @let (verb, path) = if a.paused { ("Resume", "resume") } else { ("Pause 1 h", "pause") };
                                    form method="post" action=(format!("/admin/apps/{}/{path}", a.name)) {
                                        input type="hidden" name="csrf" value=(s.csrf);
                                        button.secondary type="submit" { (verb) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Everything the dead-letter list shows.
pub struct LetterList<'a> {
    pub form: &'a FilterForm,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub page: Page,
    pub total: i64,
    pub groups: Groups,
    pub after: Option<i64>,
    /// The matching letters of the last day by hour and reason: `(hour, reason, count)`.
    pub by_hour: Vec<(DateTime<Utc>, String, i64)>,
}

/// The dead-letter page's chart: the matching letters of the last 24 hours by hour, stacked by
/// reason, a tick every 3 hours.
fn dead_chart(by_hour: &[(DateTime<Utc>, String, i64)]) -> Markup {
    let window = Window::ending(
        Utc::now(),
        chrono::Duration::hours(1),
        24,
        chrono::Duration::hours(3),
    );
    let mut series: Vec<Series> = Vec::new();
    for (hour, reason, n) in by_hour {
        match series.iter_mut().find(|s| &s.name == reason) {
            Some(s) => s.points.push((*hour, *n)),
            None => series.push(Series {
                name: reason.clone(),
                color: charts::PALETTE[series.len().min(charts::PALETTE.len() - 1)],
                points: vec![(*hour, *n)],
            }),
        }
    }
    charts::time_bars(
        "dead-chart",
        "dead letters per hour by reason, last 24 hours",
        &window,
        &series,
    )
}

fn filter_form(f: &FilterForm) -> Markup {
    html! {
        form #filter method="get" action="/admin/dead-letters" {
            div.filters {
                label { "App" input type="text" name="app" value=(f.app) placeholder="e.g. default"; }
                label { "Reason" input type="text" name="reason" value=(f.reason) placeholder="e.g. retries_exhausted"; }
                label { "Errcode" input type="text" name="errcode" value=(f.errcode) inputmode="numeric" placeholder="e.g. 45009"; }
                label { "Template" input type="text" name="template" value=(f.template) placeholder="e.g. a template id"; }
                label { "Campaign" input type="text" name="campaign" value=(f.campaign) placeholder="e.g. a campaign id"; }
                label { "Since (UTC)" input type="text" name="since" value=(f.since) placeholder="e.g. 2026-11-30T08:00"; }
                label { "Until (UTC)" input type="text" name="until" value=(f.until) placeholder="e.g. 2026-11-30"; }
                label { "Text in job or message" input type="text" name="text" value=(f.text) placeholder="e.g. a rid or an openid"; }
                label.check { input type="checkbox" name="include_replayed" checked[f.include_replayed]; "include replayed" }
                div { button #apply type="submit" { "Filter" } " " a.button.secondary href="/admin/dead-letters" { "Clear" } }
            }
        }
    }
}

fn with(f: &FilterForm, key: &str, value: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(f.to_url_query().as_bytes())
        .into_owned()
        .collect();
    pairs.retain(|(k, _)| k != key && k != "max_id");
    pairs.push((key.into(), value.into()));
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(pairs);
    format!("/admin/dead-letters?{}", s.finish())
}

/// `/admin/dead-letters`.
pub fn letters(s: &Session, l: &LetterList<'_>) -> Markup {
    let admin = s.is_admin();
    layout(
        "Dead letters",
        Some(s),
        html! {
            h1 { "Dead letters" }
            @if let Some(n) = &l.notice { p.notice #notice { (n) } }
            @if let Some(e) = &l.error { p.error #filter-error { (e) } }
            (filter_form(l.form))
            h2 { "The last 24 hours, by hour and reason" }
            (dead_chart(&l.by_hour))
            p #total { b #total-count { (l.total) } " matching" @if !l.form.include_replayed { " (open letters)" } }
            div.groups #by-errcode {
                span.muted { "by errcode:" }
                @for g in &l.groups.by_errcode {
                    @let key = g.key.clone().unwrap_or_default();
                    @if key.is_empty() { span.chip { "none " b { (g.count) } } }
                    @else { a.chip href=(with(l.form, "errcode", &key)) { (key) " " b { (g.count) } } }
                }
            }
            div.groups #by-reason {
                span.muted { "by reason:" }
                @for g in &l.groups.by_reason {
                    @let key = g.key.clone().unwrap_or_default();
                    a.chip href=(with(l.form, "reason", &key)) { (key) " " b { (g.count) } }
                }
            }
            form #letters-form method="post" action="/admin/dead-letters/confirm" {
                @if admin {
                    input type="hidden" name="csrf" value=(s.csrf);
                    (l.form.hidden_fields())
                    div.actions {
                        button #replay-selected type="submit" name="op" value="replay:selected" { "Replay selected" }
                        button.danger #purge-selected type="submit" name="op" value="purge:selected" { "Purge selected" }
                        button.secondary #replay-all type="submit" name="op" value="replay:filter" { "Replay all " (l.total) " matching…" }
                        button.secondary #purge-all type="submit" name="op" value="purge:filter" { "Purge all " (l.total) " matching…" }
                    }
                }
                div.scroll {
                    table #letters {
                        tr { @if admin { th {} } th { "id" } th { "died (UTC)" } th { "app" } th { "reason" } th { "errcode" } th { "template" } th { "attempts" } th { "message" } }
                        @for d in &l.page.letters {
                            tr.letter data-id=(d.id) {
                                @if admin { td { input type="checkbox" name="id" value=(d.id) aria-label=(format!("select {}", d.id)); } }
                                td { a href=(format!("/admin/dead-letters/{}", d.id)) { (d.id) } }
                                td { (time(&d.created_at)) @if d.replayed_at.is_some() { br; span.muted { "replayed" } } }
                                td { (opt(&d.app)) }
                                td { (d.reason) }
                                td { @if let Some(e) = d.errcode { (e) } @else { span.muted.internal { "wxnotify" } } }
                                td { (d.job.as_ref().and_then(|j| j.get("template_id")).and_then(|t| t.as_str()).unwrap_or("–")) }
                                td { (d.attempts) }
                                td.msg { (d.errmsg.as_deref().unwrap_or("").chars().take(160).collect::<String>()) }
                            }
                        }
                    }
                }
            }
            @if l.page.letters.is_empty() { p.muted #empty { "No dead letters match." } }
            div.actions {
                @if l.after.is_some() { a.button.secondary href=(format!("/admin/dead-letters?{}", l.form.to_url_query())) { "Newest" } }
                @if let Some(next) = l.page.next_after { a.button.secondary #older href=(with(l.form, "after", &next.to_string())) { "Older →" } }
            }
        },
    )
}

/// What a confirmation page proposes.
pub struct Proposal<'a> {
    pub op: &'a str,
    pub scope: &'a str,
    pub ids: &'a [i64],
    pub form: &'a FilterForm,
    pub report: &'a ActionReport,
}

/// The dry run's count and the confirmation form.
pub fn confirm(s: &Session, p: &Proposal<'_>) -> Markup {
    let verb = if p.op == "replay" { "Replay" } else { "Purge" };
    let mut pinned = p.form.clone();
    if let Some(max_id) = p.report.max_id {
        pinned.max_id = max_id.to_string();
    }
    let back = format!("/admin/dead-letters?{}", p.form.to_url_query());
    layout(
        "Confirm",
        Some(s),
        html! {
            h1 { "Confirm: " (verb) }
            p #dry-run {
                "Dry run: " b #dry-run-count { (p.report.affected) } " of " (p.report.matched) " dead letters "
                @if p.scope == "filter" { "matching the filter" } @else { "selected" }
                " would be " @if p.op == "replay" { "published again (same job ids)" } @else { "deleted" } "."
            }
            @if p.report.outcome_unknown_skipped > 0 {
                p.error #outcome-unknown-warning {
                    b { (p.report.outcome_unknown_skipped) " of them died outcome_unknown. " }
                    "WeChat may have accepted those sends before their answer was lost: some of them may have reached the person already, and replaying sends them a second time. "
                    "They are left out unless you choose them below."
                }
            }
            @let others: Vec<_> = p.report.skipped.iter().filter(|n| n.why != wxnotify_services::dlq::replay::OUTCOME_UNKNOWN_LEFT_OUT).collect();
            @if !others.is_empty() {
                p.muted { (others.len()) " cannot be replayed:" }
                ul { @for n in others.iter().take(10) { li { (n.id) ": " (n.why) } } }
            }
            @if p.scope == "filter" && !p.form.is_empty() { p.muted { "Filter: " code { (p.form.to_url_query()) } } }
            form method="post" action="/admin/dead-letters/act" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="op" value=(format!("{}:{}", p.op, p.scope));
                @if p.scope == "filter" { (pinned.hidden_fields()) }
                @else { (p.form.hidden_fields()) @for id in p.ids { input type="hidden" name="id" value=(id); } }
                @if p.report.outcome_unknown_skipped > 0 {
                    p { label {
                        input #include-outcome-unknown type="checkbox" name="include_outcome_unknown" value="yes";
                        " Replay the " (p.report.outcome_unknown_skipped) " outcome_unknown letters too, knowing some may reach the person a second time"
                    } }
                }
                div.actions {
                    button #confirm .danger[p.op == "purge"] type="submit" disabled[p.report.affected == 0 && p.report.outcome_unknown_skipped == 0] { (verb) " " (p.report.affected) @if p.report.outcome_unknown_skipped > 0 { " (+ " (p.report.outcome_unknown_skipped) " if chosen)" } }
                    a.button.secondary #cancel href=(back) { "Cancel" }
                }
            }
        },
    )
}

/// `/admin/dead-letters/{id}`.
pub fn letter(s: &Session, d: &DeadLetterDetail) -> Markup {
    let l = &d.dead_letter;
    let job = l
        .job
        .as_ref()
        .map(|j| serde_json::to_string_pretty(j).unwrap_or_default())
        .or_else(|| l.raw.clone())
        .unwrap_or_default();
    layout(
        &format!("Dead letter {}", l.id),
        Some(s),
        html! {
            h1 { "Dead letter " (l.id) }
            div.cards {
                div.card {
                    table #letter {
                        tr { th { "job id" } td { @if let Some(j) = &l.job_id { a href=(job_link(j, l.app.as_deref())) { (j) } } @else { "–" } } }
                        tr { th { "app" } td { (opt(&l.app)) } }
                        tr { th { "reason" } td #reason { (l.reason) } }
                        tr { th { "errcode" } td { @if let Some(e) = l.errcode { (e) } @else { span.muted { "none: wxnotify's own" } } } }
                        tr { th { "died" } td { (time(&l.created_at)) " UTC" } }
                        tr { th { "attempts" } td { (l.attempts) " (" (l.source) ")" } }
                        tr { th { "replayed" } td { (l.replayed_at.as_ref().map(time).unwrap_or_else(|| "no".into())) } }
                        @if let Some(dl) = &d.delivery { tr { th { "job now" } td #job-state { (dl.state) } } }
                    }
                }
                @if l.errcode.is_some() {
                    div.card #message { h2 #message-source { "WeChat's message" } p.msg { (l.errmsg.as_deref().unwrap_or("–")) } }
                } @else {
                    div.card #message {
                        h2 #message-source { "wxnotify's reason" }
                        p.msg { (l.errmsg.as_deref().unwrap_or("–")) }
                        p.muted { "It died inside wxnotify (" (l.reason) "): WeChat gave no errcode for it." }
                    }
                }
            }
            @if s.is_admin() && l.replayed_at.is_none() {
                form method="post" action="/admin/dead-letters/confirm" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="id" value=(l.id);
                    div.actions {
                        button #replay-one type="submit" name="op" value="replay:selected" { "Replay…" }
                        button.danger #purge-one type="submit" name="op" value="purge:selected" { "Purge…" }
                    }
                }
            }
            h2 { "Attempts" }
            div.scroll {
                table #attempts {
                    tr { th { "#" } th { "at (UTC)" } th { "outcome" } th { "errcode" } th { "rid" } th { "errmsg" } }
                    @for a in &d.attempts {
                        tr { td { (a.attempt) } td { (time(&a.at)) } td { (a.outcome) } td { (opt(&a.errcode)) } td { (opt(&a.rid)) } td.msg { (a.errmsg.as_deref().unwrap_or("")) } }
                    }
                }
            }
            h2 { "Job" }
            pre #job { (job) }
        },
    )
}

/// One job's lives, for its page: a replayed job shows the life it is in, and the earlier ones
/// in its history.
pub struct JobLives {
    /// The life it is in (1, then +1 per replay).
    pub life: i32,
    /// The lives that ended in a dead letter, oldest first.
    pub ended: Vec<LifeRow>,
    /// Its failed attempts, of every life, oldest first.
    pub attempts: Vec<AttemptRow>,
}

impl JobLives {
    /// The last failed attempt of the life the job is in, if it had one.
    fn last_failure(&self) -> Option<&AttemptRow> {
        self.attempts.iter().rev().find(|a| a.life == self.life)
    }
}

/// An errcode and message; a death without an errcode is wxnotify's, and says so.
fn error_text(errcode: Option<i64>, errmsg: Option<&str>) -> Markup {
    html! {
        @match errcode {
            Some(code) => { (code) " " (errmsg.unwrap_or("")) }
            None => @if let Some(m) = errmsg { span.muted { "wxnotify: " } (m) },
        }
    }
}

/// `/admin/jobs`.
pub fn jobs(
    s: &Session,
    q: &str,
    found: Option<Result<DeliveryLookup, String>>,
    lives: Option<&JobLives>,
) -> Markup {
    layout(
        "Job lookup",
        Some(s),
        html! {
            h1 { "Job lookup" }
            form #lookup method="get" action="/admin/jobs" {
                div.filters {
                    label { "Job id, or a recipient (openid / unionid)" input #q type="text" name="q" value=(q) placeholder="e.g. order-1042, or an openid"; }
                    div { button #find type="submit" { "Find" } }
                }
            }
            @match found {
                None => {},
                Some(Err(e)) => p.error { (e) },
                Some(Ok(found)) => {
                    @if found.deliveries.is_empty() { p.muted #not-found { "No job with this id or recipient is in the ledger." } }
                    @else {
                        @if let Some(l) = lives.filter(|l| l.life > 1) {
                            p.notice #life {
                                "Life " b { (l.life) } ": replayed " (l.life - 1) " time" @if l.life > 2 { "s" }
                                ". What follows is this life; the earlier ones are in the history below."
                            }
                        }
                        div.scroll {
                            table #deliveries {
                                tr { th { "job id" } th { "app" } th { "state" } th { "recipient" } th { "template" } th { "attempts" } th { "channel" } th { "msgid" } th { "receipt" } th { "updated (UTC)" }
                                    th { @if lives.is_some() { "last error (this life)" } @else { "last error" } } }
                                @for d in &found.deliveries {
                                    tr {
                                        td { a href=(job_link(&d.job_id, Some(&d.app))) { (d.job_id) } }
                                        td { (d.app) }
                                        td.state { b { (d.state) } @if let Some(r) = &d.dead_reason { br; span.muted { (r) } } }
                                        td { (d.recipient_kind) ": " (d.recipient) }
                                        td { (d.template_id) }
                                        td { (d.attempts) }
                                        td.channel { (opt(&d.channel)) }
                                        td { (opt(&d.msgid)) }
                                        td { (opt(&d.receipt_status)) }
                                        td { (time(&d.updated_at)) }
                                        @if let Some(l) = lives {
                                            td.msg #last-error { @if let Some(a) = l.last_failure() { (error_text(a.errcode, a.errmsg.as_deref())) } @else { "–" } }
                                        } @else {
                                            td.msg { (error_text(d.last_errcode, d.last_errmsg.as_deref())) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if !found.dead_letter_ids.is_empty() {
                        p { "Dead letters: " @for id in &found.dead_letter_ids { a href=(format!("/admin/dead-letters/{id}")) { (id) } " " } }
                    }
                    @if let Some(l) = lives.filter(|l| !l.ended.is_empty()) {
                        h2 { "History" }
                        div.scroll { table #lives { tr { th { "life" } th { "ended (UTC)" } th { "how" } th { "attempts by then" } th { "replayed (UTC)" } }
                            @for e in &l.ended { tr.life { td { (e.life) } td { (time(&e.ended_at)) } td { "dead: " (e.reason) " (" a href=(format!("/admin/dead-letters/{}", e.dead_letter_id)) { "letter " (e.dead_letter_id) } ")" } td { (e.attempts) } td { (e.replayed_at.as_ref().map(time).unwrap_or_else(|| "–".into())) } } }
                            @if l.ended.last().is_some_and(|e| e.life < l.life) { tr.life.current { td { (l.life) } td { "–" } td { "this life: " @for d in found.deliveries.iter().take(1) { b { (d.state) } } } td { "–" } td { "–" } } }
                        } }
                    }
                    @if let Some(l) = lives.filter(|l| !l.attempts.is_empty()) {
                        h2 { "Failed attempts" }
                        div.scroll { table #attempts { tr { th { "#" } th { "life" } th { "at (UTC)" } th { "outcome" } th { "errcode" } th { "message" } }
                            @for a in &l.attempts { tr.earlier-life[a.life < l.life] { td { (a.attempt) } td { (a.life) } td { (time(&a.at)) } td { (a.outcome) } td { (opt(&a.errcode)) } td.msg { @if a.errcode.is_none() && a.errmsg.is_some() { span.muted { "wxnotify: " } } (a.errmsg.as_deref().unwrap_or("")) } } } } }
                    } @else if lives.is_none() && !found.attempts.is_empty() {
                        h2 { "Attempts" }
                        div.scroll { table #attempts { tr { th { "#" } th { "at (UTC)" } th { "outcome" } th { "errcode" } th { "rid" } th { "errmsg" } }
                            @for a in &found.attempts { tr { td { (a.attempt) } td { (time(&a.at)) } td { (a.outcome) } td { (opt(&a.errcode)) } td { (opt(&a.rid)) } td.msg { (a.errmsg.as_deref().unwrap_or("")) } } } } }
                    }
                }
            }
        },
    )
}

/// The jobs page of one job: its id within its app (job ids are per app).
fn job_link(job_id: &str, app: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("q", job_id);
    if let Some(app) = app {
        q.append_pair("app", app);
    }
    format!("/admin/jobs?{}", q.finish())
}
