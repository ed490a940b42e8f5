//! The guard in front of the embedded broker: what devices reach on
//! HEARTH_MQTT_LISTEN. rumqttd 0.20 checks only a CONNECT's login and has
//! no per-topic authorization, so Hearth listens itself, reads each MQTT
//! 3.1.1 packet a client sends (rumqttc's `mqttbytes` codec), and forwards it
//! to rumqttd on a loopback port of its own only if the client may send it
//! ([`BrokerClient`]'s rules):
//!
//! - a CONNECT with a bad login, a client id that is not the client's, or a
//!   last will on a topic it may not publish gets CONNACK refused;
//! - a PUBLISH it may not send is dropped, and acknowledged as if delivered
//!   (PUBACK, or PUBREC/PUBCOMP for QoS 2), as Mosquitto answers an MQTT 3.1.1
//!   client;
//! - a SUBSCRIBE's refused filters get the failure code 0x80 in the SUBACK
//!   (the others are forwarded);
//! - what rumqttd delivers to an API token's connection passes only if the
//!   token may receive it ([`BrokerClient::may_receive`]: it may subscribe
//!   with wildcards over homes, as a gateway and Home Assistant do); the
//!   rest is acknowledged to rumqttd in the client's place (in order with
//!   the client's own acknowledgements, as rumqttd needs) and dropped; such
//!   a connection is granted QoS 1 at most;
//! - an anonymous connection of open mode is closed when open mode ends,
//!   a device's connections when its credential is rotated or revoked, and
//!   a token's when it is revoked.
//!
//! Each refusal is counted (`hearth_mqtt_refused_total{reason}`) and, at a
//! limited rate, logged naming the client and topic and written to the
//! audit log.
//!
//! With HEARTH_TLS_CERT_FILE set, the guard is where TLS ends (`mqtts://`):
//! rumqttd behind it only ever sees loopback.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use hearth_proto::topics::{HomeAssistantTopics, Topics};
use hearth_runtime::tls::{TlsAcceptor, HANDSHAKE_WITHIN};
use rumqttc::mqttbytes::{
    self,
    v4::{
        ConnAck, ConnectReturnCode, Login, Packet, PubAck, PubComp, PubRec, SubAck,
        SubscribeReasonCode,
    },
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    access::Access,
    credentials::BrokerLogins,
    domain::{BrokerClient, BrokerRefusal, HomeId},
    metrics::Metrics,
};

/// The largest packet taken from a client (rumqttd's own limit is the same).
const MAX_PACKET: usize = 256 * 1024 + 1024;
/// The largest packet passed on from rumqttd (which itself takes nothing
/// over [`MAX_PACKET`]; a margin, not a limit devices meet).
const MAX_FROM_BROKER: usize = 4 * 1024 * 1024;
/// How long a new connection has to send its CONNECT.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// Refusals logged (and audited) per [`LOG_WINDOW`]; the rest are counted.
const LOGGED_PER_WINDOW: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(60);

pub struct Guard {
    pub logins: Arc<BrokerLogins>,
    pub access: Arc<Access>,
    pub metrics: Arc<Metrics>,
    pub topics: Topics,
    /// Home Assistant's topics while Hearth's bridge to it is on: only then
    /// may a token reach them.
    pub home_assistant: Option<HomeAssistantTopics>,
    /// What the guard logs in to rumqttd with, in place of the client's
    /// login: rumqttd takes nothing else, so its port is no way around the
    /// guard.
    upstream_login: (String, String),
    /// Refusals logged in the current window, and when it began.
    logged: Mutex<(Instant, u32)>,
}

/// Binds HEARTH_MQTT_LISTEN, failing with a message naming the setting.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(listen).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "HEARTH_MQTT_LISTEN={listen}: the port is already taken (another MQTT broker?). \
             Choose another port with HEARTH_MQTT_LISTEN, or use that broker with HEARTH_MQTT_URL=mqtt://{listen}"
        ),
        Err(e) => bail!("HEARTH_MQTT_LISTEN={listen}: cannot listen there: {e}"),
    }
}

impl Guard {
    pub fn new(
        logins: Arc<BrokerLogins>,
        access: Arc<Access>,
        metrics: Arc<Metrics>,
        topics: Topics,
        home_assistant: Option<HomeAssistantTopics>,
        upstream_login: (String, String),
    ) -> Arc<Self> {
        Arc::new(Self {
            logins,
            access,
            metrics,
            topics,
            home_assistant,
            upstream_login,
            logged: Mutex::new((Instant::now(), 0)),
        })
    }

    /// Accepts on `listener` (through `tls` if given: `mqtts://`) and serves
    /// each connection through to `broker` until `stop`.
    pub fn spawn(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        broker: SocketAddr,
        stop: CancellationToken,
    ) {
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let (guard, stop, tls) = (self.clone(), stop.clone(), tls.clone());
                        tokio::spawn(async move {
                            let served = match tls {
                                None => guard.serve(stream, broker, stop).await,
                                Some(tls) => {
                                    match tokio::time::timeout(HANDSHAKE_WITHIN, tls.accept(stream))
                                        .await
                                    {
                                        Ok(Ok(stream)) => guard.serve(stream, broker, stop).await,
                                        Ok(Err(e)) => Err(anyhow::anyhow!("TLS handshake: {e}")),
                                        Err(_) => Err(anyhow::anyhow!("no TLS handshake in time")),
                                    }
                                }
                            };
                            if let Err(e) = served {
                                debug!(%peer, error = %e, "MQTT connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "accepting an MQTT connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }

    /// Counts a refusal and, within the rate, logs and audits it.
    /// `client`, once known, puts a device's or a token's refusals in its
    /// homes' audit logs, where the homes' admins read them.
    async fn refused(
        &self,
        reason: BrokerRefusal,
        who: &str,
        client: Option<&BrokerClient>,
        what: &str,
    ) {
        self.metrics.mqtt_refused(reason);
        let log = {
            let mut logged = self.logged.lock().expect("refusal log");
            if logged.0.elapsed() >= LOG_WINDOW {
                *logged = (Instant::now(), 0);
            }
            logged.1 += 1;
            logged.1 <= LOGGED_PER_WINDOW
        };
        if log {
            warn!(
                client = who,
                topic = what,
                reason = reason.as_str(),
                "MQTT refused"
            );
            // Why in each of a token's homes: their admins made it, and
            // read there what it tried.
            let homes: Vec<Option<&HomeId>> = match client {
                Some(BrokerClient::Device { home, .. }) => vec![Some(home)],
                Some(BrokerClient::Token { grants, .. }) => {
                    grants.iter().map(|g| Some(&g.home)).collect()
                }
                _ => vec![None],
            };
            let target = format!("{}: {what}", reason.as_str());
            for home in homes {
                self.access
                    .audit(who, "mqtt.refused", home, &target, false)
                    .await;
            }
        }
    }

    async fn serve(
        self: Arc<Self>,
        stream: impl AsyncRead + AsyncWrite + Send + 'static,
        broker: SocketAddr,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let (mut from_client, to_client) = tokio::io::split(stream);
        let mut to_client = to_client;
        let mut buf = BytesMut::with_capacity(4 * 1024);
        let frame = tokio::time::timeout(
            CONNECT_WITHIN,
            read_frame(&mut from_client, &mut buf, MAX_PACKET),
        )
        .await
        .context("no CONNECT in time")??;
        let connect = match Packet::read(&mut frame.clone(), MAX_PACKET) {
            Ok(Packet::Connect(c)) => c,
            Ok(_) => bail!("the first packet is not a CONNECT"),
            Err(e) => {
                // An MQTT 5 client, say: rumqttd here speaks 3.1.1.
                let _ = send(
                    &mut to_client,
                    Packet::ConnAck(ConnAck::new(
                        ConnectReturnCode::RefusedProtocolVersion,
                        false,
                    )),
                )
                .await;
                bail!("unreadable CONNECT: {e}");
            }
        };
        let login = connect.login.as_ref();
        let client = self
            .logins
            .login(
                login.map(|l| l.username.as_str()),
                login.map(|l| l.password.as_str()),
            )
            .await;
        let ha = self.home_assistant.as_ref();
        let who = match &client {
            Ok(BrokerClient::Token { name, .. }) => format!("token:{name}"),
            _ => login.map_or_else(
                || format!("anonymous ({})", connect.client_id),
                |l| l.username.clone(),
            ),
        };
        // Who logged in, for the audit of a client id or will refused.
        let known = client.as_ref().ok().cloned();
        let client = match client.and_then(|c| {
            c.may_use_client_id(&connect.client_id)?;
            if let Some(will) = &connect.last_will {
                c.may_publish(&self.topics, ha, &will.topic, will.retain)?;
            }
            Ok(c)
        }) {
            Ok(c) => c,
            Err(reason) => {
                let what = format!("client id {}", connect.client_id);
                self.refused(reason, &who, known.as_ref(), &what).await;
                let code = match reason {
                    BrokerRefusal::Credential => ConnectReturnCode::BadUserNamePassword,
                    BrokerRefusal::ClientId => ConnectReturnCode::BadClientId,
                    _ => ConnectReturnCode::NotAuthorized,
                };
                let _ = send(&mut to_client, Packet::ConnAck(ConnAck::new(code, false))).await;
                return Ok(());
            }
        };
        let ended = match &client {
            BrokerClient::Device { device, .. } => self.logins.watch(device),
            BrokerClient::Token { name, .. } => self.access.watch_api_token(name),
            _ => CancellationToken::new(),
        };

        let upstream = TcpStream::connect(broker)
            .await
            .context("reaching the embedded broker")?;
        let _ = upstream.set_nodelay(true);
        let (mut from_broker, mut to_broker) = upstream.into_split();
        let mut connect = connect;
        connect.login = Some(Login::new(
            self.upstream_login.0.as_str(),
            self.upstream_login.1.as_str(),
        ));
        send(&mut to_broker, Packet::Connect(connect)).await?;
        // Why shared: deliveries a token may not receive are acknowledged
        // to rumqttd from the downstream side.
        let to_broker = Arc::new(tokio::sync::Mutex::new(to_broker));
        let filtered = matches!(client, BrokerClient::Token { .. });
        let inflight: Arc<Mutex<Inflight>> = Arc::default();
        let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
        // SUBSCRIBEs with refused filters, by packet id: where the broker's
        // SUBACK gets a 0x80 inserted.
        let refused_filters: Arc<Mutex<HashMap<u16, Vec<usize>>>> = Arc::default();

        let downstream = {
            let to_client = to_client.clone();
            let refused_filters = refused_filters.clone();
            let (guard, client, to_broker) = (self.clone(), client.clone(), to_broker.clone());
            let inflight = inflight.clone();
            async move {
                let mut buf = BytesMut::with_capacity(16 * 1024);
                loop {
                    let frame = read_frame(&mut from_broker, &mut buf, MAX_FROM_BROKER).await?;
                    if filtered {
                        match guard.screen(&client, &frame) {
                            Delivery::Other => {}
                            Delivery::Publish { pkid: None, pass } => {
                                if !pass {
                                    continue;
                                }
                            }
                            Delivery::Publish {
                                pkid: Some(pkid),
                                pass,
                            } => {
                                let mut to_broker = to_broker.lock().await;
                                let owed =
                                    inflight.lock().expect("inflight").delivered(pkid, !pass);
                                for pkid in owed {
                                    send(&mut *to_broker, Packet::PubAck(PubAck::new(pkid)))
                                        .await?;
                                }
                                if !pass {
                                    continue;
                                }
                            }
                        }
                    }
                    // Only a SUBACK may need changing; the rest passes as read.
                    let is_suback = frame.first().is_some_and(|b| b >> 4 == 9);
                    let mut out = frame;
                    if is_suback {
                        if let Ok(Packet::SubAck(ack)) =
                            Packet::read(&mut out.clone(), MAX_FROM_BROKER)
                        {
                            let positions =
                                refused_filters.lock().expect("filters").remove(&ack.pkid);
                            if let Some(positions) = positions {
                                out = merged_suback(ack, &positions)?;
                            }
                        }
                    }
                    let mut to_client = to_client.lock().await;
                    to_client.write_all(&out).await?;
                    // Why: TLS holds written bytes until flushed (a no-op on TCP).
                    to_client.flush().await?;
                }
                #[allow(unreachable_code)]
                anyhow::Ok(())
            }
        };

        let upstream = {
            let guard = self.clone();
            let client = client.clone();
            async move {
                let ha = guard.home_assistant.as_ref();
                // QoS 2 publishes dropped, whose PUBREL gets our PUBCOMP.
                let mut dropped_qos2 = HashSet::new();
                loop {
                    let frame = read_frame(&mut from_client, &mut buf, MAX_PACKET).await?;
                    if client == BrokerClient::Anonymous && !guard.access.is_open() {
                        info!(
                            client = who,
                            "open mode ended: closing an anonymous MQTT connection"
                        );
                        return Ok(());
                    }
                    let kind = frame.first().map_or(0, |b| b >> 4);
                    // A token's PUBACK: acknowledgements owed for withheld
                    // deliveries after it follow it.
                    if filtered && kind == 4 {
                        let mut to_broker = to_broker.lock().await;
                        to_broker.write_all(&frame).await?;
                        if let Ok(Packet::PubAck(ack)) =
                            Packet::read(&mut frame.clone(), MAX_PACKET)
                        {
                            let owed = inflight.lock().expect("inflight").acked(ack.pkid);
                            for pkid in owed {
                                send(&mut *to_broker, Packet::PubAck(PubAck::new(pkid))).await?;
                            }
                        }
                        continue;
                    }
                    // PUBLISH, PUBREL, SUBSCRIBE: read; everything else passes.
                    if !matches!(kind, 3 | 6 | 8) {
                        to_broker.lock().await.write_all(&frame).await?;
                        continue;
                    }
                    match Packet::read(&mut frame.clone(), MAX_PACKET) {
                        Ok(Packet::Publish(p)) => {
                            match client.may_publish(&guard.topics, ha, &p.topic, p.retain) {
                                Ok(()) => to_broker.lock().await.write_all(&frame).await?,
                                Err(reason) => {
                                    guard.refused(reason, &who, Some(&client), &p.topic).await;
                                    let ack = match p.qos {
                                        rumqttc::QoS::AtMostOnce => None,
                                        rumqttc::QoS::AtLeastOnce => {
                                            Some(Packet::PubAck(PubAck::new(p.pkid)))
                                        }
                                        rumqttc::QoS::ExactlyOnce => {
                                            dropped_qos2.insert(p.pkid);
                                            Some(Packet::PubRec(PubRec::new(p.pkid)))
                                        }
                                    };
                                    if let Some(ack) = ack {
                                        send(&mut *to_client.lock().await, ack).await?;
                                    }
                                }
                            }
                        }
                        Ok(Packet::PubRel(rel)) if dropped_qos2.remove(&rel.pkid) => {
                            send(
                                &mut *to_client.lock().await,
                                Packet::PubComp(PubComp::new(rel.pkid)),
                            )
                            .await?;
                        }
                        Ok(Packet::Subscribe(mut sub)) => {
                            let mut refused = Vec::new();
                            for (i, f) in sub.filters.iter().enumerate() {
                                if let Err(reason) =
                                    client.may_subscribe(&guard.topics, ha, &f.path)
                                {
                                    guard.refused(reason, &who, Some(&client), &f.path).await;
                                    refused.push(i);
                                }
                            }
                            // Why: a withheld QoS 2 delivery would need its
                            // own handshake kept in order; QoS 1 does.
                            let capped = filtered
                                && sub
                                    .filters
                                    .iter()
                                    .any(|f| f.qos == rumqttc::QoS::ExactlyOnce);
                            for f in sub.filters.iter_mut() {
                                if filtered && f.qos == rumqttc::QoS::ExactlyOnce {
                                    f.qos = rumqttc::QoS::AtLeastOnce;
                                }
                            }
                            if refused.is_empty() && !capped {
                                to_broker.lock().await.write_all(&frame).await?;
                            } else if refused.len() == sub.filters.len() {
                                let codes = vec![SubscribeReasonCode::Failure; refused.len()];
                                send(
                                    &mut *to_client.lock().await,
                                    Packet::SubAck(SubAck::new(sub.pkid, codes)),
                                )
                                .await?;
                            } else {
                                let mut i = 0;
                                sub.filters.retain(|_| {
                                    i += 1;
                                    !refused.contains(&(i - 1))
                                });
                                if !refused.is_empty() {
                                    refused_filters
                                        .lock()
                                        .expect("filters")
                                        .insert(sub.pkid, refused);
                                }
                                let mut out = BytesMut::new();
                                Packet::Subscribe(sub)
                                    .write(&mut out, MAX_PACKET)
                                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                                to_broker.lock().await.write_all(&out).await?;
                            }
                        }
                        Ok(_) => to_broker.lock().await.write_all(&frame).await?,
                        Err(e) => bail!("unreadable packet: {e}"),
                    }
                }
            }
        };

        tokio::select! {
            r = downstream => r,
            r = upstream => r,
            _ = ended.cancelled() => {
                info!(client = %client_name(&client), "credential rotated or revoked: closing its MQTT connection");
                Ok(())
            }
            _ = stop.cancelled() => Ok(()),
        }
    }
}

/// A packet rumqttd sends a token's connection.
enum Delivery {
    /// Anything but a PUBLISH: passed on.
    Other,
    /// A PUBLISH (`pkid` if QoS 1), and whether the client may have it.
    Publish { pkid: Option<u16>, pass: bool },
}

impl Guard {
    /// Whether `frame` from rumqttd may reach `client`
    /// ([`BrokerClient::may_receive`]). QoS 2 never reaches a token's
    /// connection: its subscriptions are granted QoS 1 at most.
    fn screen(&self, client: &BrokerClient, frame: &[u8]) -> Delivery {
        if frame.first().map_or(0, |b| b >> 4) != 3 {
            return Delivery::Other;
        }
        match Packet::read(&mut BytesMut::from(frame), MAX_FROM_BROKER) {
            Ok(Packet::Publish(p)) => {
                let ha = self.home_assistant.as_ref();
                let pass = client.may_receive(&self.topics, ha, &p.topic);
                if !pass {
                    debug!(client = %client_name(client), topic = p.topic, "delivery withheld");
                }
                let pkid = (p.qos != rumqttc::QoS::AtMostOnce).then_some(p.pkid);
                Delivery::Publish { pkid, pass }
            }
            _ => Delivery::Other,
        }
    }
}

/// QoS 1 deliveries to a token's connection not yet acknowledged, in the
/// order rumqttd sent them, and whether each was withheld. Why: rumqttd
/// takes acknowledgements only in that order (it drops a connection that
/// acknowledges out of order), so the guard's for a withheld delivery waits
/// for the client's of every delivery before it.
#[derive(Default)]
struct Inflight(VecDeque<(u16, bool)>);

impl Inflight {
    /// Delivery `pkid` was passed on or `withheld`: the packet ids the guard
    /// now acknowledges, in order.
    fn delivered(&mut self, pkid: u16, withheld: bool) -> Vec<u16> {
        self.0.push_back((pkid, withheld));
        self.owed()
    }

    /// The client acknowledged `pkid`: the packet ids the guard now
    /// acknowledges after it, in order.
    fn acked(&mut self, pkid: u16) -> Vec<u16> {
        if let Some(i) = self
            .0
            .iter()
            .position(|&(p, withheld)| p == pkid && !withheld)
        {
            self.0.remove(i);
        }
        self.owed()
    }

    fn owed(&mut self) -> Vec<u16> {
        let mut owed = Vec::new();
        while let Some(&(pkid, true)) = self.0.front() {
            owed.push(pkid);
            self.0.pop_front();
        }
        owed
    }
}

fn client_name(client: &BrokerClient) -> String {
    match client {
        BrokerClient::Hearth => "hearth".into(),
        BrokerClient::Device { device, .. } => device.to_string(),
        BrokerClient::Token { name, .. } => format!("token:{name}"),
        BrokerClient::Anonymous => "anonymous".into(),
    }
}

/// The broker's SUBACK with a failure code put back at each of `refused`
/// (positions in the client's SUBSCRIBE, ascending).
fn merged_suback(ack: SubAck, refused: &[usize]) -> anyhow::Result<BytesMut> {
    let mut codes = ack.return_codes.into_iter();
    let total = codes.len() + refused.len();
    let merged = (0..total)
        .map(|i| match refused.contains(&i) {
            true => SubscribeReasonCode::Failure,
            false => codes.next().unwrap_or(SubscribeReasonCode::Failure),
        })
        .collect();
    let mut out = BytesMut::new();
    Packet::SubAck(SubAck::new(ack.pkid, merged))
        .write(&mut out, MAX_PACKET)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(out)
}

async fn send(to: &mut (impl AsyncWrite + Unpin), packet: Packet) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    packet
        .write(&mut out, MAX_PACKET)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    to.write_all(&out).await?;
    to.flush().await?;
    Ok(())
}

/// The next whole packet from `from` (at most `max` bytes), reading into
/// `buf` as needed.
async fn read_frame(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut BytesMut,
    max: usize,
) -> anyhow::Result<BytesMut> {
    loop {
        match mqttbytes::check(buf.iter(), max) {
            Ok(header) => return Ok(buf.split_to(header.frame_length())),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => bail!("bad packet: {e}"),
        }
        if from.read_buf(buf).await? == 0 {
            bail!("closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_of_withheld_deliveries_wait_for_the_clients_before_them() {
        let mut inflight = Inflight::default();
        assert_eq!(inflight.delivered(1, false), Vec::<u16>::new());
        assert_eq!(
            inflight.delivered(2, true),
            Vec::<u16>::new(),
            "1 is unacked"
        );
        assert_eq!(inflight.delivered(3, true), Vec::<u16>::new());
        assert_eq!(inflight.delivered(4, false), Vec::<u16>::new());
        assert_eq!(inflight.acked(1), vec![2, 3]);
        assert_eq!(
            inflight.delivered(5, true),
            Vec::<u16>::new(),
            "4 is unacked"
        );
        assert_eq!(inflight.acked(4), vec![5]);
        assert_eq!(inflight.delivered(6, true), vec![6], "nothing before it");
        assert!(inflight.0.is_empty());
    }

    #[test]
    fn a_suback_gets_failures_back_where_filters_were_refused() {
        let ack = SubAck::new(
            7,
            vec![
                SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce),
                SubscribeReasonCode::Success(rumqttc::QoS::AtMostOnce),
            ],
        );
        let mut out = merged_suback(ack, &[0, 2]).unwrap();
        let Ok(Packet::SubAck(merged)) = Packet::read(&mut out, MAX_PACKET) else {
            panic!("a SUBACK");
        };
        assert_eq!(
            merged.return_codes,
            vec![
                SubscribeReasonCode::Failure,
                SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
                SubscribeReasonCode::Success(rumqttc::QoS::AtMostOnce),
            ]
        );
    }
}
