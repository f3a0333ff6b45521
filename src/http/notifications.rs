//! `POST /v1/notifications`: validate and enqueue one job or a batch. Not built yet (the lead
//! adds it); the router leaves its place.
