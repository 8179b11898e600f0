//! `kafka-pg-sink-mock-broker [--topic name:partitions]...`: the mock broker host the tests
//! start ([`testkit::broker::host`] has the protocol on stdin and stdout).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--topic", Some(spec)) => topics.push(spec),
            _ => {
                return Err(format!(
                    "usage: kafka-pg-sink-mock-broker [--topic name:partitions]... (got `{arg}`)"
                )
                .into())
            }
        }
    }
    testkit::broker::host::serve(&topics)
}
