//! What the app takes from the browser besides the network: the clock and
//! local time, the URL path and history, the home remembered in
//! localStorage, the session kept in sessionStorage, and files handed to the
//! user as downloads.

use js_sys::{Array, Date, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast as _, JsValue};

use crate::range;

const HOME_KEY: &str = "hearth.home_id";
const SESSION_KEY: &str = "hearth.session";

/// The browser's clock, Unix milliseconds.
pub fn now_unix_ms() -> i64 {
    Date::now() as i64
}

/// Local time minus UTC, in ms, at `unix_ms`.
pub fn utc_offset_ms(unix_ms: i64) -> i64 {
    let date = Date::new(&JsValue::from_f64(unix_ms as f64));
    -(date.get_timezone_offset() as i64) * range::MINUTE
}

/// `unix_ms` as a date and time in the user's locale and time zone.
pub fn local_time(unix_ms: i64) -> String {
    let date = Date::new(&JsValue::from_f64(unix_ms as f64));
    date.to_locale_string("default", &JsValue::UNDEFINED).into()
}

/// A chart's time label: `14:05` within a day's range, `28 Nov` beyond.
pub fn tick_label(unix_ms: i64, range_ms: i64) -> String {
    let date = Date::new(&JsValue::from_f64(unix_ms as f64));
    if range_ms <= range::DAY {
        format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
    } else {
        let options = Object::new();
        let _ = Reflect::set(&options, &"day".into(), &"numeric".into());
        let _ = Reflect::set(&options, &"month".into(), &"short".into());
        date.to_locale_date_string("default", &options).into()
    }
}

/// `unix_ms` as an `<input type="datetime-local">` value, in local time.
pub fn datetime_local(unix_ms: i64) -> String {
    let d = Date::new(&JsValue::from_f64(unix_ms as f64));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes()
    )
}

/// An `<input type="datetime-local">` value as Unix ms; `None` when empty
/// or unreadable.
pub fn parse_datetime_local(value: &str) -> Option<i64> {
    if value.is_empty() {
        return None;
    }
    // Why: a date-time without a zone is local time in the Date parser.
    let ms = Date::new(&JsValue::from_str(value)).get_time();
    ms.is_finite().then_some(ms as i64)
}

/// The URL's path.
pub fn path() -> String {
    web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .unwrap_or_else(|| "/".into())
}

/// Puts `path` in the address bar: a new history entry, or in place of the
/// current one with `replace`.
pub fn set_path(path: &str, replace: bool) {
    let Some(history) = web_sys::window().and_then(|w| w.history().ok()) else {
        return;
    };
    // Why ignore failure: the address bar lags, the page is right anyway.
    let _ = if replace {
        history.replace_state_with_url(&JsValue::NULL, "", Some(path))
    } else {
        history.push_state_with_url(&JsValue::NULL, "", Some(path))
    };
}

/// The home chosen on an earlier visit, if any.
pub fn remembered_home() -> Option<String> {
    storage()?
        .get_item(HOME_KEY)
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())
}

/// Remembers `home_id` for the next visit.
pub fn remember_home(home_id: &str) {
    // Why ignore failure: storage may be off (private mode, quota); the app
    // then just asks again next time.
    if let Some(storage) = storage() {
        let _ = storage.set_item(HOME_KEY, home_id);
    }
}

/// The session kept for this tab (`Session::stored` form), if any.
///
/// Why sessionStorage, not localStorage: it lives as long as the tab, so a
/// reload keeps the login while a closed tab forgets it, and other tabs
/// never see the token.
pub fn stored_session() -> Option<String> {
    session_storage()?.get_item(SESSION_KEY).ok().flatten()
}

/// Keeps `session` for this tab; `None` forgets it.
pub fn store_session(session: Option<&str>) {
    // Why ignore failure: without storage a reload asks for a login again.
    if let Some(storage) = session_storage() {
        let _ = match session {
            Some(session) => storage.set_item(SESSION_KEY, session),
            None => storage.remove_item(SESSION_KEY),
        };
    }
}

/// A file being put together from chunks, then saved by the browser as a
/// download. The chunks go to the browser's own memory as they arrive, so
/// the app does not keep a second copy.
#[derive(Default)]
pub struct Download {
    parts: Array,
}

impl Download {
    /// Starts the file with `bytes` (e.g. a byte order mark).
    pub fn starting_with(bytes: &[u8]) -> Self {
        let download = Self::default();
        download.push(bytes);
        download
    }

    pub fn push(&self, bytes: &[u8]) {
        self.parts.push(&Uint8Array::from(bytes));
    }

    /// Offers the file as `filename` of MIME type `mime`, as a click on a
    /// download link would.
    pub fn save(self, filename: &str, mime: &str) -> Result<(), String> {
        let failed = |e: JsValue| format!("the browser refused the download: {e:?}");
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(mime);
        let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&self.parts, &options)
            .map_err(failed)?;
        let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(failed)?;
        let document = web_sys::window()
            .and_then(|w| w.document())
            .ok_or("the page has no document")?;
        let link: web_sys::HtmlAnchorElement = document
            .create_element("a")
            .map_err(failed)?
            .dyn_into()
            .map_err(|_| "an <a> is not an anchor".to_owned())?;
        link.set_href(&url);
        link.set_download(filename);
        link.click();
        // Why revoke, and later: the URL pins the Blob in memory, but some
        // browsers read it only after the click handler has returned.
        gloo_timers::callback::Timeout::new(60_000, move || {
            let _ = web_sys::Url::revoke_object_url(&url);
        })
        .forget();
        Ok(())
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}
