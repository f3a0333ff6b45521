//! `sync-followers` against the fake WeChat: paging and the three end-of-list forms, resuming,
//! followers who leave, retries, and one sync per app at a time.

use wxnotify::commands::EXIT_UNAVAILABLE;
use wxnotify_sandbox::mock_wechat::{self, EndOfList, Endpoint, Fault, FaultRule, MockConfig};
use wxnotify_services::followers::{SyncError, SyncOptions};

use crate::users_support::{World, expected_followers};

fn several_pages(end_of_list: EndOfList) -> MockConfig {
    MockConfig {
        followers: 2_345,
        page_size: 500,
        end_of_list,
        ..MockConfig::default()
    }
}

async fn subscribed_rows(world: &World) -> i64 {
    world
        .count("SELECT count(*) FROM oa_followers WHERE subscribed")
        .await
}

#[tokio::test]
async fn a_sync_across_several_pages_stores_every_follower_whatever_the_end_of_list_form() {
    for form in [
        EndOfList::EmptyNextOpenid,
        EndOfList::NoData,
        EndOfList::ZeroCount,
    ] {
        let cfg = several_pages(form);
        let (following, with_unionid) = expected_followers(&cfg);
        let world = World::new(cfg).await;
        let report = world
            .sync(&World::fast_options())
            .await
            .expect("the sync works");
        assert!(report.completed, "{form:?}: {report:?}");
        assert!(!report.resumed);
        assert_eq!(report.followers, following, "{form:?}");
        assert_eq!(report.with_unionid, with_unionid, "{form:?}");
        assert_eq!(report.without_unionid, following - with_unionid);
        assert_eq!(report.pages, following.div_ceil(500), "{form:?}");
        assert_eq!(subscribed_rows(&world).await, following as i64, "{form:?}");
        let joined = world
            .count("SELECT count(*) FROM oa_followers WHERE unionid IS NOT NULL AND subscribed")
            .await;
        assert_eq!(joined, with_unionid as i64);
        // 100 openids per batchget call, never one call per follower.
        let stats = world.mock.stats();
        assert_eq!(stats.calls_to(Endpoint::UserInfo), 0);
        assert!(stats.calls_to(Endpoint::UserInfoBatch) <= following.div_ceil(100) + 5);
        assert!(
            report
                .summary()
                .contains("not bound to a WeChat Open Platform account")
        );
    }
}

#[tokio::test]
async fn an_interrupted_sync_resumes_from_the_first_page_not_stored() {
    let cfg = several_pages(EndOfList::NoData);
    let (following, _) = expected_followers(&cfg);
    let world = World::new(cfg).await;
    let first = world
        .sync(&SyncOptions {
            max_pages: Some(2),
            ..World::fast_options()
        })
        .await
        .unwrap();
    assert!(!first.completed);
    assert_eq!(first.followers, 1_000);
    assert_eq!(subscribed_rows(&world).await, 1_000);

    // WeChat fails for good in the middle of the next run: the run stops, what it stored stays.
    world.mock.set_faults(
        FaultRule::new(Fault::HttpStatus(502))
            .on(Endpoint::UserInfoBatch)
            .into(),
    );
    let err = world.sync(&World::fast_options()).await.unwrap_err();
    assert!(matches!(err, SyncError::Wechat { .. }), "{err}");
    assert_eq!(
        wxnotify::commands::sync_followers::exit_code(&err),
        EXIT_UNAVAILABLE
    );
    world.mock.clear_faults();
    // The failed run's other batchget calls were in flight when it gave up: they may still reach
    // the fake after the error returned. Count from the moment they all have.
    let batch_calls_before = settled_calls(&world, Endpoint::UserInfoBatch).await;

    let last = world.sync(&World::fast_options()).await.unwrap();
    assert!(last.completed && last.resumed, "{last:?}");
    assert_eq!(last.pass_id, first.pass_id);
    assert_eq!(last.followers, following);
    assert_eq!(last.followers_this_run, following - 1_000);
    assert_eq!(subscribed_rows(&world).await, following as i64);
    // Only the pages not stored were fetched again.
    let batch_calls = world.mock.stats().calls_to(Endpoint::UserInfoBatch) - batch_calls_before;
    assert_eq!(batch_calls, (following - 1_000).div_ceil(100));
    let passes = world
        .count("SELECT count(*) FROM follower_sync_passes")
        .await;
    assert_eq!(passes, 1);
}

/// The fake's call count for `endpoint` once it has stopped moving (no new call for 300 ms).
async fn settled_calls(world: &World, endpoint: Endpoint) -> u64 {
    let mut last = world.mock.stats().calls_to(endpoint);
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = world.mock.stats().calls_to(endpoint);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("calls to {endpoint:?} kept arriving for 15 s");
}

#[tokio::test]
async fn followers_who_left_between_two_syncs_are_marked_unsubscribed_only_after_a_complete_pass() {
    let cfg = several_pages(EndOfList::EmptyNextOpenid);
    let (following, _) = expected_followers(&cfg);
    let world = World::new(cfg).await;
    world.sync(&World::fast_options()).await.unwrap();
    for person in [0, 1_500, 2_300] {
        world.mock.unsubscribe(person);
    }
    let partial = world
        .sync(&SyncOptions {
            max_pages: Some(1),
            ..World::fast_options()
        })
        .await
        .unwrap();
    assert!(!partial.completed);
    assert_eq!(
        subscribed_rows(&world).await,
        following as i64,
        "nobody is marked before the end"
    );

    let done = world.sync(&World::fast_options()).await.unwrap();
    assert!(done.completed);
    assert_eq!(done.unsubscribed, 3);
    assert_eq!(subscribed_rows(&world).await, following as i64 - 3);
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT oa_openid FROM oa_followers WHERE NOT subscribed AND oa_openid = ANY($1) ORDER BY 1",
    )
    .bind(vec![mock_wechat::oa_openid(0), mock_wechat::oa_openid(1_500), mock_wechat::oa_openid(2_300)])
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(left.len(), 3);
}

#[tokio::test]
async fn transient_errors_and_a_rejected_token_are_retried_without_losing_followers() {
    let cfg = MockConfig {
        followers: 1_000,
        page_size: 300,
        ..MockConfig::default()
    };
    let (following, _) = expected_followers(&cfg);
    let world = World::new(cfg).await;
    world.tokens.get(&world.app).await.unwrap();
    world.mock.invalidate_tokens();
    world
        .mock
        .set_faults(wxnotify_sandbox::mock_wechat::FaultPlan {
            rules: vec![
                FaultRule::new(Fault::Errcode(-1))
                    .on(Endpoint::UserInfoBatch)
                    .times(3),
                FaultRule::new(Fault::HttpStatus(502))
                    .on(Endpoint::UserGet)
                    .times(2),
                FaultRule::new(Fault::DropConnection)
                    .on(Endpoint::UserInfoBatch)
                    .times(1),
            ],
        });
    let report = world
        .sync(&World::fast_options())
        .await
        .expect("retries win");
    assert!(report.completed);
    assert_eq!(report.followers, following);
    assert_eq!(world.mock.stats().faults_injected, 6);
    assert_eq!(subscribed_rows(&world).await, following as i64);
}

#[tokio::test]
async fn a_second_sync_of_the_same_app_is_refused_while_one_runs() {
    let world = World::new(MockConfig {
        followers: 10,
        ..MockConfig::default()
    })
    .await;
    let lock = wxnotify_services::followers::store::try_lock_app(&world.db.pool, &world.app)
        .await
        .unwrap()
        .expect("the lock is free");
    let err = world.sync(&World::fast_options()).await.unwrap_err();
    assert!(matches!(err, SyncError::Busy(_)), "{err}");
    lock.release().await.unwrap();
    assert!(world.sync(&World::fast_options()).await.unwrap().completed);
}

#[tokio::test]
async fn an_empty_follower_list_completes_and_marks_everyone_unsubscribed() {
    let world = World::new(MockConfig {
        followers: 0,
        ..MockConfig::default()
    })
    .await;
    sqlx::query(
        "INSERT INTO oa_followers (app, oa_openid, subscribed, synced_at)
         VALUES ('default', 'oGone', true, now() - interval '1 day')",
    )
    .execute(&world.db.pool)
    .await
    .unwrap();
    let report = world.sync(&World::fast_options()).await.unwrap();
    assert!(report.completed);
    assert_eq!((report.followers, report.unsubscribed), (0, 1));
}
