//! The writer's queue loop: it takes batches from the shared queue and, while one batch is in the
//! database, takes and decodes the next.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};

use super::{Batch, WriteBatch, Writer};
use crate::sink::encode::{Decoded, Decoder};

impl Writer {
    /// Takes batches until the queue closes or the pipeline stops listening.
    pub async fn run(
        mut self,
        queue: Arc<Mutex<mpsc::Receiver<Batch>>>,
        results: mpsc::UnboundedSender<WriteBatch>,
    ) {
        // Connect before the first batch arrives (a TLS handshake with certificate loading
        // costs tens of milliseconds); if it fails, the first batch's attempt retries it.
        if let Ok(conn) = self.connect().await {
            self.conn = Some(conn);
        }
        let mut next: Option<(Batch, Decoded)> = None;
        loop {
            let (batch, decoded) = match next.take() {
                Some(ready) => ready,
                None => {
                    let batch = queue.lock().await.recv().await;
                    let Some(batch) = batch else { break };
                    let decoded = self.decoder.decode(&batch.records, &HashSet::new());
                    (batch, decoded)
                }
            };
            // While this batch is in the database, the next one is taken and decoded, so the
            // connection does not sit idle while the connector decodes.
            let outcome = {
                let prefetch = prefetch(Arc::clone(&queue), Arc::clone(&self.decoder));
                tokio::pin!(prefetch);
                let write = self.write_decoded(&batch, decoded);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        outcome = &mut write => break outcome,
                        ready = &mut prefetch, if next.is_none() => next = Some(ready),
                    }
                }
            };
            let result = WriteBatch {
                tp: batch.tp,
                epoch: batch.epoch,
                records: batch.records.len(),
                outcome,
            };
            if results.send(result).is_err() {
                break;
            }
        }
    }
}

/// How often a busy writer looks for its next batch.
const PREFETCH_POLL: Duration = Duration::from_millis(2);

/// The next queued batch, decoded. It only looks (without holding the queue's lock while
/// waiting), so a writer that is idle, and waits on the queue, gets a new batch first.
async fn prefetch(
    queue: Arc<Mutex<mpsc::Receiver<Batch>>>,
    decoder: Arc<Decoder>,
) -> (Batch, Decoded) {
    loop {
        let batch = queue.try_lock().ok().and_then(|mut q| q.try_recv().ok());
        if let Some(batch) = batch {
            let decoded = decoder.decode(&batch.records, &HashSet::new());
            return (batch, decoded);
        }
        tokio::time::sleep(PREFETCH_POLL).await;
    }
}
