mod common;
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let mut broker = Broker::start();
    let topic = unique("probe");
    broker.create_topic(&topic, 2);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let t = Instant::now();
    let r = c.fetch_group_list(Some("nogroup"), Duration::from_secs(5));
    eprintln!(
        "group list: {:?} in {:?}",
        r.as_ref().map(|g| g.groups().len()),
        t.elapsed()
    );
    let tpl = {
        let mut l = rdkafka::TopicPartitionList::new();
        l.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(0))
            .unwrap();
        l
    };
    let t = Instant::now();
    let r = c.offsets_for_times(tpl, Duration::from_secs(5));
    eprintln!(
        "times: {:?} in {:?}",
        r.map(|l| l.elements().iter().map(|e| e.offset()).collect::<Vec<_>>()),
        t.elapsed()
    );
    let md = c.fetch_metadata(Some("does-not-exist"), Duration::from_secs(5));
    eprintln!(
        "md: {:?}",
        md.map(|m| m
            .topics()
            .iter()
            .map(|t| (t.name().to_owned(), t.partitions().len(), t.error()))
            .collect::<Vec<_>>())
    );
}
