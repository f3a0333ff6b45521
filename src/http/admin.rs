//! `/admin/...` (bearer token): dead letters, campaigns, deliveries. Not built yet (the lead adds
//! it); the router leaves its place.
