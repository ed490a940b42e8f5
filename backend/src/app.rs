//! Start-up and the run loop.
//!
//! [`App::build`] binds the HTTP listener, starts or reaches the broker,
//! opens storage and connects MQTT, failing with an error that names the
//! setting at fault. [`App::run_until`] serves until the shutdown future
//! resolves, then stops intake and drains the ingest queue, so a rolling
//! update loses nothing that was accepted.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::routing::get;
use hearth_proto::v1::{
    auth_service_server::AuthServiceServer, automation_service_server::AutomationServiceServer,
    device_service_server::DeviceServiceServer, telemetry_service_server::TelemetryServiceServer,
};
use hearth_runtime::{
    tls::{ServerTls, TlsAcceptor},
    Clock,
};
use http::{header, HeaderName};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes, transport::Server};
use tonic_health::{
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
    ServingStatus,
};
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer as _;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::{debug, info, warn};

use crate::{
    access::{self, Access, Gate, GateLayer},
    core::Core,
    credentials::BrokerLogins,
    delivery, demo,
    grpc::{AuthApi, AutomationApi, DeviceApi, TelemetryApi},
    ingest::{self, IngestItem},
    intake::{DeviceRates, Intake},
    limits::Limits,
    listener,
    metrics::Metrics,
    mqtt,
    rollup::Rollups,
    settings::{Exposed, MqttBroker, Settings},
    storage, web,
};

/// Inbound MQTT messages buffered between the connection and intake.
const INBOX_CAPACITY: usize = 1_024;

pub struct App {
    listener: TcpListener,
    /// TLS on `listener` (HEARTH_TLS_CERT_FILE), the certificate kept current.
    http_tls: Option<TlsAcceptor>,
    http_addr: SocketAddr,
    /// The broker devices reach (no login in it: it is logged).
    mqtt_url: String,
    /// The broker with Hearth's own login, for its connections.
    backend_url: String,
    /// Where the demo home's devices connect.
    demo_url: String,
    /// Stops the guard in front of the embedded broker and the dynamic
    /// security connection, after everything else.
    broker_stop: CancellationToken,
    settings: Settings,
    core: Arc<Core>,
    /// The control (or commands) lane, and the readings lane on an ingest
    /// replica (see [`mqtt::Lane`]).
    lanes: Vec<mqtt::Connection>,
    /// This replica's name in news to the other replicas (external broker only).
    news: Option<String>,
    /// This replica's name (HEARTH_REPLICA, or a random one).
    replica: String,
    ingest_rx: tokio::sync::mpsc::Receiver<IngestItem>,
}

impl App {
    /// Starts everything but serving, on the system clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// [`App::build`] with the clock every part reads "now" from, so tests can
    /// control it.
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("HEARTH_LISTEN={}: cannot listen there", settings.listen))?;
        let http_addr = listener.local_addr().context("reading the bound address")?;
        let tls = match &settings.tls {
            Some(files) => Some(
                ServerTls::load(&files.cert, &files.key)
                    .context("HEARTH_TLS_CERT_FILE and HEARTH_TLS_KEY_FILE")?,
            ),
            None => None,
        };
        // What rumqttd takes from the guard in place of each client's login.
        let upstream_login = ("hearth-guard".to_owned(), access::new_token("hg_"));
        let (mqtt_url, mqtt_setting, subscription, embedded) = match &settings.mqtt {
            MqttBroker::Embedded { listen } => {
                let guard_listener = mqtt::guard::bind(*listen).await?;
                let public = guard_listener
                    .local_addr()
                    .context("reading the MQTT listener's address")?;
                let broker = mqtt::broker::start(
                    (std::net::Ipv4Addr::LOCALHOST, 0).into(),
                    (&upstream_login.0, &upstream_login.1),
                )?;
                let scheme = if tls.is_some() { "mqtts" } else { "mqtt" };
                (
                    format!("{scheme}://{public}"),
                    "HEARTH_MQTT_LISTEN",
                    mqtt::Subscription::Exclusive,
                    Some((guard_listener, broker)),
                )
            }
            MqttBroker::External { url } => (
                url.clone(),
                "HEARTH_MQTT_URL",
                mqtt::Subscription::Shared,
                None,
            ),
        };
        let storage = storage::connect(&settings.database_url).await?;
        if let Some(admin) = &settings.first_admin {
            access::ensure_first_admin(&storage, admin, &clock).await?;
        }
        let loopback_only = settings.listen.ip().is_loopback()
            && match &settings.mqtt {
                MqttBroker::Embedded { listen } => listen.ip().is_loopback(),
                MqttBroker::External { .. } => true,
            };
        // Why here: the gate counts what its limits refuse.
        let metrics = Arc::new(Metrics::default());
        let access = Arc::new(
            Access::start(
                storage.clone(),
                clock.clone(),
                settings.session_ttl_ms,
                loopback_only,
                Limits::new(settings.allowance, metrics.requests_refused.clone()),
            )
            .await?,
        );
        let replica = settings
            .replica
            .clone()
            .unwrap_or_else(|| format!("hearth-{:08x}", rand::random::<u32>()));
        let broker_stop = CancellationToken::new();
        let dynsec = match (&settings.mqtt, &settings.dynsec_admin) {
            (MqttBroker::External { url }, Some(admin)) => Some(
                mqtt::dynsec::Dynsec::connect(
                    &admin.url(url),
                    &admin.username,
                    &replica,
                    settings.topics.clone(),
                    broker_stop.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        let logins = Arc::new(BrokerLogins::new(
            storage.clone(),
            access.clone(),
            clock.clone(),
            dynsec,
            settings.home_assistant.clone(),
        ));
        logins
            .sync_broker()
            .await
            .context("bringing the broker's dynamic security in step (HEARTH_MQTT_DYNSEC_ADMIN)")?;
        // How Hearth's own connections log in: straight to rumqttd with the
        // guard's login on the embedded broker, as the dynamic security admin
        // on Mosquitto when it manages it, else as the URL says.
        // Why past the guard: Hearth may do anything there anyway, and each
        // pass through the guard costs a command's round trip about 0.1 ms
        // (README, "Devices' broker logins").
        let backend_url = match (&embedded, &settings.dynsec_admin) {
            (Some((_, broker)), _) => {
                format!("mqtt://{}:{}@{broker}", upstream_login.0, upstream_login.1)
            }
            (None, Some(admin)) => admin.url(&mqtt_url),
            (None, None) => mqtt_url.clone(),
        };
        // Where the demo home's devices connect: as devices on the LAN do,
        // except that with TLS on they get a plain loopback port of the
        // guard's own, since they are in this process and do not hold the
        // CA of the served certificate.
        let mut demo_url = mqtt_url.clone();
        if let Some((guard_listener, broker)) = embedded {
            let guard = mqtt::guard::Guard::new(
                logins.clone(),
                access.clone(),
                metrics.clone(),
                settings.topics.clone(),
                settings.home_assistant.clone(),
                upstream_login,
            );
            if let Some(tls) = &tls {
                let inner = mqtt::guard::bind((std::net::Ipv4Addr::LOCALHOST, 0).into()).await?;
                demo_url = format!(
                    "mqtt://{}",
                    inner
                        .local_addr()
                        .context("reading the demo's MQTT address")?
                );
                guard
                    .clone()
                    .spawn(inner, None, broker, broker_stop.clone());
                guard.spawn(
                    guard_listener,
                    Some(tls.acceptor(&[])?),
                    broker,
                    broker_stop.clone(),
                );
            } else {
                guard.spawn(guard_listener, None, broker, broker_stop.clone());
            }
            match access.is_open() {
                true => warn!(
                    "MQTT: open mode, so devices without a credential may connect anonymously \
                     (any device's readings, reports and status; never desired states or retained \
                     messages); this ends with the first user"
                ),
                false => info!("MQTT: each device logs in with its own credential"),
            }
        }
        // Why only on an external broker: the embedded one starts empty with
        // its process, so there is no session to come back to.
        let persistent = match subscription {
            mqtt::Subscription::Shared => settings.replica.as_deref(),
            mqtt::Subscription::Exclusive => None,
        };
        // Why only with a shared subscription: on the embedded broker this
        // is the only replica, with nobody to tell.
        let news_from = match subscription {
            mqtt::Subscription::Shared => Some(replica.as_str()),
            mqtt::Subscription::Exclusive => None,
        };
        let news = news_from.map(str::to_owned);
        let connect = |lane| {
            mqtt::connect(
                &backend_url,
                &settings.topics,
                mqtt_setting,
                subscription,
                lane,
                persistent,
                news_from,
            )
        };
        let roles = settings.roles;
        // Why a commands lane without the control role: the API and the rules
        // of any replica publish commands; only control replicas take reports.
        let control_lane = connect(match roles.control {
            true => mqtt::Lane::Control,
            false => mqtt::Lane::Commands,
        })
        .await?;
        let mut lanes = vec![control_lane];
        if roles.ingest {
            lanes.push(connect(mqtt::Lane::Readings).await?);
        }

        let (core, ingest_rx) = Core::new(
            storage,
            access,
            lanes[0].publisher.clone(),
            clock,
            settings.command_ttl_ms,
            replica.clone(),
            metrics,
            logins,
        );
        let core = Arc::new(core);
        if settings.demo {
            demo::provision(&core)
                .await
                .context("creating the demo home (HEARTH_DEMO)")?;
        }
        let http_tls = match &tls {
            Some(tls) => Some(tls.acceptor(&[b"h2", b"http/1.1"])?),
            None => None,
        };
        Ok(Self {
            listener,
            http_tls,
            http_addr,
            mqtt_url,
            backend_url,
            demo_url,
            broker_stop,
            settings,
            core,
            lanes,
            news,
            replica,
            ingest_rx,
        })
    }

    /// Where gRPC, gRPC-web and the web app are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The broker devices should connect to.
    pub fn mqtt_url(&self) -> &str {
        &self.mqtt_url
    }

    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            http_tls,
            http_addr,
            mqtt_url,
            backend_url,
            demo_url,
            broker_stop,
            settings,
            core,
            lanes,
            news,
            replica,
            ingest_rx,
        } = self;
        let stop = CancellationToken::new();

        let rollups = Arc::new(Rollups::default());
        let writer = tokio::spawn(ingest::run_writer(
            ingest_rx,
            core.storage.clone(),
            core.stored.clone(),
            core.metrics.clone(),
            rollups.clone(),
            // The readings lane's connection on an ingest replica, else the
            // control lane's: commands never wait behind news of commits.
            lanes.last().expect("a control lane").publisher.clone(),
        ));
        let news = news.map(|replica| {
            tokio::spawn(mqtt::news::run(
                backend_url.clone(),
                settings.topics.clone(),
                replica,
                core.clone(),
                stop.clone(),
            ))
        });
        // Why its own token: its last refresh must come after the writer's
        // last commit.
        let rollups_stop = CancellationToken::new();
        let rollup = tokio::spawn(rollups.run(
            core.storage.clone(),
            settings.retention.clone(),
            core.clock.clone(),
            rollups_stop.clone(),
        ));
        let intake = Intake {
            directory: core.directory.clone(),
            ingest: core.ingest.clone(),
            control: core.control.clone(),
            metrics: core.metrics.clone(),
            clock: core.clock.clone(),
            rates: Arc::new(DeviceRates::new(settings.device_messages_per_second)),
        };
        // Each lane (readings; control) has its own connection, inbox and
        // intake task, so neither waits for the other.
        let lanes: Vec<_> = lanes
            .into_iter()
            .map(|connection| {
                let (inbox_tx, inbox_rx) = tokio::sync::mpsc::channel(INBOX_CAPACITY);
                let inbox = tokio::spawn(mqtt::run_inbox(
                    connection,
                    inbox_tx,
                    core.metrics.clone(),
                    stop.clone(),
                ));
                (inbox, tokio::spawn(intake.clone().run(inbox_rx)))
            })
            .collect();
        // Why drop it now: it holds a sender of the ingest queue, and the
        // writer only stops (on shutdown) once every sender is gone.
        drop(intake);
        let automation = settings.roles.automation.then(|| {
            tokio::spawn(
                core.automation
                    .clone()
                    .run(core.stored.subscribe(), stop.clone()),
            )
        });
        // Why the control role: it is the replicas' part that takes commands
        // and follows devices; the lease picks one of them.
        let home_assistant = match (&settings.home_assistant, settings.roles.control) {
            (Some(topics), true) => Some(tokio::spawn(mqtt::home_assistant::run(
                backend_url.clone(),
                topics.clone(),
                core.clone(),
                replica.clone(),
                stop.clone(),
            ))),
            _ => None,
        };
        // Why the ingest role: it stores what the audit counts; the lease
        // picks one of its replicas.
        let audit = settings.roles.ingest.then(|| {
            tokio::spawn(delivery::run_audit(
                core.clone(),
                replica.clone(),
                stop.clone(),
            ))
        });
        let demo = settings.demo.then(|| {
            let (core, url, topics, stop) = (
                core.clone(),
                demo_url.clone(),
                settings.topics.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = demo::run(core, url, topics, stop).await {
                    warn!(error = %e, "the demo home stopped");
                }
            })
        });

        let (reporter, health_service) = tonic_health::server::health_reporter();
        // Why the first check before "ready": a probe right after start must
        // not find the services unknown.
        let serving = healthy(&core).await;
        set_health(&reporter, serving).await;
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let health = tokio::spawn(watch_health(core.clone(), reporter, serving));
        let web_dir = settings.roles.web.then_some(settings.web_dir.as_path());
        let routes = routes(&core, health_service, &settings.exposed, web_dir)?;
        info!(
            http = %http_addr,
            mqtt = %hearth_runtime::redact(&mqtt_url),
            database = %storage::redact(&settings.database_url),
            roles = %settings.roles,
            demo = settings.demo,
            tls = settings.tls.is_some(),
            home_assistant = settings.home_assistant.is_some() && settings.roles.control,
            "hearth ready"
        );
        let served = Server::builder()
            .accept_http1(true)
            .layer(cors(&settings.cors_origins))
            .add_routes(routes)
            .serve_with_incoming_shutdown(listener::incoming(listener, http_tls), {
                let closing = core.closing.clone();
                async move {
                    shutdown.await;
                    closing.cancel();
                }
            })
            .await
            .context("serving HTTP");

        info!("shutting down: stopping intake and draining the ingest queue");
        stop.cancel();
        for (inbox, intake) in lanes {
            let _ = inbox.await;
            let _ = intake.await;
        }
        if let Some(demo) = demo {
            let _ = demo.await;
        }
        if let Some(automation) = automation {
            let _ = automation.await;
        }
        if let Some(home_assistant) = home_assistant {
            let _ = home_assistant.await;
        }
        if let Some(audit) = audit {
            let _ = audit.await;
        }
        if let Some(news) = news {
            let _ = news.await;
        }
        let _ = health.await;
        // The writer ends once every sender is gone: the intake's went with
        // it, the services' go with `core`.
        drop(core);
        let _ = writer.await;
        rollups_stop.cancel();
        let _ = rollup.await;
        broker_stop.cancel();
        info!("stopped");
        served
    }
}

/// Pages of the listed origins (`HEARTH_CORS_ORIGINS`) may call the gRPC-web
/// API from a browser; they need to read the grpc-* trailers-in-headers.
/// With none listed, only the app's own origin can: a page elsewhere that
/// someone on the LAN opens gets no answer it may read.
fn cors(origins: &[http::HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
}

/// The health service name a liveness probe asks: SERVING while the process
/// runs. Why apart from "": an unreachable database makes a replica unready,
/// but restarting it would not bring the database back.
pub const LIVENESS: &str = "liveness";
/// How often health is checked, and how long the database may take to answer.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps gRPC health (what Kubernetes probes) SERVING while the database
/// answers and every broker connection holds, NOT_SERVING otherwise and from
/// the moment shutdown starts, so a broken or draining replica leaves the
/// Service.
async fn watch_health(core: Arc<Core>, health: HealthReporter, mut serving: bool) {
    loop {
        tokio::select! {
            _ = core.closing.cancelled() => break,
            _ = tokio::time::sleep(HEALTH_EVERY) => {}
        }
        let now = healthy(&core).await;
        if now != serving {
            set_health(&health, now).await;
            serving = now;
        }
    }
    set_health(&health, false).await;
}

/// Whether the database answers and every broker connection holds; logs why not.
async fn healthy(core: &Core) -> bool {
    let database = matches!(
        tokio::time::timeout(PING_TIMEOUT, core.storage.ping()).await,
        Ok(Ok(()))
    );
    let broker = core.metrics.mqtt_lanes_down.get() == 0;
    if !(database && broker) {
        debug!(database, broker, "unhealthy");
    }
    database && broker
}

/// Sets the server's overall health ("") and each service's.
async fn set_health(health: &HealthReporter, serving: bool) {
    let status = match serving {
        true => ServingStatus::Serving,
        false => ServingStatus::NotServing,
    };
    match serving {
        true => info!("health: SERVING"),
        false => warn!("health: NOT_SERVING (database or broker unreachable, or stopping)"),
    }
    for service in [
        "",
        <DeviceServiceServer<DeviceApi> as NamedService>::NAME,
        <TelemetryServiceServer<TelemetryApi> as NamedService>::NAME,
        <AutomationServiceServer<AutomationApi> as NamedService>::NAME,
        <AuthServiceServer<AuthApi> as NamedService>::NAME,
    ] {
        health.set_service_status(service, status).await;
    }
}

/// The three services, health, reflection (v1 and v1alpha) and `/metrics`
/// unless `exposed` turns them off, and (on a web replica) the web app as the
/// fallback for every other path.
fn routes(
    core: &Arc<Core>,
    health_service: HealthServer<impl Health>,
    exposed: &Exposed,
    web_dir: Option<&Path>,
) -> anyhow::Result<Routes> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hearth_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };

    // Why per service and not around the whole server: tonic-web answers
    // 400 to any other HTTP/1.1 request, which would hide the web app.
    let web = GrpcWebLayer::new();
    // Why inside the gRPC-web layer: a refusal is then framed for whichever
    // protocol asked.
    let gate = GateLayer::new(core.access.clone());
    fn gated<S>(web: &GrpcWebLayer, gate: &GateLayer, service: S) -> GrpcWebService<Gate<S>> {
        web.layer(gate.layer(service))
    }
    let mut routes = Routes::builder();
    routes
        .add_service(gated(
            &web,
            &gate,
            AuthServiceServer::new(AuthApi::new(core.clone())),
        ))
        .add_service(gated(
            &web,
            &gate,
            DeviceServiceServer::new(DeviceApi::new(core.clone())),
        ))
        .add_service(gated(
            &web,
            &gate,
            TelemetryServiceServer::new(TelemetryApi::new(core.clone())),
        ))
        .add_service(gated(
            &web,
            &gate,
            AutomationServiceServer::new(AutomationApi::new(core.clone())),
        ))
        .add_service(web.layer(health_service));
    if exposed.reflection {
        routes
            .add_service(web.layer(reflection().build_v1().context("building reflection v1")?))
            .add_service(
                web.layer(
                    reflection()
                        .build_v1alpha()
                        .context("building reflection v1alpha")?,
                ),
            );
    }
    let mut router = routes.routes().into_axum_router();
    if exposed.metrics {
        let metrics = core.metrics.clone();
        router = router.route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, hearth_runtime::metrics::CONTENT_TYPE)],
                        metrics.render(),
                    )
                }
            }),
        );
    }
    // Every path the API does not answer belongs to the web app.
    let router = match web_dir {
        Some(dir) => router.fallback_service(web::app(dir)),
        None => router,
    };
    Ok(Routes::from(router))
}
