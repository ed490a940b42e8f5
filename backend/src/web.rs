//! Serving the built web app (`frontend/dist`): precompressed assets, cache
//! headers, and `index.html` for every path the app routes itself.

use std::path::Path;

use axum::{extract::Request, middleware::Next, response::Response, Router};
use base64::Engine as _;
use http::{header, HeaderValue};
use sha2::{Digest as _, Sha256};
use tower_http::{
    services::{ServeDir, ServeFile},
    set_header::SetResponseHeaderLayer,
};
use tracing::{info, warn};

/// Trunk names the wasm, JS and CSS after a hash of their content, so a
/// browser may keep them for good: a new build has new names.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` (and every client-side route, which is `index.html`) names
/// the current build's assets, so it is revalidated on every load; the
/// `Last-Modified` that `ServeDir` sends makes that a cheap 304.
const REVALIDATE: &str = "no-cache";

/// The `Cache-Control` for a request path of the web app.
pub fn cache_control(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    if is_hashed(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

/// Whether a file name carries trunk's content hash: `{stem}-{hex}.{ext}` or
/// `{stem}-{hex}_bg.wasm`, with at least 8 hex digits.
fn is_hashed(name: &str) -> bool {
    let Some((stem, _ext)) = name.split_once('.') else {
        return false;
    };
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let Some((_, hash)) = stem.rsplit_once('-') else {
        return false;
    };
    hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The web app in `web_dir` as a router for every path the API does not
/// answer, or a page saying it is not built.
pub fn app(web_dir: &Path) -> Router {
    let index = web_dir.join("index.html");
    let Ok(page) = std::fs::read_to_string(&index) else {
        warn!(dir = %web_dir.display(), "no web app built there (HEARTH_WEB_DIR); serving the API only");
        return with_security_headers(Router::new().fallback(|| async {
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<!doctype html><title>Hearth</title><h1>Hearth</h1><p>The web app is not built. \
                 Run <code>./hearth.sh run</code> from the repository, or use the gRPC API on this port.</p>",
            )
        }), &content_security_policy(""));
    };
    info!(dir = %web_dir.display(), "serving the web app");
    // Unknown paths get index.html so client-side routes survive a reload.
    let app = Router::new()
        .fallback_service(
            ServeDir::new(web_dir)
                .precompressed_gzip()
                .fallback(ServeFile::new(index).precompressed_gzip()),
        )
        .layer(axum::middleware::from_fn(with_cache_control));
    with_security_headers(app, &content_security_policy(&page))
}

/// The app's Content-Security-Policy: its own origin only, no framing, and
/// of inline scripts only the loader trunk writes into `page` (by hash).
/// Why 'wasm-unsafe-eval': compiling the app's WebAssembly needs it. Why
/// inline styles: the charts set `style` attributes.
pub fn content_security_policy(page: &str) -> String {
    let hashes: String = inline_scripts(page)
        .map(|script| {
            let digest = Sha256::digest(script.as_bytes());
            let hash = base64::engine::general_purpose::STANDARD.encode(digest);
            format!(" 'sha256-{hash}'")
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The text of each `<script>` in `page` that has no `src`.
fn inline_scripts(page: &str) -> impl Iterator<Item = &str> {
    page.split("<script").skip(1).filter_map(|rest| {
        let (tag, body) = rest.split_once('>')?;
        let (script, _) = body.split_once("</script>")?;
        (!tag.contains("src=")).then_some(script)
    })
}

/// A gRPC call to a method this server does not have (or has turned off,
/// like reflection) falls through to the web app; it gets what gRPC says,
/// UNIMPLEMENTED, not the app's page with 200.
async fn unknown_grpc_method(request: Request, next: Next) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if !grpc {
        return next.run(request).await;
    }
    let path = request.uri().path();
    tonic::Status::unimplemented(format!("{path} is not a method of this server"))
        .into_http::<axum::body::Body>()
}

/// CSP, no MIME sniffing, no referrer, no framing on every response, and
/// UNIMPLEMENTED for unknown gRPC methods.
fn with_security_headers(app: Router, csp: &str) -> Router {
    let header = |name, value: &str| {
        SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_str(value).expect("security headers are ASCII"),
        )
    };
    app.layer(axum::middleware::from_fn(unknown_grpc_method))
        .layer(header(header::CONTENT_SECURITY_POLICY, csp))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
}

async fn with_cache_control(request: Request, next: Next) -> Response {
    let policy = cache_control(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == http::StatusCode::NOT_MODIFIED {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_hashed_assets_are_immutable() {
        for path in [
            "/hearth-frontend-6d1f0a3c9b2e4f18.js",
            "/hearth-frontend-6d1f0a3c9b2e4f18_bg.wasm",
            "/style-0123abcd4567ef89.css",
            "/nested/dir/app-deadbeef.js",
        ] {
            assert_eq!(cache_control(path), IMMUTABLE, "{path}");
        }
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_loader_by_hash() {
        let page = "<head><script type=\"module\">import init from '/a.js';</script>\
                    <script src=\"/b.js\"></script></head>";
        let csp = content_security_policy(page);
        let hash = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(b"import init from '/a.js';"));
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
        assert_eq!(csp.matches("'sha256-").count(), 1, "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!content_security_policy("").contains("sha256"));
    }

    #[test]
    fn the_page_and_its_routes_are_revalidated() {
        for path in [
            "/",
            "/index.html",
            "/homes/demo",
            "/homes/demo/devices/demo-fan",
            "/homes/my-home-2024",
            "/style.css",
            "/hearth-frontend-xyz12345.js",
            "/app-abc.js",
        ] {
            assert_eq!(cache_control(path), REVALIDATE, "{path}");
        }
    }
}
