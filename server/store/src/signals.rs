//! Wake-ups across the nodes of one database: signals on named topics ([`Signals`]).

use tokio::sync::broadcast;

use crate::{StoreError, StoreResult};

/// Signals a subscriber may fall behind by before the oldest are dropped for it (its next
/// `recv` then reports how many it missed, which should be read as "look again").
pub const SIGNAL_BUFFER: usize = 1024;

/// The longest topic and payload together, in bytes (PostgreSQL's `NOTIFY` carries at most
/// 8000 bytes, framing included).
pub const SIGNAL_MAX_BYTES: usize = 7000;

/// One signal: a named topic and a short payload (an id, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// What it is about, e.g. `challenges` or `webhooks`.
    pub topic: String,
    /// What the sender adds, e.g. the id of what changed; may be empty.
    pub payload: String,
}

/// Sending and awaiting signals: wake-ups across the nodes of one database.
///
/// A signal says "something you wait for may have happened: look again". It is a hint, never
/// a record: a receiver reads the state it cares about from the store, and it still polls at
/// its own pace, because a signal can be lost (a receiver that lags behind by more than
/// [`SIGNAL_BUFFER`] signals, or, on PostgreSQL, one sent while the listening connection was
/// being re-established). A lost signal therefore only delays.
///
/// Who hears a signal:
/// - on PostgreSQL, every subscriber of every store on the same database and schema, in every
///   process (`NOTIFY`, heard by one listening connection per store);
/// - on SQLite, every subscriber of every store on the same database file in this process
///   (a broadcast channel: another process, such as an operator command, is not heard).
///
/// ```no_run
/// # async fn run(store: &dyn palmlink_store::Store) -> Result<(), palmlink_store::StoreError> {
/// let mut signals = store.subscribe().await?;
/// store.notify("challenges", "8f0c...").await?;
/// let signal = signals.recv().await.expect("the store is open");
/// assert_eq!(signal.topic, "challenges");
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait Signals: Send + Sync {
    /// Sends a signal to every subscriber that can hear it (see above), this
    /// store's own included. `topic` must not be empty; topic and payload together must fit in
    /// [`SIGNAL_MAX_BYTES`].
    async fn notify(&self, topic: &str, payload: &str) -> StoreResult<()>;
    /// A receiver of every signal sent once this returns (on every topic: receivers filter
    /// by topic). On PostgreSQL the first call starts the store's listening connection and
    /// returns once it listens; it fails if the database cannot be reached then.
    async fn subscribe(&self) -> StoreResult<broadcast::Receiver<Signal>>;
}

/// The in-process side of signals: every subscriber of a store receives from one broadcast
/// channel, which the backend feeds.
#[derive(Clone, Debug)]
pub(crate) struct SignalHub {
    sender: broadcast::Sender<Signal>,
}

impl SignalHub {
    pub(crate) fn new() -> SignalHub {
        SignalHub {
            sender: broadcast::channel(SIGNAL_BUFFER).0,
        }
    }

    /// Hands `signal` to the current subscribers (none is not an error).
    pub(crate) fn deliver(&self, signal: Signal) {
        let _ = self.sender.send(signal);
    }

    /// A new receiver.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.sender.subscribe()
    }
}

/// Refuses a signal no backend can carry.
pub(crate) fn check(topic: &str, payload: &str) -> StoreResult<()> {
    if topic.is_empty() {
        return Err(StoreError::Database("a signal needs a topic".to_owned()));
    }
    if topic.len() + payload.len() > SIGNAL_MAX_BYTES {
        return Err(StoreError::Database(format!(
            "a signal carries at most {SIGNAL_MAX_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_topics_and_long_payloads_are_refused() {
        assert!(check("t", "").is_ok());
        assert!(check("", "p").is_err());
        assert!(check("t", &"x".repeat(SIGNAL_MAX_BYTES)).is_err());
    }
}
