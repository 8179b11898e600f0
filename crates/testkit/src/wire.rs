//! A minimal Kafka producer for the paced backlog on the mock broker, and for batches damaged on
//! purpose: Produce requests
//! (version 3: record batch format v2, uncompressed or compressed with lz4 or zstd, `acks = all`)
//! written straight to the broker's socket, many records per request.
//!
//! Why: against the mock the backlog has to be produced while the connector runs (its retention
//! keeps 5 MiB per partition), on the same two cores. librdkafka's producer spent about 0.5 µs
//! of CPU per record there (allocation, queueing, its own encoding), about 6 % of the machine
//! during an upsert run: load that a real deployment does not put beside the connector, since
//! there the backlog is produced before the connector starts. This one writes pre-rendered
//! records into a batch and a checksum, a few tens of nanoseconds per record.
//!
//! Scope: one broker that leads every partition (the mock cluster has one). Any error in a
//! response fails the run; there are no retries, so every record is written once and in order
//! (requests on one connection are handled in order). The consumer side is not touched: the
//! connector reads these batches with librdkafka as it would read any producer's.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};

const API_PRODUCE: i16 = 0;
const PRODUCE_VERSION: i16 = 3;
const CLIENT_ID: &[u8] = b"kafka-pg-sink-bench";
const ACKS_ALL: i16 = -1;
const REQUEST_TIMEOUT_MS: i32 = 30_000;
/// Offset of the record batch's `attributes` field: the checksum covers it and all after it.
const CRC_FROM: usize = 21;

/// How a batch's records are compressed (the codecs producers use for throughput; Kafka's lz4 is
/// the LZ4 frame format, its zstd a standard zstd frame).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's name in librdkafka's `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// The codec id in a record batch's attributes.
    fn attribute(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// `records` compressed, appended to `out`.
    fn compress(self, records: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::None => out.extend_from_slice(records),
            Self::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(out);
                encoder.write_all(records)?;
                encoder.finish().context("lz4 frame")?;
            }
            // Level 3, zstd's default (and librdkafka's).
            Self::Zstd => out.extend_from_slice(&zstd::bulk::compress(records, 3)?),
        }
        Ok(())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        [Self::None, Self::Lz4, Self::Zstd]
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| format!("unknown compression `{name}`: none, lz4 or zstd"))
    }
}

/// Responses counted by the reader thread, and the first error it saw.
#[derive(Default)]
struct Acks {
    answered: u64,
    error: Option<String>,
}

/// An open connection to the broker, with a thread reading the responses.
pub struct Producer {
    stream: TcpStream,
    topic: String,
    correlation: i32,
    requests: u64,
    buf: Vec<u8>,
    compression: Compression,
    acks: Arc<(Mutex<Acks>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

impl Producer {
    /// Connects to the first address of `bootstrap` (a comma-separated list).
    pub fn connect(bootstrap: &str, topic: &str) -> Result<Self> {
        let address = bootstrap.split(',').next().unwrap_or_default().trim();
        let stream = TcpStream::connect(address)
            .with_context(|| format!("connecting to the broker at {address}"))?;
        stream.set_nodelay(true)?;
        let acks = Arc::new((Mutex::new(Acks::default()), Condvar::new()));
        let reader = {
            let (stream, acks) = (stream.try_clone()?, acks.clone());
            std::thread::Builder::new()
                .name("wire-acks".into())
                .spawn(move || read_responses(stream, &acks))?
        };
        Ok(Self {
            stream,
            topic: topic.to_owned(),
            correlation: 0,
            requests: 0,
            buf: Vec::new(),
            compression: Compression::None,
            acks,
            reader: Some(reader),
        })
    }

    /// Compresses the batches [`Self::send`] writes from now on.
    pub fn compressed(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sends `records` (key, value) to `partition` as one batch in one request.
    pub fn send<'a>(
        &mut self,
        partition: i32,
        records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<()> {
        self.send_batch(partition, records, false)
    }

    /// Sends a batch whose checksum is wrong, as a corrupted log would hold it (the mock broker
    /// stores it as it is; a real broker refuses it).
    pub fn send_damaged<'a>(
        &mut self,
        partition: i32,
        records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<()> {
        self.send_batch(partition, records, true)
    }

    /// One request holding a batch with a wrong checksum, then an intact batch of
    /// `next` starting at `next_offset`, so that a consumer gets both in one fetch (the mock
    /// broker returns one stored request per fetch). The first batch claims the records of both,
    /// so that the broker's log end covers the second.
    pub fn send_damaged_then<'a>(
        &mut self,
        partition: i32,
        damaged: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
        next_offset: i64,
        next: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<()> {
        let count = i32::try_from(damaged.len() + next.len())?;
        self.correlation = self.correlation.wrapping_add(1);
        let mut buf = Vec::new();
        encode_request(
            &mut buf,
            self.correlation,
            &self.topic,
            partition,
            0,
            damaged,
            Compression::None,
        )?;
        let batch_at = checksum_end(&self.topic) - CRC_FROM;
        buf[batch_at + 20] ^= 0xff;
        buf[batch_at + 57..batch_at + 61].copy_from_slice(&count.to_be_bytes());
        let second_at = buf.len();
        encode_batch(&mut buf, 0, next, Compression::None)?;
        buf[second_at..second_at + 8].copy_from_slice(&next_offset.to_be_bytes());
        let record_set = buf.len() - batch_at;
        put_len(&mut buf, batch_at - 4, record_set)?;
        let size = buf.len() - 4;
        put_len(&mut buf, 0, size)?;
        self.stream
            .write_all(&buf)
            .context("writing a produce request")?;
        self.requests += 1;
        Ok(())
    }

    fn send_batch<'a>(
        &mut self,
        partition: i32,
        records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
        damage_checksum: bool,
    ) -> Result<()> {
        if let Some(error) = self.lock().error.clone() {
            bail!("the broker refused a produce request: {error}");
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.correlation = self.correlation.wrapping_add(1);
        let buf = &mut self.buf;
        buf.clear();
        encode_request(
            buf,
            self.correlation,
            &self.topic,
            partition,
            timestamp,
            records,
            self.compression,
        )?;
        if damage_checksum {
            buf[checksum_end(&self.topic) - 1] ^= 0xff;
        }
        self.stream
            .write_all(buf)
            .context("writing a produce request")?;
        self.requests += 1;
        Ok(())
    }

    /// Waits until every request is answered (or `timeout`), then closes the connection.
    pub fn finish(mut self, timeout: Duration) -> Result<()> {
        let (lock, answered) = &*self.acks;
        let state = lock.lock().map_err(|_| anyhow!("acks lock poisoned"))?;
        let (state, waited) = answered
            .wait_timeout_while(state, timeout, |a| {
                a.answered < self.requests && a.error.is_none()
            })
            .map_err(|_| anyhow!("acks lock poisoned"))?;
        if let Some(error) = &state.error {
            bail!("the broker refused a produce request: {error}");
        }
        ensure!(
            !waited.timed_out(),
            "{} of {} produce requests answered after {timeout:?}",
            state.answered,
            self.requests
        );
        drop(state);
        self.close();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Acks> {
        self.acks.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads responses until the connection closes; records the first error.
fn read_responses(mut stream: TcpStream, acks: &(Mutex<Acks>, Condvar)) {
    let mut expected = 1i32;
    let mut body = Vec::new();
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            break; // closed: by `finish`, or by the broker (then requests stay unanswered)
        }
        body.resize(i32::from_be_bytes(size).max(0) as usize, 0);
        let outcome = stream
            .read_exact(&mut body)
            .map_err(|e| format!("reading a produce response: {e}"))
            .and_then(|()| check_response(&body, expected));
        expected = expected.wrapping_add(1);
        let (lock, answered) = acks;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        state.answered += 1;
        if let Err(error) = outcome {
            state.error.get_or_insert(error);
        }
        answered.notify_all();
    }
    let (lock, answered) = acks;
    lock.lock()
        .unwrap_or_else(|e| e.into_inner())
        .error
        .get_or_insert_with(|| "the broker closed the connection".into());
    answered.notify_all();
}

/// Appends one Produce request (size prefix included) for one partition's batch.
fn encode_request<'a>(
    buf: &mut Vec<u8>,
    correlation: i32,
    topic: &str,
    partition: i32,
    timestamp_ms: i64,
    records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    compression: Compression,
) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&0i32.to_be_bytes()); // size, filled in below
    buf.extend_from_slice(&API_PRODUCE.to_be_bytes());
    buf.extend_from_slice(&PRODUCE_VERSION.to_be_bytes());
    buf.extend_from_slice(&correlation.to_be_bytes());
    put_string(buf, CLIENT_ID)?;
    buf.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    buf.extend_from_slice(&ACKS_ALL.to_be_bytes());
    buf.extend_from_slice(&REQUEST_TIMEOUT_MS.to_be_bytes());
    buf.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(buf, topic.as_bytes())?;
    buf.extend_from_slice(&1i32.to_be_bytes()); // one partition
    buf.extend_from_slice(&partition.to_be_bytes());
    let records_size_at = buf.len();
    buf.extend_from_slice(&0i32.to_be_bytes()); // record set size, filled in below
    let batch_at = buf.len();
    encode_batch(buf, timestamp_ms, records, compression)?;
    let batch_len = buf.len() - batch_at;
    put_len(buf, records_size_at, batch_len)?;
    let size = buf.len() - start - 4;
    put_len(buf, start, size)
}

/// Where the batch checksum of a request for `topic` ends: after the request header, the topic
/// and partition fields, the record set size and the batch's first 21 bytes.
fn checksum_end(topic: &str) -> usize {
    4 + 2 + 2 + 4 + 2 + CLIENT_ID.len() + 2 + 2 + 4 + 4 + 2 + topic.len() + 4 + 4 + 4 + CRC_FROM
}

/// Appends a record batch (format v2, no producer id, no headers), its records compressed as
/// `compression` says.
fn encode_batch<'a>(
    buf: &mut Vec<u8>,
    timestamp_ms: i64,
    records: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    compression: Compression,
) -> Result<()> {
    let count = i32::try_from(records.len()).context("too many records for one batch")?;
    ensure!(count > 0, "an empty batch");
    let at = buf.len();
    buf.extend_from_slice(&0i64.to_be_bytes()); // base offset: the broker assigns it
    buf.extend_from_slice(&0i32.to_be_bytes()); // batch length, filled in below
    buf.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    buf.push(2); // magic
    buf.extend_from_slice(&0u32.to_be_bytes()); // checksum, filled in below
    buf.extend_from_slice(&compression.attribute().to_be_bytes()); // codec; create time
    buf.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    buf.extend_from_slice(&timestamp_ms.to_be_bytes()); // first timestamp
    buf.extend_from_slice(&timestamp_ms.to_be_bytes()); // max timestamp
    buf.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    buf.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    buf.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    buf.extend_from_slice(&count.to_be_bytes());
    // Compressed records are encoded apart first, then compressed into the batch.
    let records_at = buf.len();
    for (delta, (key, value)) in records.enumerate() {
        let mut head = [0u8; 3 + 2 * 5];
        let mut n = 2; // attributes 0, timestamp delta 0
        n += varint(&mut head[n..], delta as i64);
        n += varint(&mut head[n..], key.len() as i64);
        let value_len = varint_len(value.len() as i64);
        // Record length: all after the length field itself.
        let length = n + key.len() + value_len + value.len() + 1;
        let mut length_bytes = [0u8; 5];
        let l = varint(&mut length_bytes, length as i64);
        buf.extend_from_slice(&length_bytes[..l]);
        buf.extend_from_slice(&head[..n]);
        buf.extend_from_slice(key);
        let mut value_bytes = [0u8; 5];
        let v = varint(&mut value_bytes, value.len() as i64);
        buf.extend_from_slice(&value_bytes[..v]);
        buf.extend_from_slice(value);
        buf.push(0); // no headers
    }
    if compression != Compression::None {
        let plain = buf.split_off(records_at);
        compression.compress(&plain, buf)?;
    }
    let batch_length = buf.len() - at - 12;
    put_len(buf, at + 8, batch_length)?;
    let crc = crc32c(&buf[at + CRC_FROM..]);
    buf[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Castagnoli CRC-32 by table: the fallback, and the reference in tests.
static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// The record batch checksum (Castagnoli CRC-32): the CPU's `crc32` instruction where there is
/// one (SSE 4.2; the table took a third of the producer thread's CPU), else the table.
fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE 4.2, checked just above.
        return unsafe { crc32c_sse42(bytes) };
    }
    CRC32C.checksum(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(u32::MAX);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(word.try_into().unwrap_or_default()));
    }
    let mut crc = crc as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

fn put_string(buf: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    let len = i16::try_from(s.len()).context("string too long for the protocol")?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s);
    Ok(())
}

/// Writes `len` as a big-endian i32 at `at`.
fn put_len(buf: &mut [u8], at: usize, len: usize) -> Result<()> {
    let len = i32::try_from(len).context("request too large")?;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Zigzag varint (the record format's signed varints) into `out`; returns its length.
fn varint(out: &mut [u8], value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

fn varint_len(value: i64) -> usize {
    let v = ((value << 1) ^ (value >> 63)) as u64;
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Checks a Produce v3 response: the expected correlation id and no error for any partition.
fn check_response(body: &[u8], expected: i32) -> Result<(), String> {
    let mut r = Reader(body);
    let correlation = r.i32()?;
    if correlation != expected {
        return Err(format!(
            "response {correlation} where {expected} was expected"
        ));
    }
    for _ in 0..r.i32()? {
        let topic = r.string()?;
        for _ in 0..r.i32()? {
            let partition = r.i32()?;
            let error = r.i16()?;
            let _base_offset = r.bytes(8)?;
            let _append_time = r.bytes(8)?;
            if error != 0 {
                return Err(format!(
                    "error code {error} for {topic} partition {partition}"
                ));
            }
        }
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a truncated produce response".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.bytes(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.bytes(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.i16()?.max(0) as usize;
        Ok(String::from_utf8_lossy(self.bytes(len)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value_and_the_table() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 999, 1000] {
            assert_eq!(crc32c(&data[..len]), CRC32C.checksum(&data[..len]), "{len}");
        }
    }

    #[test]
    fn zigzag_varints_match_the_protocol() {
        for (value, bytes) in [
            (0i64, &[0x00u8][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
        ] {
            let mut out = [0u8; 10];
            let n = varint(&mut out, value);
            assert_eq!(&out[..n], bytes, "{value}");
            assert_eq!(varint_len(value), n, "{value}");
        }
    }

    #[test]
    fn a_batch_carries_its_records_lengths_and_checksum() {
        let records = [
            (&b"k1"[..], &b"{\"a\":1}"[..]),
            (&b""[..], &[b'x'; 200][..]),
        ];
        let mut buf = Vec::new();
        encode_batch(
            &mut buf,
            1_700_000_000_000,
            records.iter().copied(),
            Compression::None,
        )
        .unwrap();
        let i32_at = |at: usize| i32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
        assert_eq!(i32_at(8) as usize, buf.len() - 12, "batch length");
        assert_eq!(buf[16], 2, "magic");
        assert_eq!(
            u32::from_be_bytes(buf[17..21].try_into().unwrap()),
            CRC32C.checksum(&buf[21..])
        );
        assert_eq!(i32_at(23), 1, "last offset delta");
        assert_eq!(i32_at(57), 2, "record count");
        // Walk the records back out.
        let mut at = 61;
        for (delta, (key, value)) in records.iter().enumerate() {
            let (length, n) = read_varint(&buf[at..]);
            at += n;
            let end = at + length as usize;
            assert_eq!(&buf[at..at + 2], &[0, 0], "attributes, timestamp delta");
            let mut p = at + 2;
            let (d, n) = read_varint(&buf[p..]);
            assert_eq!(d, delta as i64);
            p += n;
            let (k, n) = read_varint(&buf[p..]);
            p += n;
            assert_eq!(&buf[p..p + k as usize], *key);
            p += k as usize;
            let (v, n) = read_varint(&buf[p..]);
            p += n;
            assert_eq!(&buf[p..p + v as usize], *value);
            p += v as usize;
            assert_eq!(buf[p], 0, "no headers");
            assert_eq!(p + 1, end, "record length");
            at = end;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn a_compressed_batch_holds_the_same_records_under_its_codec() {
        let records = [
            (&b"k1"[..], &b"{\"a\":1}"[..]),
            (&b""[..], &[b'x'; 2000][..]),
            (&b"k3"[..], &b""[..]),
        ];
        let mut plain = Vec::new();
        encode_batch(&mut plain, 7, records.iter().copied(), Compression::None).unwrap();
        for (codec, attribute) in [(Compression::Lz4, 3), (Compression::Zstd, 4)] {
            let mut buf = Vec::new();
            encode_batch(&mut buf, 7, records.iter().copied(), codec).unwrap();
            assert_eq!(
                i16::from_be_bytes([buf[21], buf[22]]),
                attribute,
                "{codec:?}"
            );
            let batch_length = i32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
            assert_eq!(batch_length, buf.len() - 12, "{codec:?}");
            assert_eq!(
                u32::from_be_bytes(buf[17..21].try_into().unwrap()),
                CRC32C.checksum(&buf[21..]),
                "{codec:?}"
            );
            // The header after the attributes is the uncompressed batch's; the records, once
            // decompressed, are its records byte for byte.
            assert_eq!(buf[23..61], plain[23..61], "{codec:?}");
            let records_plain = &plain[61..];
            let decompressed = match codec {
                Compression::Lz4 => {
                    let mut out = Vec::new();
                    lz4_flex::frame::FrameDecoder::new(&buf[61..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                _ => zstd::bulk::decompress(&buf[61..], records_plain.len()).unwrap(),
            };
            assert_eq!(decompressed, records_plain, "{codec:?}");
            assert!(buf.len() < plain.len(), "{codec:?} compresses");
        }
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert!("gzip".parse::<Compression>().is_err());
    }

    #[test]
    fn the_checksum_sits_where_a_damaged_send_flips_it() {
        let mut buf = Vec::new();
        let records = [(&b"k"[..], &b"{}"[..])];
        encode_request(
            &mut buf,
            1,
            "topic",
            0,
            0,
            records.iter().copied(),
            Compression::None,
        )
        .unwrap();
        let end = checksum_end("topic");
        let batch_at = end - CRC_FROM;
        assert_eq!(buf[batch_at + 16], 2, "magic, just before the checksum");
        assert_eq!(
            u32::from_be_bytes(buf[end - 4..end].try_into().unwrap()),
            crc32c(&buf[batch_at + CRC_FROM..])
        );
    }

    #[test]
    fn responses_with_an_error_or_the_wrong_id_are_refused() {
        let response = |correlation: i32, error: i16| {
            let mut b = Vec::new();
            b.extend_from_slice(&correlation.to_be_bytes());
            b.extend_from_slice(&1i32.to_be_bytes());
            b.extend_from_slice(&1i16.to_be_bytes());
            b.push(b't');
            b.extend_from_slice(&1i32.to_be_bytes());
            b.extend_from_slice(&3i32.to_be_bytes());
            b.extend_from_slice(&error.to_be_bytes());
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&0i32.to_be_bytes());
            b
        };
        assert_eq!(check_response(&response(7, 0), 7), Ok(()));
        assert!(check_response(&response(7, 6), 7)
            .unwrap_err()
            .contains("error code 6 for t partition 3"));
        assert!(check_response(&response(8, 0), 7).is_err());
        assert!(check_response(&response(7, 0)[..10], 7).is_err());
    }

    fn read_varint(b: &[u8]) -> (i64, usize) {
        let (mut v, mut shift, mut n) = (0u64, 0, 0);
        loop {
            let byte = b[n];
            v |= u64::from(byte & 0x7f) << shift;
            n += 1;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        (((v >> 1) as i64) ^ -((v & 1) as i64), n)
    }
}
