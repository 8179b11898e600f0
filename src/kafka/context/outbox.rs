//! The outbox: records the poll thread took, gathered into a chunk, and the events sent after
//! them, so every event reaches the pipeline after every record fetched before it.

use std::sync::Arc;

use super::SinkContext;
use crate::kafka::events::Event;
use crate::kafka::flow::FlowControl;
use crate::record::Record;

/// Records polled but not yet sent, and their [`Record::size`] in total.
#[derive(Default)]
pub(super) struct Chunk {
    records: Vec<Record>,
    bytes: usize,
}

impl SinkContext {
    /// Adds a fetched record to the chunk that [`Self::flush`] sends; returns the chunk's
    /// records and bytes so far.
    pub fn push(&self, record: Record) -> (usize, usize) {
        self.took(std::slice::from_ref(&record));
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.bytes += record.size();
        pending.records.push(record);
        (pending.records.len(), pending.bytes)
    }

    /// Records and bytes of the chunk so far.
    pub fn pending(&self) -> (usize, usize) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        (pending.records.len(), pending.bytes)
    }

    /// [`Self::push`] for records already gathered by the caller (`bytes` is their
    /// [`Record::size`] total), under one lock; leaves `records` empty.
    pub fn push_all(&self, records: &mut Vec<Record>, bytes: usize) {
        if records.is_empty() {
            return;
        }
        self.took(records);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.bytes += bytes;
        if pending.records.is_empty() {
            std::mem::swap(&mut pending.records, records);
        } else {
            pending.records.append(records);
        }
    }

    /// Sends the pending chunk; false when the pipeline is gone.
    pub fn flush(&self) -> bool {
        let Chunk {
            records: chunk,
            bytes,
        } = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if chunk.is_empty() {
            return true;
        }
        if let Some(flow) = self.flow.get() {
            flow.sent(chunk.len(), bytes);
        }
        self.events
            .blocking_send(Event::Records {
                records: chunk,
                bytes,
            })
            .is_ok()
    }

    /// Sends an event after every record fetched before it; false when the pipeline is gone.
    pub fn send(&self, event: Event) -> bool {
        self.flush() && self.events.blocking_send(event).is_ok()
    }

    /// Connects the flow control that counts records in the channel (set once, by the poller).
    pub fn set_flow(&self, flow: Arc<FlowControl>) {
        let _ = self.flow.set(flow);
    }
}
