#![allow(dead_code)] // not every test module uses every helper
//! Test isolation: a fresh, migrated database per test (dropped afterwards, even when the test
//! panics) and a random queue prefix per test. Both are made by the sandbox's scratch
//! environments ([`wxnotify_sandbox::scratch`]); this file holds only what tests add to them.

use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use wxnotify_sandbox::scratch;

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("WXNOTIFY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into())
}

/// The broker tests use.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| wxnotify_core::config::DEFAULT_AMQP_URL.into())
}

/// A random queue prefix, so tests share the broker without seeing each other's messages.
pub fn queue_prefix() -> String {
    scratch::queue_prefix("test")
}

/// A database of one test's own, dropped with this value.
pub struct TestDb {
    /// A pool on the database.
    pub pool: PgPool,
    /// Its name.
    pub name: String,
    /// Options that connect to it (to build further, independent pools).
    pub options: PgConnectOptions,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    pub async fn new() -> TestDb {
        let server: PgConnectOptions = server_url()
            .parse()
            .expect("bad WXNOTIFY_TEST_DATABASE_URL");
        let name = scratch::database_name("test");
        scratch::create_database(&server, &name)
            .await
            .expect("cannot make the test database");
        let options = wxnotify_core::db::plan_each_execution(server.database(&name));
        let pool = wxnotify_core::db::pool_options(10)
            .connect_with(options.clone())
            .await
            .expect("connect to the test database");
        wxnotify_core::db::migrate(&pool).await.expect("migrations");
        TestDb {
            pool,
            name,
            options,
        }
    }

    /// A new pool of its own on the same database, as another process would have.
    pub async fn another_pool(&self, max_connections: u32) -> PgPool {
        wxnotify_core::db::pool_options(max_connections)
            .connect_with(self.options.clone())
            .await
            .expect("connect to the test database")
    }

    /// The database URL, for code that takes `DATABASE_URL`.
    pub fn url(&self) -> String {
        let base = server_url();
        let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
        format!("{server}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server: PgConnectOptions = server_url().parse().unwrap();
                scratch::drop_database(&server, &name).await;
            });
        })
        .join()
        .ok();
    }
}
