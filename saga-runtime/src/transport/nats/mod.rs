//! [`NatsTransport`]: NATS JetStream through async-nats.
//!
//! # Topology
//! - one stream per prefix, named after it (`.`, `*`, `>` and spaces become `_`), on subjects
//!   `{topic_prefix}.>`, file storage, *interest* retention: a message is kept until every
//!   consumer (group) interested in its subject has acked it;
//! - one durable pull consumer per (topic, group), named `{topic}__{group}` (same
//!   replacement), filtered on `{topic_prefix}.{topic}`, explicit acks, deliver policy
//!   **`All`** (see below);
//! - subscribing also creates the group's consumer on [`dead_letter_topic`]`(topic)`, so dead
//!   letters are kept until someone reads them (subscribe to it with the same group).
//!
//! # Why the consumers deliver `All`
//! A durable consumer is created by the group's first subscription, and again whenever the
//! server no longer knows it: its state was lost in a crash (`kill -9`, power loss) before
//! it reached the disk, or an operator deleted it. The stream, meanwhile, still holds every
//! message some consumer has not acked. With `DeliverPolicy::New` a re-created consumer
//! would start after the stream's last message and silently skip the group's whole backlog:
//! confirmed messages lost. With `All` it starts at the first message the stream still holds
//! on its subject, so nothing confirmed is skipped.
//!
//! What `All` means for a **brand-new group**: under interest retention the stream keeps a
//! message only while a consumer interested in its subject has not acked it. A new group's
//! consumer therefore gets, besides everything published from its creation on, the
//! messages of its topic that *other* groups have not acked yet (their backlog at that
//! moment; nothing older survives, and nothing at all when the other groups are caught up).
//! Messages published while no group existed were never kept. For the saga engine this is
//! harmless: a group is one saga's consumers on its own topics, and handlers are idempotent
//! under the at-least-once contract; a re-created consumer of an existing group may likewise
//! redeliver messages it had acked but another group had not.
//!
//! An existing consumer keeps the deliver policy it was created with (JetStream cannot change
//! it), so consumers created by an older version with `New` stay so until deleted.
//!
//! # Delivery
//! Publish waits for the JetStream publish ack. A message with a [`MESSAGE_ID_HEADER`] is
//! published with `Nats-Msg-Id` set from it: the stream drops a second message with the same
//! id within its duplicate window (the publish still succeeds); deliveries carry the id under
//! that header only. Acks are `+ACK`, a nack is `-NAK`; a nack with a delay **parks** the
//! delivery (a copy on the group's parking subject, the original acked; module [`parked`]) so
//! that its wait holds none of the consumer's `max_ack_pending` slots; a dead letter
//! is published (and acked by the stream) to the dead-letter subject with the reason header
//! (and a `Nats-Msg-Id` derived from the original's, `{id}/dead-letter`), then the original
//! is terminated (`+TERM`). What a handler
//! never settled (crash, abort) is redelivered after the ack wait
//! ([`TransportConfig::ack_wait`], 5 s by default). While a handler runs, the subscriber
//! sends an in-progress ack (`+WPI`) every third of the ack wait, which restarts the server's
//! ack timer: a handler may take longer than the ack wait without being redelivered, while a
//! dead replica's deliveries come back within one ack wait.
//!
//! # Concurrency
//! The consumer's `max_ack_pending` is the subscription's concurrency. **This cap is global
//! across every replica of the group** (the server counts unacked messages per consumer, and
//! all replicas share the durable consumer), unlike RabbitMQ's prefetch, which is per
//! subscriber. Each subscriber also runs at most `concurrency` handlers itself. The first
//! subscription of a group creates the consumer; a later one whose configured concurrency,
//! ack wait or delivery bound differs updates it (the latest subscriber's configuration wins).
//! A parked delivery waits on its group's parking consumer (uncapped) and, once due, is
//! handled within the subscriber's own cap but outside the shared one: the global cap bounds
//! first deliveries and plain redeliveries, not retries coming back from their delay.
//!
//! # Bounded delivery
//! [`Delivery::delivery_count`] is the server's count (`delivered` of the message info).
//! Consumers get `max_deliver = max_deliveries + 1`
//! ([`TransportConfig::max_deliveries`]): the engine dead-letters the delivery past its bound,
//! and should it not settle it, the server stops redelivering the message after that.
//!
//! # Limits and reconnection
//! The largest message is the smaller of [`TransportConfig::max_payload`] and the server's
//! `max_payload` (1 MiB by default, headers included); larger ones are refused before
//! sending. The client reconnects by itself; pull subscriptions are re-created when their
//! stream ends.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, FromConsumer, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{HeaderMap, Subject};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::config::check_size;
use super::dispatch::{self, Pending, Source};
use super::headers::PackedHeaders;
use super::{
    DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SUFFIX, Delivery, Disposition, Handler, Headers,
    MESSAGE_ID_HEADER, Message, NatsAuth, Reason, SubscribeOptions, Subscription, Transport,
    TransportConfig, TransportError, dead_letter_topic,
};
use crate::redact::{redact_url, secrets_of};
use crate::tls::ClientTls;

mod parked;

const BROKER: &str = "NATS";

/// What a durable consumer is for.
#[derive(Clone, Copy, Debug)]
enum ConsumerKind {
    /// A topic's (or a dead-letter topic's) consumer: at most `concurrency` deliveries
    /// unacked at once, across every replica of the group.
    Topic { concurrency: usize },
    /// A group's parking ([`parked`]): no cap on the copies waiting, none ever given up on.
    Parking,
}

/// A NATS JetStream transport: one client, one stream per prefix, one durable pull consumer
/// per (topic, group). Cheap to clone.
#[derive(Clone)]
pub struct NatsTransport {
    inner: Arc<Inner>,
}

impl fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsTransport")
            .field("address", &self.inner.address)
            .field("stream", &self.inner.stream_name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: TransportConfig,
    address: String,
    jetstream: Context,
    /// The client of `jetstream`, for acks.
    client: async_nats::Client,
    stream: stream::Stream,
    stream_name: String,
    max_payload: usize,
}

/// A name JetStream accepts for streams and consumers.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' | '/' | '\\' => '_',
            c => c,
        })
        .collect()
}

/// Size of a message on the wire as the server checks it against `max_payload`: payload
/// plus the encoded header block (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`).
fn nats_size(message: &Message) -> usize {
    let headers = if message.headers.is_empty() {
        0
    } else {
        12 + message
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
    };
    message.payload.len() + headers
}

/// The message's headers, plus `Nats-Msg-Id` from [`MESSAGE_ID_HEADER`] when present.
fn to_header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (key, value) in headers {
        map.insert(key.as_str(), value.as_str());
    }
    if let Some(id) = headers.get(MESSAGE_ID_HEADER) {
        map.insert(NATS_MESSAGE_ID, id.as_str());
    }
    map
}

/// Every value of `map`, packed in one allocation.
fn pack_header_map(map: Option<&HeaderMap>) -> PackedHeaders {
    PackedHeaders::pack(
        map.into_iter()
            .flat_map(HeaderMap::iter)
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |value| (name.as_ref(), value.as_str()))
            }),
    )
}

/// The delivered headers, without the server's `Nats-Msg-Id` (the id stays under
/// [`MESSAGE_ID_HEADER`]).
fn from_header_map(map: Option<&HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    if let Some(map) = map {
        for (key, values) in map.iter() {
            let name: &str = key.as_ref();
            if name.eq_ignore_ascii_case(NATS_MESSAGE_ID.as_ref()) || parked::is_bookkeeping(name) {
                continue;
            }
            if let Some(value) = values.first() {
                headers.insert(key.to_string(), value.as_str().to_owned());
            }
        }
    }
    headers
}

impl NatsTransport {
    /// Connects to `url` (`nats://127.0.0.1:4222`, `tls://host:4222`) and creates (or
    /// reuses) the prefix's stream. Fails with [`TransportError::Connect`] naming the address
    /// when the URL is bad, the server does not answer within
    /// [`connect_timeout`](TransportConfig::connect_timeout), JetStream is off, or TLS cannot
    /// be had.
    ///
    /// TLS is required (the client never talks plaintext, to this server or to one it
    /// discovers or reconnects to) when the URL is `tls://` or [`TransportConfig::tls`] has a
    /// file set: the CA file is trusted besides the system's roots, the client certificate is
    /// presented for mutual TLS. A `nats://` URL also gets TLS when the server requires it.
    /// Credentials come from the URL (`user:password@`, `token@`) or, by file reference,
    /// from [`TransportConfig::nats_auth`] (a `.creds` file, an nkey seed, a token), never
    /// both.
    pub async fn connect(url: &str, config: TransportConfig) -> Result<Self, TransportError> {
        let timeout = config.connect_timeout;
        let address = redact_url(url);
        let mut secrets = secrets_of(url);
        let stream_name = sanitize(&config.topic_prefix);
        let split = split_credentials(url)
            .and_then(|(server, url_credentials)| {
                Ok((server, credentials(url_credentials, &config.nats_auth)?))
            })
            .map_err(|reason| reason.scrubbed(&secrets).connect(BROKER, &address));
        let (server, credentials) = split?;
        secrets.extend(credentials.secrets());
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        let connect_error = |reason: Reason| reason.scrubbed(&secrets).connect(BROKER, &address);
        let attempt = async {
            let options = async_nats::ConnectOptions::new()
                .name(&config.connection_name)
                .connection_timeout(timeout);
            let options = secure(options, &server, &config.tls)?;
            let options = credentials.apply(options).await?;
            let client = options
                .connect(server.as_str())
                .await
                .map_err(|e| Reason::caused_by("cannot connect", e))?;
            let max_payload = client.server_info().max_payload;
            let jetstream = jetstream::new(client);
            let stream = jetstream
                .get_or_create_stream(stream::Config {
                    name: stream_name.clone(),
                    subjects: vec![format!("{}.>", config.topic_prefix)],
                    retention: RetentionPolicy::Interest,
                    storage: StorageType::File,
                    num_replicas: config.nats_replicas.max(1),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    Reason::caused_by(format!("cannot create JetStream stream `{stream_name}`"), e)
                })?;
            Ok::<_, Reason>((jetstream, stream, max_payload))
        };
        let (jetstream, stream, max_payload) = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(reason)) => return Err(connect_error(reason)),
            Err(_) => {
                return Err(connect_error(Reason::from(format!(
                    "no answer within {timeout:?}; is the server running with JetStream (-js)?"
                ))));
            }
        };
        let max_payload = if max_payload == 0 {
            config.max_payload
        } else {
            max_payload.min(config.max_payload)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                address,
                client: jetstream.client(),
                jetstream,
                stream,
                stream_name,
                max_payload,
            }),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The largest message (payload plus headers) it accepts, in bytes.
    pub fn max_payload(&self) -> usize {
        self.inner.max_payload
    }

    /// Deletes the prefix's stream with its consumers and messages. For tests and teardown:
    /// stop the subscriptions first.
    pub async fn delete_topology(&self) -> Result<(), TransportError> {
        self.inner
            .jetstream
            .delete_stream(&self.inner.stream_name)
            .await
            .map(drop)
            .map_err(|e| {
                Reason::caused_by(
                    format!("cannot delete stream `{}`", self.inner.stream_name),
                    e,
                )
                .connect(BROKER, &self.inner.address)
            })
    }
}

/// How a NATS URL authenticates.
enum Credentials {
    None,
    /// `nats://TOKEN@host`.
    Token(String),
    /// `nats://user:password@host`.
    UserAndPassword(String, String),
    /// An nkey seed, from [`NatsAuth::nkey_file`].
    Nkey(String),
    /// A `.creds` file, [`NatsAuth::credentials_file`].
    File(std::path::PathBuf),
}

/// `options` with TLS required when `server` is `tls://` or `tls` has a file set, trusting
/// its CA and presenting its client certificate (files checked here, so a bad one is named).
fn secure(
    options: async_nats::ConnectOptions,
    server: &str,
    tls: &ClientTls,
) -> Result<async_nats::ConnectOptions, Reason> {
    if !(server.starts_with("tls://") || tls.is_configured()) {
        return Ok(options);
    }
    tls.load()
        .map_err(|e| Reason::caused_by("invalid TLS settings", e))?;
    let mut options = options.require_tls(true);
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

/// The URL's `credentials`, or those `auth` refers to (read here, so their secrets can be
/// scrubbed from errors): at most one source.
fn credentials(credentials: Credentials, auth: &NatsAuth) -> Result<Credentials, Reason> {
    let set = [
        auth.credentials_file.is_some(),
        auth.nkey_file.is_some(),
        auth.token_file.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    if set == 0 {
        return Ok(credentials);
    }
    if set > 1 || !matches!(credentials, Credentials::None) {
        return Err(Reason::from(
            "more than one NATS credential: give either the URL's user:password@ or token@, or one of `nats_auth`'s credentials_file, nkey_file and token_file".to_string(),
        ));
    }
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .map_err(|e| {
                Reason::caused_by(
                    format!("cannot read the NATS {what} file `{}`", path.display()),
                    e,
                )
            })
    };
    Ok(
        match (&auth.credentials_file, &auth.nkey_file, &auth.token_file) {
            (Some(path), _, _) => Credentials::File(path.clone()),
            (_, Some(path), _) => Credentials::Nkey(read("nkey seed", path)?),
            (_, _, Some(path)) => Credentials::Token(read("token", path)?),
            _ => Credentials::None,
        },
    )
}

impl Credentials {
    /// The secrets to scrub from errors, besides the URL's (3 bytes or more, as
    /// [`secrets_of`]'s).
    fn secrets(&self) -> Vec<String> {
        let secret = match self {
            Credentials::Token(secret) | Credentials::Nkey(secret) => secret,
            Credentials::UserAndPassword(_, password) => password,
            Credentials::None | Credentials::File(_) => return Vec::new(),
        };
        [secret.clone()]
            .into_iter()
            .filter(|secret| secret.len() >= 3)
            .collect()
    }

    /// `options` authenticating with these credentials.
    async fn apply(
        self,
        options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, Reason> {
        Ok(match self {
            Credentials::None => options,
            Credentials::Token(token) => options.token(token),
            Credentials::UserAndPassword(user, password) => {
                options.user_and_password(user, password)
            }
            Credentials::Nkey(seed) => options.nkey(seed),
            Credentials::File(path) => options.credentials_file(&path).await.map_err(|e| {
                Reason::caused_by(
                    format!("cannot use the NATS credentials file `{}`", path.display()),
                    e,
                )
            })?,
        })
    }
}

/// The server address of `url` (scheme, host and port only) and its credentials, so they are
/// handed to the client as options and never appear in a server address the client logs or
/// reports; a path or a query is not part of a NATS server address and is dropped. Text that
/// is not a URL with a host is refused here, before the client sees it.
fn split_credentials(url: &str) -> Result<(String, Credentials), Reason> {
    let invalid = format!(
        "invalid NATS URL `{}`: expected nats:// or tls://[user:password@ or token@]host[:port]",
        redact_url(url)
    );
    let parsed = match url::Url::parse(url) {
        Ok(parsed) if parsed.has_host() => parsed,
        Ok(_) => return Err(Reason::from(invalid)),
        Err(error) => return Err(Reason::caused_by(invalid, error)),
    };
    let decode = crate::redact::percent_decode;
    let user = decode(parsed.username());
    let credentials = match parsed.password().map(decode) {
        Some(password) => Credentials::UserAndPassword(user, password),
        None if !user.is_empty() => Credentials::Token(user),
        None => Credentials::None,
    };
    let host = parsed.host_str().unwrap_or_default();
    let server = match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    };
    Ok((server, credentials))
}

impl Inner {
    /// Gets or creates the durable consumer of (topic, group). With `update`, an existing one
    /// whose concurrency (`max_ack_pending`), ack wait or `max_deliver` differ from the
    /// configuration is updated: the latest subscriber's configuration wins.
    async fn consumer(
        &self,
        topic: &str,
        group: &str,
        kind: ConsumerKind,
        update: bool,
    ) -> Result<PullConsumer, Reason> {
        let (max_ack_pending, max_deliver) = match kind {
            // One past the engine's bound, so the engine sees (and dead-letters) the
            // delivery over it before the server gives up on the message. Dead letters are
            // never given up on: an operator reads them (each read redelivers them) until
            // they are replayed.
            ConsumerKind::Topic { concurrency } => (
                i64::try_from(concurrency).unwrap_or(i64::MAX),
                if topic.ends_with(DEAD_LETTER_SUFFIX) {
                    -1
                } else {
                    i64::from(self.config.max_deliveries) + 1
                },
            ),
            // A parked copy waits out its delay here; the delivery count it carries is the
            // one the engine bounds.
            ConsumerKind::Parking => (-1, -1),
        };
        let name = sanitize(&format!("{topic}__{group}"));
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: self.config.physical_topic(topic),
            ack_policy: AckPolicy::Explicit,
            // Never `New`: a consumer re-created after its state was lost must deliver the
            // backlog the stream kept (module docs).
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.config.ack_wait,
            max_ack_pending,
            max_deliver,
            ..Default::default()
        };
        let context = format!("{BROKER} at {}: consumer `{name}`", self.address);
        let error = |e: async_nats::Error| Reason::caused_by_boxed(context.clone(), e);
        let consumer = self
            .stream
            .get_or_create_consumer(&name, config.clone())
            .await
            .map_err(|e| error(e.into()))?;
        let current = &consumer.cached_info().config;
        if update
            && (current.max_ack_pending != config.max_ack_pending
                || current.ack_wait != config.ack_wait
                || current.max_deliver != config.max_deliver)
        {
            // Only the settings JetStream lets us change; the rest (deliver policy above all)
            // stays as the consumer was created.
            let current = pull::Config::try_from_consumer_config(current.clone()).map_err(error)?;
            let updated = pull::Config {
                max_ack_pending: config.max_ack_pending,
                ack_wait: config.ack_wait,
                max_deliver: config.max_deliver,
                ..current
            };
            return self
                .stream
                .update_consumer(updated)
                .await
                .map_err(|e| error(e.into()));
        }
        Ok(consumer)
    }

    async fn messages(
        &self,
        topic: &str,
        group: &str,
        kind: ConsumerKind,
        batch: usize,
    ) -> Result<pull::Stream, Reason> {
        self.consumer(topic, group, kind, true)
            .await?
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(3))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| {
                Reason::caused_by(
                    format!("{BROKER} at {}: pull on `{topic}`", self.address),
                    e,
                )
            })
    }

    async fn publish_raw(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<(), Reason> {
        self.jetstream
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| Reason::caused_by("the publish was refused", e))?
            .await
            .map(drop)
            .map_err(|e| Reason::caused_by("no publish ack", e))
    }
}

impl Transport for NatsTransport {
    fn config(&self) -> &TransportConfig {
        NatsTransport::config(self)
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            check_size(topic, nats_size(&message), self.inner.max_payload)?;
            self.inner
                .publish_raw(
                    self.inner.config.physical_topic(topic),
                    to_header_map(&message.headers),
                    message.payload,
                )
                .await
                .map_err(|reason| {
                    reason
                        .context(format_args!("{BROKER} at {}", self.inner.address))
                        .publish(topic)
                })
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        options: SubscribeOptions,
        handler: Arc<dyn Handler>,
    ) -> BoxFuture<'a, Result<Subscription, TransportError>> {
        Box::pin(async move {
            let concurrency = options.concurrency.max(1);
            let subscribe_error = |reason: Reason| reason.subscribe(topic);
            // Dead letters of this group are kept by the same group on the dead-letter topic.
            let kind = ConsumerKind::Topic { concurrency };
            self.inner
                .consumer(&dead_letter_topic(topic), &options.group, kind, false)
                .await
                .map_err(subscribe_error)?;
            let group = options.group.as_str();
            // The parking consumer exists before any delivery can be parked: the stream keeps
            // a message only for the consumers there are when it is published.
            let parking = parked::parking_topic(topic, group);
            let main = Puller::start(&self.inner, topic, group, kind, concurrency).await;
            let parked = Puller::start(
                &self.inner,
                &parking,
                group,
                ConsumerKind::Parking,
                concurrency,
            )
            .await;
            let source = NatsSource {
                names: Arc::new(Names {
                    topic: topic.into(),
                    group: group.into(),
                }),
                main: main.map_err(subscribe_error)?,
                parked: parked.map_err(subscribe_error)?,
            };
            Ok(dispatch::spawn(source, handler, concurrency, topic))
        })
    }

    fn backend(&self) -> &'static str {
        "nats"
    }

    /// Up when the client is connected and JetStream answers a stream info request for the
    /// prefix's stream (one round trip), which it does only once the server's JetStream is
    /// ready again after a restart, with the stream still there.
    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let down = |reason: Reason| reason.connect(BROKER, &inner.address);
            let state = inner.jetstream.client().connection_state();
            if state != async_nats::connection::State::Connected {
                return Err(down(Reason::from(format!("the client is {state:?}"))));
            }
            inner
                .jetstream
                .get_stream(&inner.stream_name)
                .await
                .map(drop)
                .map_err(|e| down(Reason::caused_by("JetStream does not answer", e)))
        })
    }
}

/// One durable consumer's pull stream, made again when it fails or ends.
struct Puller {
    inner: Arc<Inner>,
    topic: String,
    group: String,
    kind: ConsumerKind,
    batch: usize,
    messages: Option<pull::Stream>,
}

impl Puller {
    /// Gets or creates the consumer and starts pulling from it.
    async fn start(
        inner: &Arc<Inner>,
        topic: &str,
        group: &str,
        kind: ConsumerKind,
        batch: usize,
    ) -> Result<Self, Reason> {
        let messages = inner.messages(topic, group, kind, batch).await?;
        Ok(Self {
            inner: inner.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            kind,
            batch,
            messages: Some(messages),
        })
    }

    /// The next message; a failed or ended pull is started again (with backoff) until one
    /// comes. Cancel safe: a message is only taken out of the stream when it is returned.
    async fn next(&mut self) -> jetstream::Message {
        loop {
            if let Some(messages) = self.messages.as_mut() {
                match messages.next().await {
                    Some(Ok(message)) => return message,
                    Some(Err(error)) => {
                        // A failed pull (missed heartbeats, a reconnection whose consumer
                        // check failed) may leave no pull request pending on the server:
                        // start a fresh stream rather than wait for the old one to expire.
                        tracing::warn!(topic = %self.topic, %error, "NATS pull failed; re-creating the pull stream");
                        self.messages = None;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None => {
                        tracing::warn!(topic = %self.topic, "NATS pull stream ended; re-creating it");
                        self.messages = None;
                    }
                }
            }
            let recreated = (|| {
                self.inner
                    .messages(&self.topic, &self.group, self.kind, self.batch)
            })
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter()
                    .without_max_times(),
            )
            .notify(|error, after| {
                tracing::warn!(topic = %self.topic, %error, ?after, "NATS resubscribe failed; retrying");
            })
            .await;
            self.messages = recreated.ok();
        }
    }

    /// What was pulled but never handed out.
    fn buffered(&mut self) -> Vec<jetstream::Message> {
        let mut buffered = Vec::new();
        if let Some(mut messages) = self.messages.take() {
            while let Some(Some(Ok(message))) = messages.next().now_or_never() {
                buffered.push(message);
            }
        }
        buffered
    }
}

/// How many times the server delivered `message` (this delivery included).
fn delivered(message: &jetstream::Message) -> u32 {
    message
        .info()
        .map(|info| u32::try_from(info.delivered).unwrap_or(1))
        .unwrap_or(1)
        .max(1)
}

/// The topic and group of a subscription, shared by its deliveries.
struct Names {
    topic: Box<str>,
    group: Box<str>,
}

/// A subscription's deliveries: its topic's consumer, and the parked copies of its group
/// once they are due ([`parked`]).
struct NatsSource {
    names: Arc<Names>,
    main: Puller,
    parked: Puller,
}

impl NatsSource {
    /// The delivery of `message`, which the server delivered `delivered` times that count
    /// (its parked copies' counts are carried on from their headers).
    fn delivery(&self, message: jetstream::Message, delivered: u32) -> (Delivery, NatsPending) {
        // The pending delivery keeps what its acks, a dead letter and a parked copy need, held
        // for as long as the step runs: not the whole message (432 bytes, and its `HeaderMap`
        // of ~0.57 KB; packed, the headers take ~0.15 KB).
        let jetstream::Message {
            message:
                async_nats::Message {
                    reply,
                    payload,
                    headers,
                    ..
                },
            ..
        } = message;
        let deliveries = parked::carried_deliveries(headers.as_ref()).saturating_add(delivered);
        let delivery = Delivery {
            topic: self.names.topic.to_string(),
            headers: from_header_map(headers.as_ref()),
            payload: payload.clone(),
            delivery_count: deliveries,
        };
        let pending = NatsPending {
            inner: self.main.inner.clone(),
            names: self.names.clone(),
            deliveries,
            reply,
            payload,
            headers: pack_header_map(headers.as_ref()),
        };
        (delivery, pending)
    }
}

impl Source for NatsSource {
    type Pending = NatsPending;

    async fn next(&mut self) -> Option<(Delivery, NatsPending)> {
        loop {
            tokio::select! {
                message = self.main.next() => {
                    let delivered = delivered(&message);
                    return Some(self.delivery(message, delivered));
                }
                message = self.parked.next() => {
                    let left = parked::time_left(message.headers.as_ref());
                    let delivered = delivered(&message);
                    if left.is_none() && delivered > 1 {
                        // Its first delivery here only started its wait: that one does not
                        // count.
                        return Some(self.delivery(message, delivered - 1));
                    }
                    // Not due, or its first delivery (which only starts the wait, even when
                    // already due, so that the delivery count stays exact): it waits on the
                    // parking consumer, holding no slot of the topic's.
                    if let Err(error) = message.ack_with(AckKind::Nak(left)).await {
                        tracing::debug!(topic = %self.names.topic, %error, "NATS nack of a parked copy failed; it comes back after the ack wait");
                    }
                }
            }
        }
    }

    async fn close(mut self) {
        // Hand back what was pulled but never given to the handler, so the group gets it now
        // rather than after the ack wait (a parked copy: when it is due).
        for message in self.main.buffered() {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        for message in self.parked.buffered() {
            let left = parked::time_left(message.headers.as_ref());
            let _ = message.ack_with(AckKind::Nak(left)).await;
        }
    }
}

/// An unsettled JetStream delivery; dropped unsettled, the server redelivers it after the
/// ack wait.
struct NatsPending {
    inner: Arc<Inner>,
    names: Arc<Names>,
    /// Its delivery count (carried over its parked copies).
    deliveries: u32,
    /// Where its acks go: the message's reply subject (`None`: not a JetStream message).
    reply: Option<Subject>,
    /// The message's payload and headers as delivered, for a dead letter or a parked copy.
    payload: Bytes,
    headers: PackedHeaders,
}

impl Pending for NatsPending {
    /// A third of the ack wait: two signals may be lost before the server redelivers.
    fn progress_interval(&self) -> Option<Duration> {
        Some(self.inner.config.ack_wait / 3)
    }

    async fn progress(&self) {
        if let Err(error) = self.ack(AckKind::Progress).await {
            tracing::debug!(topic = %self.names.topic, %error, "NATS in-progress ack failed");
        }
    }

    async fn settle(self, disposition: Disposition) {
        let kind = match disposition {
            Disposition::Ack => AckKind::Ack,
            Disposition::Nack { delay: Some(delay) } if !delay.is_zero() => self.park(delay).await,
            Disposition::Nack { delay } => AckKind::Nak(delay),
            Disposition::DeadLetter { reason } => self.dead_letter(reason).await,
        };
        if let Err(error) = self.ack(kind).await {
            tracing::warn!(topic = %self.names.topic, %error, "NATS ack failed; the message will be redelivered after the ack wait");
        }
    }
}

impl NatsPending {
    /// Sends `kind` for this delivery as `jetstream::Message::ack_with` does: one publish to
    /// the reply subject, not awaiting the server.
    async fn ack(&self, kind: AckKind) -> Result<(), async_nats::Error> {
        let Some(reply) = &self.reply else {
            return Err("no reply subject: not a JetStream message".into());
        };
        Ok(self
            .inner
            .client
            .publish(reply.clone(), kind.into())
            .await?)
    }

    /// Parks the delivery for `delay` ([`parked`]) and acks it; if the copy cannot be
    /// published, nacks it with the delay (it then holds its consumer slot meanwhile).
    async fn park(&self, delay: Duration) -> AckKind {
        let Names { topic, group } = &*self.names;
        let payload = self.payload.clone();
        match parked::park(
            &self.inner,
            topic,
            group,
            &self.headers,
            self.deliveries,
            delay,
            payload,
        )
        .await
        {
            Ok(()) => AckKind::Ack,
            Err(error) => {
                tracing::warn!(%topic, %error, ?delay, "NATS: cannot park the delivery for its delay; nacked with the delay instead");
                AckKind::Nak(Some(delay))
            }
        }
    }

    /// Publishes the dead letter (the delivery's headers without the transport's bookkeeping,
    /// and the reason); `+TERM` once the stream has it, else a nack to try again.
    async fn dead_letter(&self, reason: String) -> AckKind {
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers.pairs() {
            if !parked::is_bookkeeping(name) {
                headers.append(name, value);
            }
        }
        headers.insert(DEAD_LETTER_REASON_HEADER, reason.as_str());
        // The original's id would make the stream drop the dead letter as a duplicate of it;
        // a derived one still deduplicates a dead letter published twice (redelivered after
        // a crash between the publish and the `+TERM`).
        let original_id = headers.get(NATS_MESSAGE_ID).map(|id| id.to_string());
        if let Some(id) = original_id {
            headers.insert(NATS_MESSAGE_ID, format!("{id}/dead-letter").as_str());
        }
        let topic = &self.names.topic;
        let subject = self.inner.config.physical_topic(&dead_letter_topic(topic));
        match self
            .inner
            .publish_raw(subject, headers, self.payload.clone())
            .await
        {
            Ok(()) => AckKind::Term,
            Err(error) => {
                tracing::warn!(%topic, %error, "NATS dead-letter publish failed; message nacked");
                AckKind::Nak(Some(Duration::from_secs(1)))
            }
        }
    }
}
