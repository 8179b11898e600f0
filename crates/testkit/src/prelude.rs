//! What an integration test of the connector uses, in one import: `use testkit::prelude::*;`.

pub use crate::broker::cluster::commit_group_offsets;
pub use crate::broker::{Broker, LogRecord};
pub use crate::connector::{kill_repeatedly, run_until_exit, sink_config, Sink};
pub use crate::db::{server_url, TestDb, TestRole};
pub use crate::fixtures::{payment, payments_mapping, PAYMENTS_DDL};
pub use crate::names::{eventually, free_port, unique, TempFile};
pub use crate::pg_server::PgServer;
pub use crate::producer::{stream, transactions, Produced, TestProducer, Transaction};
pub use crate::prom::http_get;
pub use crate::pyserde::PySerializer;
pub use crate::registry::{Outage, Reference, SchemaRegistry, SchemaType};
pub use crate::rng::Rng;
pub use crate::scenario::{Built, Scenario};
pub use crate::skip::{unless_mock, unless_own_registry, unless_real};

/// A broker for a test: the cluster of `KAFKA_BROKERS`, or a fresh mock broker.
pub fn broker() -> Broker {
    Broker::from_env().expect("a broker (KAFKA_BROKERS or the mock broker host)")
}
