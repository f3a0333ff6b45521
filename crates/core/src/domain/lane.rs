//! The two job lanes (transactional and bulk), a domain idea the queues and the worker share.

/// One of the two job queues. Separate queues rather than priorities: campaign traffic cannot
/// starve transactional messages, each lane gets its own consumers and prefetch, and quorum
/// queues on RabbitMQ 3.10 refuse `x-max-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Transactional notifications (an order shipped): consumed first.
    Jobs,
    /// Campaign / bulk sends: whatever rate is left.
    Bulk,
}

impl Lane {
    /// Both lanes, transactional first.
    pub const ALL: [Lane; 2] = [Lane::Jobs, Lane::Bulk];

    /// The routing key that reaches this lane's queue from the main exchange (also the
    /// queue's name suffix): `jobs` or `bulk`.
    pub fn routing_key(self) -> &'static str {
        match self {
            Lane::Jobs => "jobs",
            Lane::Bulk => "bulk",
        }
    }

    /// The lane of a routing key, if it is one (a delivery's routing key says its lane, also
    /// after a retry tier sent it back).
    pub fn from_routing_key(key: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.routing_key() == key)
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.routing_key())
    }
}
