//! The integration tests: one binary, one module per area. They talk to the real Postgres and
//! RabbitMQ of `WXNOTIFY_TEST_DATABASE_URL` / `AMQP_URL` (defaults: the local services) and to
//! the fake WeChat on port 0. Each test makes its own database and queue prefix.

mod support;
mod system;
mod users_support;

mod campaigns;
mod domain;
mod end_to_end;
mod followers;
mod http;
mod mock;
mod queue;
mod resilience;
mod wechat;
mod worker;
