//! Entry point of the browser build: mounts the app on the page.

fn main() {
    leptos::mount::mount_to_body(hearth_frontend::App);
}
