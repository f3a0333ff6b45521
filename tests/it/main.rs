//! The integration tests: one binary, one module per area. They talk to the real Postgres and
//! RabbitMQ of `WXNOTIFY_TEST_DATABASE_URL` / `AMQP_URL` (defaults: the local services) and to
//! the fake WeChat on port 0. Each test makes its own database and queue prefix.

mod admin_support;
mod producer_support;
mod serve_support;
mod support;
mod system;
mod users_support;

mod admin;
mod admin_bench;
mod admin_users;
mod bodies;
mod callback_json;
mod callback_key_rotation;
mod campaign_channels;
mod campaigns;
mod cluster;
mod console;
mod demo;
mod demo_serve;
mod deploy;
mod dlq_cli;
mod domain;
mod edge;
mod end_to_end;
mod exactly_once;
mod first_hour;
mod followers;
mod fuzz;
mod hostile;
mod http;
mod mock;
mod observability;
mod producer_api;
mod queue;
mod real_wechat;
mod resilience;
mod rules;
mod second_channel;
mod shared_rate;
mod signals;
mod subscriptions;
mod tenants;
mod webhooks;
mod wechat;
mod worker;
mod worker_health;
