//! Signals on PostgreSQL: `NOTIFY` on one channel per schema, heard by one listening
//! connection per store.
//!
//! The listening connection is opened by the first [`Listener::subscribe`] (a store that
//! never subscribes holds none) and kept apart from the pool: it does nothing but `LISTEN`.
//! When it drops (a restart of the server, a network failure), a task opens it again after
//! a pause that doubles up to [`MAX_PAUSE`]; signals sent meanwhile are lost, which only
//! delays their receivers (they poll too). TCP keepalives find a silently dead connection.
//!
//! A signal travels as the JSON array `[topic, payload]`. The channel is named after the
//! schema (`palmlink:SCHEMA`, cut to PostgreSQL's 63 bytes), so stores in other schemas of
//! the same database do not hear each other.

use std::time::Duration;

use tokio::sync::{broadcast, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};

use super::connect::Tls;
use crate::signals::{Signal, SignalHub};
use crate::{StoreError, StoreResult};

/// The first pause before the listening connection is opened again.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two attempts to open it.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// Idle time after which TCP keepalive probes check the listening connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// The name the listening connection shows in `pg_stat_activity`.
const APPLICATION_NAME: &str = "palmlink signals";

/// The channel of the stores in `schema`.
pub(super) fn channel(schema: &str) -> String {
    let mut name = format!("palmlink:{schema}");
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// A signal as it travels.
pub(super) fn encode(topic: &str, payload: &str) -> String {
    serde_json::json!([topic, payload]).to_string()
}

fn decode(text: &str) -> Option<Signal> {
    let (topic, payload): (String, String) = serde_json::from_str(text).ok()?;
    Some(Signal { topic, payload })
}

/// `name` as a quoted identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The listening side of a store's signals.
pub(super) struct Listener {
    config: tokio_postgres::Config,
    tls: Tls,
    channel: String,
    hub: SignalHub,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    /// A listener of `channel`, not yet listening.
    pub(super) fn new(mut config: tokio_postgres::Config, tls: Tls, channel: String) -> Listener {
        config
            .application_name(APPLICATION_NAME)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE);
        Listener {
            config,
            tls,
            channel,
            hub: SignalHub::new(),
            task: Mutex::new(None),
        }
    }

    /// The channel signals are sent on.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// A receiver of every signal sent once this returns; the first call opens the
    /// listening connection and waits until it listens.
    pub(super) async fn subscribe(&self) -> StoreResult<broadcast::Receiver<Signal>> {
        let mut task = self.task.lock().await;
        if task.is_none() {
            let (ready, listening) = oneshot::channel();
            let handle = tokio::spawn(listen(
                self.config.clone(),
                self.tls.clone(),
                self.channel.clone(),
                self.hub.clone(),
                ready,
            ));
            match listening.await {
                Ok(Ok(())) => *task = Some(handle),
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    return Err(StoreError::Database(
                        "the signal listener stopped".to_owned(),
                    ))
                }
            }
        }
        Ok(self.hub.subscribe())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// Keeps a connection listening on `channel` and hands what it hears to `hub`, opening it
/// again whenever it drops. The first outcome goes to `ready`: if the first connection fails,
/// the task ends with it.
async fn listen(
    config: tokio_postgres::Config,
    tls: Tls,
    channel: String,
    hub: SignalHub,
    ready: oneshot::Sender<StoreResult<()>>,
) {
    let mut ready = Some(ready);
    let mut pause = FIRST_PAUSE;
    loop {
        let ended = match &tls {
            Tls::Off => listen_once(&config, NoTls, &channel, &hub, &mut ready).await,
            Tls::Verified(tls) => {
                listen_once(&config, tls.clone(), &channel, &hub, &mut ready).await
            }
        };
        if let Some(ready) = ready.take() {
            // Never listened: the subscriber gets the error.
            let _ = ready.send(ended);
            return;
        }
        match ended {
            Ok(()) => pause = FIRST_PAUSE,
            Err(err) => tracing::warn!(error = %err, "signals: cannot listen; trying again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One listening connection, until it ends: `Ok` once it has listened (and `ready` was told)
/// and ended, an error if it could not be opened or listen.
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &str,
    hub: &SignalHub,
    ready: &mut Option<oneshot::Sender<StoreResult<()>>>,
) -> StoreResult<()>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await?;
    let heard = hub.clone();
    let reader = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => match decode(note.payload()) {
                    Some(signal) => heard.deliver(signal),
                    None => tracing::debug!("signals: ignored a notification not of ours"),
                },
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(error = %StoreError::from(err), "signals: connection lost");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", quoted(channel)))
        .await?;
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    // The connection is read until it ends; the client stays open meanwhile.
    let _ = reader.await;
    drop(client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_in_an_identifier_and_signals_round_trip() {
        assert_eq!(channel("node_a"), "palmlink:node_a");
        assert_eq!(channel(&"s".repeat(63)).len(), 63);
        let signal = decode(&encode("webhooks", "a \"b\" c")).unwrap();
        assert_eq!(
            (signal.topic.as_str(), signal.payload.as_str()),
            ("webhooks", "a \"b\" c")
        );
        assert!(decode("not json").is_none());
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
