//! What the app takes from the browser besides the network: the clock, local
//! time formatting, and the home remembered in localStorage.

use wasm_bindgen::JsValue;

const HOME_KEY: &str = "hearth.home_id";

/// The browser's clock, Unix milliseconds.
pub fn now_unix_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// `unix_ms` as a date and time in the user's locale and time zone.
pub fn local_time(unix_ms: i64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(unix_ms as f64));
    date.to_locale_string("default", &JsValue::UNDEFINED).into()
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

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}
