//! The writer's queue loop: it takes batches from the shared queue and, while one batch is in the
//! database, takes and decodes the next.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};

use super::{prepare, Batch, WriteBatch, Writer};
use crate::registry::Registry;
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
        let mut next: Option<(Batch, Option<Prepared>)> = None;
        loop {
            let (batch, prepared) = match next.take() {
                Some(ready) => ready,
                None => {
                    let batch = queue.lock().await.recv().await;
                    let Some(batch) = batch else { break };
                    (batch, None)
                }
            };
            let prepared = match prepared {
                Some(prepared) => prepared,
                None => prepare(self.registry.as_deref(), &self.decoder, &batch).await,
            };
            // While this batch is in the database, the next one is taken and decoded, so the
            // connection does not sit idle while the connector decodes.
            let outcome = match prepared {
                Err(outcome) => outcome,
                Ok(decoded) => {
                    let prefetch = prefetch(
                        Arc::clone(&queue),
                        Arc::clone(&self.decoder),
                        self.registry.clone(),
                    );
                    tokio::pin!(prefetch);
                    let write = self.write_decoded(&batch, decoded);
                    tokio::pin!(write);
                    loop {
                        tokio::select! {
                            outcome = &mut write => break outcome,
                            ready = &mut prefetch, if next.is_none() => next = Some(ready),
                        }
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

/// A batch decoded, or the outcome that ends it before any write ([`prepare`]).
type Prepared = Result<Decoded, super::Outcome>;

/// The next queued batch, decoded. It only looks (without holding the queue's lock while
/// waiting), so a writer that is idle, and waits on the queue, gets a new batch first. A batch
/// whose schemas are not all fetched yet is left for [`prepare`] once it is the current one: from
/// taking a batch to returning it nothing waits, so dropping this future never loses one.
async fn prefetch(
    queue: Arc<Mutex<mpsc::Receiver<Batch>>>,
    decoder: Arc<Decoder>,
    registry: Option<Arc<Registry>>,
) -> (Batch, Option<Prepared>) {
    loop {
        let batch = queue.try_lock().ok().and_then(|mut q| q.try_recv().ok());
        if let Some(batch) = batch {
            let cached = registry.as_ref().is_none_or(|r| r.has_all(&batch.records));
            let prepared = cached.then(|| Ok(decoder.decode(&batch.records, &HashSet::new())));
            return (batch, prepared);
        }
        tokio::time::sleep(PREFETCH_POLL).await;
    }
}
