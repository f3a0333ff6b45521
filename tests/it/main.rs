//! The integration tests: one binary, one module per area. They talk to the real Postgres and
//! RabbitMQ of `WXNOTIFY_TEST_DATABASE_URL` / `AMQP_URL` (defaults: the local services) and to
//! the fake WeChat on port 0. Each test makes its own database and queue prefix.

mod admin_support;
mod producer_support;
mod support;
mod system;
mod users_support;

mod demo;
mod cluster;
mod deploy;
mod admin;
mod admin_bench;
mod console;
mod campaigns;
mod domain;
mod edge;
mod end_to_end;
mod first_hour;
mod exactly_once;
mod followers;
mod fuzz;
mod http;
mod mock;
mod producer_api;
mod queue;
mod resilience;
mod signals;
mod shared_rate;
mod rules;
mod wechat;
mod worker;
