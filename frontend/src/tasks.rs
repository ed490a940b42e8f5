//! Background work tied to a view: loops that poll, stream and tick for as
//! long as the view that started them is on screen.

use std::future::Future;

use futures::future::LocalBoxFuture;
use leptos::prelude::on_cleanup;

/// Runs `task` on the browser's event loop and cancels it when the current
/// reactive owner (the view being built) is disposed, e.g. when the user
/// switches home, so no loop outlives its view or writes to its dead signals.
pub fn spawn_scoped(task: impl Future<Output = ()> + 'static) {
    spawn_boxed(Box::pin(task));
}

// Why boxed: one copy of the abort and spawn plumbing in the wasm module,
// not one per task.
fn spawn_boxed(task: LocalBoxFuture<'static, ()>) {
    let (task, handle) = futures::future::abortable(task);
    leptos::task::spawn_local(async move {
        // Err only says it was aborted, which is the point.
        let _ = task.await;
    });
    on_cleanup(move || handle.abort());
}
