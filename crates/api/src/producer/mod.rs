//! What application services call: the producer API.
//!
//! - [`notifications`]: `POST /v1/notifications[/batch]` and `GET /v1/notifications/{id}`;
//! - [`api_keys`]: bearer keys per app; [`api_error`]: the producer API's error answers;
//! - [`job_input`]: a job from JSON, with 422 answers that point at the field (JSON pointers);
//! - [`notification_store`]: idempotency and status of what was posted;
//! - [`link`]: the link to RabbitMQ (publisher confirms);
//! - [`webhooks`]: signed outcome events, delivered to each app's URL.

pub mod api_error;
pub mod api_keys;
pub mod job_input;
pub mod link;
pub mod notification_store;
pub mod notifications;
pub mod webhooks;
