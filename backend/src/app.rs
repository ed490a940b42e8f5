//! Start-up and the run loop.
//!
//! [`App::build`] binds the HTTP listener, starts or reaches the broker,
//! opens storage and connects MQTT, failing with an error that names the
//! setting at fault. [`App::run_until`] serves until the shutdown future
//! resolves, then stops intake and drains the ingest queue, so a rolling
//! update loses nothing that was accepted.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context as _;
use axum::routing::get;
use hearth_proto::v1::{
    automation_service_server::AutomationServiceServer, device_service_server::DeviceServiceServer,
    telemetry_service_server::TelemetryServiceServer,
};
use hearth_runtime::Clock;
use http::{header, HeaderName};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::Server};
use tower::Layer as _;
use tower_http::cors::{Any, CorsLayer};
use tracing::{info, warn};

use crate::{
    core::Core,
    demo,
    grpc::{AutomationApi, DeviceApi, TelemetryApi},
    ingest::{self, IngestItem},
    intake::Intake,
    mqtt,
    rollup::Rollups,
    settings::{MqttBroker, Settings},
    storage, web,
};

/// Inbound MQTT messages buffered between the connection and intake.
const INBOX_CAPACITY: usize = 1_024;

pub struct App {
    listener: TcpListener,
    http_addr: SocketAddr,
    mqtt_url: String,
    settings: Settings,
    core: Arc<Core>,
    /// The readings lane and the control lane (see [`mqtt::Lane`]).
    lanes: [mqtt::Connection; 2],
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
        let (mqtt_url, mqtt_setting, subscription) = match &settings.mqtt {
            MqttBroker::Embedded { listen } => (
                format!("mqtt://{}", mqtt::broker::start(*listen)?),
                "HEARTH_MQTT_LISTEN",
                mqtt::Subscription::Exclusive,
            ),
            MqttBroker::External { url } => {
                (url.clone(), "HEARTH_MQTT_URL", mqtt::Subscription::Shared)
            }
        };
        let storage = storage::connect(&settings.database_url).await?;
        let replica = settings
            .replica
            .clone()
            .unwrap_or_else(|| format!("hearth-{:08x}", rand::random::<u32>()));
        // Why only on an external broker: the embedded one starts empty with
        // its process, so there is no session to come back to.
        let persistent = match subscription {
            mqtt::Subscription::Shared => settings.replica.as_deref(),
            mqtt::Subscription::Exclusive => None,
        };
        let connect = |lane| {
            mqtt::connect(
                &mqtt_url,
                &settings.topics,
                mqtt_setting,
                subscription,
                lane,
                persistent,
            )
        };
        let readings_lane = connect(mqtt::Lane::Readings).await?;
        let control_lane = connect(mqtt::Lane::Control).await?;

        let (core, ingest_rx) = Core::new(
            storage,
            control_lane.publisher.clone(),
            clock,
            settings.command_ttl_ms,
            replica,
        );
        let core = Arc::new(core);
        if settings.demo {
            demo::provision(&core)
                .await
                .context("creating the demo home (HEARTH_DEMO)")?;
        }
        Ok(Self {
            listener,
            http_addr,
            mqtt_url,
            settings,
            core,
            lanes: [readings_lane, control_lane],
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
            http_addr,
            mqtt_url,
            settings,
            core,
            lanes,
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
        ));
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
        };
        // Each lane (readings; control) has its own connection, inbox and
        // intake task, so neither waits for the other.
        let lanes = lanes.map(|connection| {
            let (inbox_tx, inbox_rx) = tokio::sync::mpsc::channel(INBOX_CAPACITY);
            let inbox = tokio::spawn(mqtt::run_inbox(
                connection,
                inbox_tx,
                core.metrics.clone(),
                stop.clone(),
            ));
            (inbox, tokio::spawn(intake.clone().run(inbox_rx)))
        });
        // Why drop it now: it holds a sender of the ingest queue, and the
        // writer only stops (on shutdown) once every sender is gone.
        drop(intake);
        let automation = tokio::spawn(
            core.automation
                .clone()
                .run(core.stored.subscribe(), stop.clone()),
        );
        let demo = settings.demo.then(|| {
            let (core, url, topics, stop) = (
                core.clone(),
                mqtt_url.clone(),
                settings.topics.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = demo::run(core, url, topics, stop).await {
                    warn!(error = %e, "the demo home stopped");
                }
            })
        });

        let routes = routes(&core, &settings.web_dir).await?;
        info!(http = %http_addr, mqtt = %mqtt_url, database = %storage::redact(&settings.database_url), demo = settings.demo, "hearth ready");
        let served = Server::builder()
            .accept_http1(true)
            .layer(cors())
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming(listener), {
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
        let _ = automation.await;
        // The writer ends once every sender is gone: the intake's went with
        // it, the services' go with `core`.
        drop(core);
        let _ = writer.await;
        rollups_stop.cancel();
        let _ = rollup.await;
        info!("stopped");
        served
    }
}

/// Accepted connections with Nagle's algorithm off. Why: a unary response is
/// several small HTTP/2 frames, and Nagle holding the last one for the
/// client's delayed ACK adds 40 ms to every call.
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    })
}

/// Browsers on other origins (a dev server, a phone on the LAN) may call the
/// gRPC-web API; they need to read the grpc-* trailers-in-headers.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
}

/// The three services, reflection (v1 and v1alpha), health, `/metrics`, and
/// the web app as the fallback for every other path.
async fn routes(core: &Arc<Core>, web_dir: &Path) -> anyhow::Result<Routes> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hearth_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<DeviceServiceServer<DeviceApi>>().await;
    health
        .set_serving::<TelemetryServiceServer<TelemetryApi>>()
        .await;
    health
        .set_serving::<AutomationServiceServer<AutomationApi>>()
        .await;

    // Why per service and not around the whole server: tonic-web answers
    // 400 to any other HTTP/1.1 request, which would hide the web app.
    let web = tonic_web::GrpcWebLayer::new();
    let routes = Routes::builder()
        .add_service(web.layer(DeviceServiceServer::new(DeviceApi::new(core.clone()))))
        .add_service(web.layer(TelemetryServiceServer::new(TelemetryApi::new(core.clone()))))
        .add_service(web.layer(AutomationServiceServer::new(AutomationApi::new(
            core.clone(),
        ))))
        .add_service(web.layer(health_service))
        .add_service(web.layer(reflection().build_v1().context("building reflection v1")?))
        .add_service(
            web.layer(
                reflection()
                    .build_v1alpha()
                    .context("building reflection v1alpha")?,
            ),
        )
        .clone()
        .routes();

    let metrics = core.metrics.clone();
    let router = routes.into_axum_router().route(
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
    // Every path the API does not answer belongs to the web app.
    let router = router.fallback_service(web::app(web_dir));
    Ok(Routes::from(router))
}
