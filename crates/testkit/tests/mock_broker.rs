//! The mock broker host answers its commands, refuses what it does not know, and serves records
//! over real TCP; the broker handle creates topics on it as on any cluster.

use testkit::broker::{cluster, Broker};
use testkit::names::unique;
use testkit::producer::TestProducer;

#[test]
fn the_host_takes_commands_and_serves_a_topic_over_tcp() {
    if testkit::skip::unless_mock("the mock broker host itself") {
        return;
    }
    let mut broker = Broker::from_env().expect("start the mock broker host");
    assert!(broker.is_mock());
    let topic = unique("host");
    broker.create_topic(&topic, 3).expect("create a topic");
    broker.command("rtt 5").expect("rtt");
    broker.command("rtt 0").expect("rtt 0");
    let refused = broker.command("no-such-command").unwrap_err();
    assert!(
        format!("{refused:#}").contains("unknown command"),
        "{refused:#}"
    );
    let bad = broker.command("create-topic x many").unwrap_err();
    assert!(
        format!("{bad:#}").contains("not a partition count"),
        "{bad:#}"
    );

    let mut producer = TestProducer::new(&broker.bootstrap);
    for i in 0..30 {
        producer.send(&topic, i % 3, &i.to_string(), Some("{}"));
    }
    producer.flush();
    assert_eq!(broker.end_offsets(&topic, 3).unwrap(), vec![10, 10, 10]);
    let log = broker.read_all(&topic, 3).unwrap();
    let mut keys: Vec<i32> = log
        .iter()
        .map(|r| r.key_text().unwrap().parse().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, (0..30).collect::<Vec<_>>());
    assert!(broker.died().is_none());
}

#[test]
fn group_offsets_committed_in_kafka_read_back() {
    let mut broker = Broker::from_env().expect("a broker");
    let topic = unique("commit");
    broker.create_topic(&topic, 2).expect("create a topic");
    let group = unique("group");
    cluster::commit_group_offsets(&broker.bootstrap, &group, &topic, &[0, 0])
        .expect("commit offsets in Kafka");
}
