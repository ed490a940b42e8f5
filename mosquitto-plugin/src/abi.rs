//! Mosquitto 2.0's plugin ABI (`mosquitto_plugin.h`, `mosquitto_broker.h`;
//! Debian's `mosquitto-dev`), as far as this plugin uses it. The functions
//! declared `extern` are the broker's own, resolved when it loads the plugin.

use std::{
    ffi::{c_char, c_int, c_void, CStr, CString},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::policy::{Policy, Verdict};

const PLUGIN_API_VERSION: c_int = 5;
const MOSQ_EVT_ACL_CHECK: c_int = 2;
const MOSQ_ACL_WRITE: c_int = 0x02;
const MOSQ_ERR_SUCCESS: c_int = 0;
const MOSQ_ERR_INVAL: c_int = 3;
const MOSQ_ERR_ACL_DENIED: c_int = 12;
const MOSQ_ERR_PLUGIN_DEFER: c_int = 17;
const MOSQ_LOG_NOTICE: c_int = 1 << 1;
const MOSQ_LOG_ERR: c_int = 1 << 3;

#[repr(C)]
pub struct MosquittoOpt {
    key: *const c_char,
    value: *const c_char,
}

/// `struct mosquitto_evt_acl_check`.
#[repr(C)]
struct AclCheck {
    future: *mut c_void,
    client: *const c_void,
    topic: *const c_char,
    payload: *const c_void,
    properties: *mut c_void,
    access: c_int,
    payloadlen: u32,
    qos: u8,
    retain: bool,
    future2: [*mut c_void; 4],
}

type Callback = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> c_int;

extern "C" {
    fn mosquitto_callback_register(
        identifier: *mut c_void,
        event: c_int,
        callback: Callback,
        event_data: *const c_void,
        userdata: *mut c_void,
    ) -> c_int;
    fn mosquitto_callback_unregister(
        identifier: *mut c_void,
        event: c_int,
        callback: Callback,
        event_data: *const c_void,
    ) -> c_int;
    fn mosquitto_client_username(client: *const c_void) -> *const c_char;
    fn mosquitto_log_printf(level: c_int, fmt: *const c_char, ...);
}

/// What the plugin keeps between calls (Mosquitto's `userdata`).
struct Plugin {
    identifier: *mut c_void,
    policy: Policy,
    refused: AtomicU64,
}

fn log(level: c_int, message: &str) {
    let Ok(message) = CString::new(format!("hearth: {message}")) else {
        return;
    };
    // SAFETY: a "%s" format with one NUL-terminated string.
    unsafe { mosquitto_log_printf(level, c"%s".as_ptr(), message.as_ptr()) }
}

/// # Safety
/// Called by Mosquitto with its list of supported versions.
#[no_mangle]
pub unsafe extern "C" fn mosquitto_plugin_version(count: c_int, versions: *const c_int) -> c_int {
    let supported = match usize::try_from(count) {
        Ok(n) if !versions.is_null() => std::slice::from_raw_parts(versions, n),
        _ => &[],
    };
    if supported.contains(&PLUGIN_API_VERSION) {
        PLUGIN_API_VERSION
    } else {
        -1
    }
}

/// # Safety
/// Called by Mosquitto once, with the plugin's `plugin_opt_*` options.
#[no_mangle]
pub unsafe extern "C" fn mosquitto_plugin_init(
    identifier: *mut c_void,
    userdata: *mut *mut c_void,
    options: *const MosquittoOpt,
    count: c_int,
) -> c_int {
    let options = match usize::try_from(count) {
        Ok(n) if !options.is_null() => std::slice::from_raw_parts(options, n),
        _ => &[],
    };
    let text = |p: *const c_char| {
        if p.is_null() {
            ""
        } else {
            CStr::from_ptr(p).to_str().unwrap_or("")
        }
    };
    let policy = match Policy::from_options(options.iter().map(|o| (text(o.key), text(o.value)))) {
        Ok(policy) => policy,
        Err(e) => {
            log(MOSQ_LOG_ERR, &e);
            return MOSQ_ERR_INVAL;
        }
    };
    log(MOSQ_LOG_NOTICE, &policy.describe());
    let plugin = Box::into_raw(Box::new(Plugin {
        identifier,
        policy,
        refused: AtomicU64::new(0),
    }));
    let rc = mosquitto_callback_register(
        identifier,
        MOSQ_EVT_ACL_CHECK,
        acl_check,
        std::ptr::null(),
        plugin.cast(),
    );
    if rc != MOSQ_ERR_SUCCESS {
        drop(Box::from_raw(plugin));
        return rc;
    }
    *userdata = plugin.cast();
    MOSQ_ERR_SUCCESS
}

/// # Safety
/// Called by Mosquitto once, at shutdown, with what `init` gave it.
#[no_mangle]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *const MosquittoOpt,
    _count: c_int,
) -> c_int {
    if userdata.is_null() {
        return MOSQ_ERR_SUCCESS;
    }
    let plugin = Box::from_raw(userdata.cast::<Plugin>());
    mosquitto_callback_unregister(
        plugin.identifier,
        MOSQ_EVT_ACL_CHECK,
        acl_check,
        std::ptr::null(),
    );
    MOSQ_ERR_SUCCESS
}

unsafe extern "C" fn acl_check(_event: c_int, data: *mut c_void, userdata: *mut c_void) -> c_int {
    let (Some(check), Some(plugin)) = (
        data.cast::<AclCheck>().as_ref(),
        userdata.cast::<Plugin>().as_ref(),
    ) else {
        return MOSQ_ERR_PLUGIN_DEFER;
    };
    if check.topic.is_null() {
        return MOSQ_ERR_PLUGIN_DEFER;
    }
    let topic = CStr::from_ptr(check.topic).to_string_lossy();
    let username = mosquitto_client_username(check.client);
    let username = (!username.is_null()).then(|| CStr::from_ptr(username).to_string_lossy());
    match plugin.policy.check(
        check.access == MOSQ_ACL_WRITE,
        check.retain,
        username.as_deref(),
        &topic,
    ) {
        Verdict::Defer => MOSQ_ERR_PLUGIN_DEFER,
        Verdict::Deny => {
            // Why powers of two: a client retaining in a loop cannot fill
            // the log, and the count still says how often it happened.
            let n = plugin.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log(
                    MOSQ_LOG_NOTICE,
                    &format!(
                        "refused a retained publish from {} on '{topic}' ({n} so far)",
                        username.as_deref().unwrap_or("an anonymous client")
                    ),
                );
            }
            MOSQ_ERR_ACL_DENIED
        }
    }
}
