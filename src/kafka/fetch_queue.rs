//! The queue fetched records arrive on, apart from the consumer queue, so that the poll thread
//! takes them in batches: one queue lock and one poll bookkeeping (two clock reads and a
//! histogram update in librdkafka) per batch instead of per record, and no event object, `Arc`
//! or extra clock read per record in the Rust client. Rebalances, errors and statistics stay on
//! the consumer queue, which the poll thread serves before every batch.
//!
//! librdkafka forwards a partition's fetch queue to the consumer queue when fetching starts
//! unless the application has forwarded it itself, and stopping a partition clears the forward:
//! so every assignment routes its partitions here before `assign` (`SinkContext::on_assign`).
//! Assigning a partition that is already assigned (`out_of_range`) stops and restarts it
//! asynchronously, which can clear the route after it was set: records then wait in the
//! partition's own queue until the poll thread routes the whole assignment again, which it does
//! every [`REROUTE_EVERY`] (forwarding moves the waiting records over, in order). A partition
//! that cannot be routed at all delivers on the consumer queue, which is still read. Records of
//! a revoked or re-sought partition still waiting here are outdated (librdkafka bumps the
//! partition's version before `unassign` or `seek` returns) and are dropped by librdkafka when
//! taken, as on the consumer queue.

use std::ffi::{c_void, CStr, CString};
use std::os::raw::c_char;
use std::ptr::{self, NonNull};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

/// How often the poll thread routes the whole assignment again.
pub const REROUTE_EVERY: Duration = Duration::from_secs(1);

/// An application queue that assigned partitions forward their fetched records to.
pub struct FetchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// A handle on the consumer queue whose "became non-empty" callback wakes a blocked batch
    /// read, so an event is served at once rather than after the read's timeout.
    consumer_queue: NonNull<rdsys::rd_kafka_queue_t>,
}

// librdkafka queues are thread-safe; the handles are only destroyed in `Drop`.
unsafe impl Send for FetchQueue {}
unsafe impl Sync for FetchQueue {}

/// Called by librdkafka (from its own thread) when the consumer queue becomes non-empty.
unsafe extern "C" fn wake(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    rdsys::rd_kafka_queue_yield(opaque.cast());
}

impl FetchQueue {
    /// `None` if librdkafka cannot create the queues; records then all come on the consumer queue.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<Self> {
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is a live consumer handle; both queues are destroyed in `Drop`, which the
        // poll thread runs before the consumer is dropped.
        unsafe {
            let queue = NonNull::new(rdsys::rd_kafka_queue_new(rk))?;
            let Some(consumer_queue) = NonNull::new(rdsys::rd_kafka_queue_get_consumer(rk)) else {
                rdsys::rd_kafka_queue_destroy(queue.as_ptr());
                return None;
            };
            rdsys::rd_kafka_queue_cb_event_enable(
                consumer_queue.as_ptr(),
                Some(wake),
                queue.as_ptr().cast(),
            );
            Some(Self {
                queue,
                consumer_queue,
            })
        }
    }

    /// Forwards a partition's fetched records here; call before assigning it. False if
    /// librdkafka has no such partition handle (its records then come on the consumer queue).
    pub fn route<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let Ok(topic) = CString::new(topic) else {
            return false;
        };
        // SAFETY: live consumer handle; the partition handle is released right away, the
        // forward is kept by the partition itself.
        unsafe {
            let rk = consumer.client().native_ptr();
            let partq = rdsys::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition);
            if partq.is_null() {
                return false;
            }
            rdsys::rd_kafka_queue_forward(partq, self.queue.as_ptr());
            rdsys::rd_kafka_queue_destroy(partq);
        }
        true
    }

    /// Takes up to `max` records, waiting up to `wait` for the first one (not for more; an event
    /// on the consumer queue ends the wait early); calls `each` for every record or per-record
    /// error (with the message that carries it) in queue order and returns how many there were.
    pub fn take(
        &self,
        wait: Duration,
        max: usize,
        mut each: impl FnMut(Result<&Fetched, (KafkaError, &Fetched)>),
    ) -> usize {
        let mut got = 0;
        let mut buf: Vec<*mut rdsys::rd_kafka_message_t> = Vec::with_capacity(max);
        // The wake-up fires only when the consumer queue turns non-empty: events already waiting
        // there (one poll serves one event) must not wait for the timeout.
        // SAFETY: live queue handle.
        let wait = if unsafe { rdsys::rd_kafka_queue_length(self.consumer_queue.as_ptr()) } > 0 {
            Duration::ZERO
        } else {
            wait
        };
        if !wait.is_zero() && max > 0 {
            got += self.read(&mut buf, wait, 1, &mut each);
        }
        if got > 0 || wait.is_zero() {
            got += self.read(&mut buf, Duration::ZERO, max - got, &mut each);
        }
        got
    }

    fn read(
        &self,
        buf: &mut Vec<*mut rdsys::rd_kafka_message_t>,
        wait: Duration,
        max: usize,
        each: &mut impl FnMut(Result<&Fetched, (KafkaError, &Fetched)>),
    ) -> usize {
        if max == 0 {
            return 0;
        }
        buf.clear();
        buf.reserve(max);
        let timeout = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `buf` has room for `max` pointers; librdkafka writes `n <= max` of them, each
        // owned by us until `rd_kafka_message_destroy` (done by `Fetched`'s `Drop`).
        let n = unsafe {
            let n = rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout,
                buf.as_mut_ptr(),
                max,
            );
            let n = usize::try_from(n).unwrap_or(0).min(max);
            buf.set_len(n);
            n
        };
        // Every message is wrapped before any is handed out, so each is destroyed exactly once
        // even if `each` panics.
        let fetched: Vec<Fetched> = buf
            .drain(..)
            .filter_map(|m| NonNull::new(m).map(|ptr| Fetched { ptr }))
            .collect();
        for message in &fetched {
            each(message.check().map_err(|error| (error, message)));
        }
        n
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the callback is removed before the queue it points at is destroyed.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                self.consumer_queue.as_ptr(),
                None,
                ptr::null_mut(),
            );
            rdsys::rd_kafka_queue_destroy(self.consumer_queue.as_ptr());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// One message taken from the fetch queue; destroyed on drop.
pub struct Fetched {
    ptr: NonNull<rdsys::rd_kafka_message_t>,
}

impl Fetched {
    fn raw(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: owned and alive until `Drop`.
        unsafe { self.ptr.as_ref() }
    }

    /// The message, or the per-partition error it carries (as the Rust client reports it).
    fn check(&self) -> Result<&Self, KafkaError> {
        let raw = self.raw();
        match raw.err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(self),
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Err(KafkaError::PartitionEOF(raw.partition))
            }
            code => Err(KafkaError::MessageConsumption(code.into())),
        }
    }

    /// Where a per-partition error happened and librdkafka's description of it, for the log
    /// and for a fatal error's message.
    pub fn error_detail(&self) -> String {
        let raw = self.raw();
        // SAFETY: live message; for an error, librdkafka's message text (if any) is the payload.
        let text = (!raw.payload.is_null() && raw.len > 0).then(|| unsafe {
            String::from_utf8_lossy(std::slice::from_raw_parts(
                raw.payload.cast::<u8>(),
                raw.len,
            ))
            .into_owned()
        });
        format!(
            "{}/{} at offset {}: {}",
            String::from_utf8_lossy(self.topic()),
            raw.partition,
            raw.offset,
            text.unwrap_or_else(|| "no details".into())
        )
    }

    /// The topic name's bytes (librdkafka's own copy, valid while the message is).
    pub fn topic(&self) -> &[u8] {
        // SAFETY: a fetched message's topic handle and its name outlive the message.
        unsafe {
            let name = rdsys::rd_kafka_topic_name(self.raw().rkt);
            if name.is_null() {
                return &[];
            }
            CStr::from_ptr(name).to_bytes()
        }
    }

    pub fn partition(&self) -> i32 {
        self.raw().partition
    }

    pub fn offset(&self) -> i64 {
        self.raw().offset
    }

    pub fn key(&self) -> Option<&[u8]> {
        let raw = self.raw();
        // SAFETY: librdkafka's key pointer and length describe memory owned by the message.
        (!raw.key.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(raw.key.cast::<u8>(), raw.key_len) })
    }

    /// `None` for a tombstone.
    pub fn payload(&self) -> Option<&[u8]> {
        let raw = self.raw();
        // SAFETY: as for the key.
        (!raw.payload.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(raw.payload.cast::<u8>(), raw.len) })
    }

    /// Milliseconds since the epoch, when the record has a timestamp.
    pub fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: live message, valid out-pointer.
        let ts = unsafe { rdsys::rd_kafka_message_timestamp(self.ptr.as_ptr(), &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts != -1)
            .then_some(ts)
    }

    /// Headers in order; names that are not UTF-8 are converted lossily rather than refused.
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut headers = ptr::null_mut();
        // SAFETY: live message; the header list belongs to it and is read before it is dropped.
        unsafe {
            let err = rdsys::rd_kafka_message_headers(self.ptr.as_ptr(), &mut headers);
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
                return Vec::new();
            }
            let count = rdsys::rd_kafka_header_cnt(headers);
            let mut out = Vec::with_capacity(count);
            for idx in 0..count {
                let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
                    (ptr::null(), ptr::null(), 0);
                let err =
                    rdsys::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size);
                if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                    continue;
                }
                let name = CStr::from_ptr(name).to_string_lossy().into_owned();
                let value = (!value.is_null())
                    .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
                out.push((name, value));
            }
            out
        }
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        // SAFETY: each message taken from the queue is destroyed exactly once, here.
        unsafe { rdsys::rd_kafka_message_destroy(self.ptr.as_ptr()) }
    }
}
