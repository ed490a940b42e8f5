//! The web app against a `hearth` with users (issue 14): the login page and
//! its wrong-password answer, the session surviving a reload in
//! sessionStorage only, the session renewed before its token expires, a
//! viewer without mode buttons, an operator switching a fan, and a page of
//! another origin getting no answer from the API.

use std::time::Duration;

use fantoccini::{Client, Locator};
use hearth_proto::v1::{
    auth_service_client::AuthServiceClient, device_service_client::DeviceServiceClient,
    CreateUserRequest, DeviceKind, GetDeviceRequest, ListCommandsRequest, LoginRequest, Mode,
    RegisterDeviceRequest, Role, WhoAmIRequest,
};
use hearth_tests::{
    browser::{screenshot, wait_for_text, web_dir, Driver, Screen},
    unique, Backend, TestApp,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tonic::{transport::Channel, Request};

use super::{click, count, BROWSER, WAIT};

/// Every user's password here (the backend wants at least 12 characters).
const PASSWORD: &str = "correct horse battery";

/// A `hearth` whose first admin, `root`, made home `home` with a fan.
struct UsersApp {
    app: TestApp,
    home: String,
    fan: String,
    /// root's session token.
    root: String,
}

impl UsersApp {
    async fn spawn(extra: &[(&str, &str)]) -> Self {
        let web = web_dir();
        let home = unique("home");
        let admin = format!("root@{home}");
        let mut env = vec![
            ("HEARTH_DEMO", "false"),
            ("HEARTH_WEB_DIR", web.to_str().expect("a UTF-8 path")),
            ("HEARTH_ADMIN", admin.as_str()),
            ("HEARTH_ADMIN_PASSWORD", PASSWORD),
        ];
        env.extend_from_slice(extra);
        let app = TestApp::spawn_with(Backend::Embedded, &env).await;
        let root = login(&app, "root").await;
        let fan = unique("fan");
        // HEARTH_ADMIN made the home, with root its admin.
        DeviceServiceClient::connect(app.grpc_url())
            .await
            .expect("connecting to hearth")
            .register_device(with_token(
                RegisterDeviceRequest {
                    home_id: home.clone(),
                    id: fan.clone(),
                    kind: DeviceKind::Fan as i32,
                    name: String::new(),
                },
                &root,
            ))
            .await
            .expect("RegisterDevice as root");
        Self {
            app,
            home,
            fan,
            root,
        }
    }

    /// A new user `name` with `role` in the home.
    async fn add_user(&self, name: &str, role: Role) {
        auth(&self.app)
            .await
            .create_user(with_token(
                CreateUserRequest {
                    username: name.into(),
                    password: PASSWORD.into(),
                    home_id: self.home.clone(),
                    role: role as i32,
                },
                &self.root,
            ))
            .await
            .unwrap_or_else(|e| panic!("CreateUser {name}: {e}"));
    }

    /// The fan's mode buttons on the home page, once its tile shows.
    async fn mode_buttons(&self, client: &Client) -> usize {
        let tile = format!(r#"article[data-device="{}"]"#, self.fan);
        wait_for_text(client, &format!("{tile} .mode"), WAIT, |t| !t.is_empty()).await;
        count(client, &format!("{tile} button[data-mode]")).await
    }
}

async fn auth(app: &TestApp) -> AuthServiceClient<Channel> {
    AuthServiceClient::connect(app.grpc_url())
        .await
        .expect("connecting to hearth")
}

async fn login(app: &TestApp, user: &str) -> String {
    auth(app)
        .await
        .login(LoginRequest {
            username: user.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
        .into_inner()
        .token
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII"),
    );
    request
}

/// Fills the login form and sends it.
async fn log_in(client: &Client, user: &str, password: &str) {
    for (css, text) in [("#username", user), ("#password", password)] {
        let field = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.clear().await.expect("clearing a field");
        field.send_keys(text).await.expect("typing");
    }
    click(client, ".login button[type=submit]").await;
}

/// Runs `script` in the page and returns its string result.
async fn script(client: &Client, script: &str) -> String {
    let value = client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    value.as_str().unwrap_or_default().to_owned()
}

/// What the app keeps of its session in `sessionStorage` (`…:TOKEN`), or
/// "" when it keeps none.
async fn kept_session(client: &Client) -> String {
    script(
        client,
        "return sessionStorage.getItem('hearth.session') || ''",
    )
    .await
}

/// The login page comes first; a wrong password says so without a reload;
/// the right one shows the home; a reload keeps the session, which is in
/// sessionStorage and nowhere in localStorage; "Log out" ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_and_a_reload_keeps_the_session() {
    let _turn = BROWSER.lock().await;
    let users = UsersApp::spawn(&[]).await;
    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    client
        .goto(&format!("http://{}/", users.app.http))
        .await
        .expect("opening the app");

    // A reload would lose it.
    script(&client, "window.sameDocument = 'yes'; return ''").await;
    log_in(&client, "root", "not the password").await;
    let error = wait_for_text(&client, ".login [role=alert]", WAIT, |t| !t.is_empty()).await;
    assert_eq!(error, "wrong username or password");
    screenshot(&client, "logins-1-wrong-password").await;
    assert_eq!(
        script(&client, "return window.sameDocument || 'reloaded'").await,
        "yes",
        "a failed login must not reload the page"
    );

    log_in(&client, "root", PASSWORD).await;
    let title = format!("Home {}", users.home);
    wait_for_text(&client, "#home-title", WAIT, |t| t == title).await;
    assert_eq!(users.mode_buttons(&client).await, 3, "an admin switches");
    wait_for_text(&client, ".user-name", WAIT, |t| t == "root").await;
    assert_eq!(count(&client, ".login").await, 0);
    screenshot(&client, "logins-2-home").await;

    client.refresh().await.expect("reloading");
    wait_for_text(&client, "#home-title", WAIT, |t| t == title).await;
    assert_eq!(
        count(&client, ".login").await,
        0,
        "the reload kept the session"
    );
    let kept = kept_session(&client).await;
    assert!(kept.contains(":hs_"), "sessionStorage holds {kept:?}");
    let token = kept.rsplit(':').next().expect("a token");
    let in_local_storage = script(
        &client,
        &format!(
            "return Object.keys(localStorage)
               .filter(k => (k + localStorage.getItem(k)).includes('{token}')).join(',')"
        ),
    )
    .await;
    assert_eq!(in_local_storage, "", "localStorage must not hold the token");

    click(&client, "#log-out").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#username"))
        .await
        .expect("the login page after logging out");
    // Forgotten once the backend has ended the session.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !kept_session(&client).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "logging out leaves the session in sessionStorage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = auth(&users.app)
        .await
        .who_am_i(with_token(WhoAmIRequest {}, token))
        .await
        .expect_err("a token logged out of opens nothing");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    client.close().await.expect("closing the session");
}

/// A viewer sees the home but neither mode buttons nor rule editing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_mode_buttons() {
    let _turn = BROWSER.lock().await;
    let users = UsersApp::spawn(&[]).await;
    users.add_user("vera", Role::Viewer).await;
    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    client
        .goto(&format!("http://{}/homes/{}", users.app.http, users.home))
        .await
        .expect("opening the home");

    log_in(&client, "vera", PASSWORD).await;
    assert_eq!(users.mode_buttons(&client).await, 0);
    screenshot(&client, "logins-3-viewer").await;

    client
        .goto(&format!(
            "http://{}/homes/{}/automation",
            users.app.http, users.home
        ))
        .await
        .expect("opening the automation page");
    wait_for_text(&client, "#rules", WAIT, |t| t.contains("No rules yet.")).await;
    assert_eq!(
        count(&client, "#new-rule").await,
        0,
        "a viewer edits no rules"
    );
    client.close().await.expect("closing the session");
}

/// An operator's ON reaches the fan's desired state, recorded as theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switches_a_fan_on() {
    let _turn = BROWSER.lock().await;
    let users = UsersApp::spawn(&[]).await;
    users.add_user("otto", Role::Operator).await;
    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    client
        .goto(&format!("http://{}/homes/{}", users.app.http, users.home))
        .await
        .expect("opening the home");

    log_in(&client, "otto", PASSWORD).await;
    assert_eq!(users.mode_buttons(&client).await, 3);
    let tile = format!(r#"article[data-device="{}"]"#, users.fan);
    click(&client, &format!(r#"{tile} button[data-mode="ON"]"#)).await;
    wait_for_text(&client, &format!("{tile} .mode"), WAIT, |t| t == "ON").await;
    screenshot(&client, "logins-4-operator-on").await;

    let mut devices = DeviceServiceClient::connect(users.app.grpc_url())
        .await
        .expect("connecting to hearth");
    let fan = devices
        .get_device(with_token(
            GetDeviceRequest {
                id: users.fan.clone(),
            },
            &users.root,
        ))
        .await
        .expect("GetDevice")
        .into_inner();
    assert_eq!(fan.mode(), Mode::On);
    assert!(fan.desired.expect("a desired state").on);
    let commands = devices
        .list_commands(with_token(
            ListCommandsRequest {
                device_id: users.fan.clone(),
                limit: 1,
            },
            &users.root,
        ))
        .await
        .expect("ListCommands")
        .into_inner()
        .commands;
    assert_eq!(commands[0].requested_by, "otto", "{commands:?}");
    client.close().await.expect("closing the session");
}

/// A session outlives its first token: with one-minute sessions the app
/// renews two thirds in (the old token stops working), and the user goes on
/// switching without seeing the login page again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_renews_its_session_before_the_token_expires() {
    let _turn = BROWSER.lock().await;
    let users = UsersApp::spawn(&[("HEARTH_SESSION_MINUTES", "1")]).await;
    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    client
        .goto(&format!("http://{}/homes/{}", users.app.http, users.home))
        .await
        .expect("opening the home");
    log_in(&client, "root", PASSWORD).await;
    assert_eq!(users.mode_buttons(&client).await, 3);
    let first = kept_session(&client).await;
    let first_token = first.rsplit(':').next().expect("a token").to_owned();

    // Renewal is due 40 s into the minute; allow the wait for it and more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(70);
    let renewed = loop {
        let now = kept_session(&client).await;
        if !now.is_empty() && now != first {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was not renewed within 70 s of a one-minute login"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = auth(&users.app)
        .await
        .who_am_i(with_token(WhoAmIRequest {}, &first_token))
        .await
        .expect_err("the renewed token opens nothing");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let token = renewed.rsplit(':').next().expect("a token");
    let me = auth(&users.app)
        .await
        .who_am_i(with_token(WhoAmIRequest {}, token))
        .await
        .expect("the new token works")
        .into_inner();
    assert_eq!(me.name, "root");

    assert_eq!(count(&client, ".login").await, 0, "still logged in");
    let tile = format!(r#"article[data-device="{}"]"#, users.fan);
    click(&client, &format!(r#"{tile} button[data-mode="ON"]"#)).await;
    wait_for_text(&client, &format!("{tile} .mode"), WAIT, |t| t == "ON").await;
    client.close().await.expect("closing the session");
}

/// A page from an origin not in HEARTH_CORS_ORIGINS gets no answer it may
/// read; the same page from a listed origin does (so the check can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_origin_gets_no_answer() {
    let _turn = BROWSER.lock().await;
    let pages = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = pages.local_addr().expect("address").port();
    let listed = format!("http://127.0.0.1:{port}");
    let users = UsersApp::spawn(&[("HEARTH_CORS_ORIGINS", listed.as_str())]).await;
    let page = probe_page(&users.app);
    let _server = tokio::spawn(serve_forever(pages, page));

    let driver = Driver::start().await;
    let client = driver.session(Screen::Desktop).await;
    client.goto(&listed).await.expect("opening the probe");
    let result = wait_for_text(&client, "#result", WAIT, |t| t != "waiting").await;
    assert!(
        result.starts_with("answered"),
        "a page of {listed}: {result}"
    );
    // The same server under another name is another origin.
    let other = format!("http://localhost:{port}");
    client.goto(&other).await.expect("opening the probe");
    let result = wait_for_text(&client, "#result", WAIT, |t| t != "waiting").await;
    assert_eq!(result, "refused", "a page of {other}");
    client.close().await.expect("closing the session");
}

/// A page that calls WhoAmI by gRPC-web and says what came back: the
/// grpc-status it could read (16: unauthenticated, no token), or that the
/// browser refused it the answer.
fn probe_page(app: &TestApp) -> String {
    format!(
        r#"<!doctype html><p id="result">waiting</p><script>
fetch("http://{}/hearth.v1.AuthService/WhoAmI", {{
  method: "POST",
  headers: {{ "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }},
  body: new Uint8Array([0, 0, 0, 0, 0]),
}}).then(
  r => "answered " + r.headers.get("grpc-status"),
  () => "refused",
).then(t => document.getElementById("result").textContent = t);
</script>"#,
        app.http
    )
}

/// Answers every HTTP request on `listener` with `page`.
async fn serve_forever(listener: TcpListener, page: String) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let page = page.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
