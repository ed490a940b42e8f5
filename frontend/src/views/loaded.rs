//! The scaffolding of each panel that shows an answer from the backend:
//! [`Loaded`] says "Loading…" until the first answer, keeps the latest one on
//! screen while a newer one loads, and says why a call failed; [`table`]
//! lays the rows of an answer out, or says there are none.
//!
//! Why boxed (`Rc<dyn Fn>`, boxed futures) rather than generic: the wasm
//! build compiles the loading machinery and its views anew for each type
//! they are used with, which made them one of the largest parts of the
//! module; boxed, one copy serves every panel.

use std::{future::Future, rc::Rc};

use futures::future::LocalBoxFuture;
use leptos::prelude::*;

use super::alert;
use crate::{api::ApiError, tasks::spawn_scoped};

/// What a panel shows of one answer, made anew each time it is shown.
#[derive(Clone)]
pub struct Shown(Rc<dyn Fn() -> AnyView>);

impl Shown {
    /// The view that `show` makes.
    pub fn new(show: impl Fn() -> AnyView + 'static) -> Self {
        Self(Rc::new(show))
    }

    /// `answer` as `show` makes it, or that loading `what` failed and why.
    pub fn of<T: 'static>(
        what: &str,
        answer: Result<T, ApiError>,
        show: impl Fn(&T) -> AnyView + 'static,
    ) -> Self {
        match answer {
            Ok(value) => Self::new(move || show(&value)),
            Err(e) => Self::error(format!("Cannot load {what}: {e}.")),
        }
    }

    /// `message` as an error.
    pub fn error(message: String) -> Self {
        Self::new(move || alert(message.clone()).into_any())
    }

    /// Nothing at all.
    pub fn nothing() -> Self {
        Self::new(|| ().into_any())
    }
}

/// Asks the backend and makes what to show of its answer; asked again
/// whenever a signal it read (before its first `.await`) changes.
#[derive(Clone)]
pub struct Loader(Rc<dyn Fn() -> LocalBoxFuture<'static, Shown>>);

impl Loader {
    /// `load`, boxed.
    pub fn new<F>(load: impl Fn() -> F + 'static) -> Self
    where
        F: Future<Output = Shown> + 'static,
    {
        Self(Rc::new(move || Box::pin(load())))
    }
}

/// What `loader` loads: `loading` (in a paragraph of class `loading_class`)
/// until the first answer, then the latest answer.
#[component]
pub fn Loaded(
    loader: Loader,
    loading: &'static str,
    #[prop(default = "hint")] loading_class: &'static str,
) -> impl IntoView {
    let shown = RwSignal::new_local(None::<Shown>);
    // Why an effect and a task rather than a resource in a `<Transition>`:
    // the same behaviour for a fraction of the code. The effect runs again
    // when a signal the loader read changes, and that cancels the task of
    // the run before, so an older answer never replaces a newer one.
    Effect::new(move || {
        let answer = (loader.0)();
        spawn_scoped(async move { shown.set(Some(answer.await)) });
    });
    move || match shown.get() {
        Some(shown) => (shown.0)(),
        None => view! { <p class=loading_class>{loading}</p> }.into_any(),
    }
}

/// A column of a [`table`]: its heading, and the class of its cells: `value`
/// (a number, aligned right), `wrap` (long text), or "".
pub struct Column(pub &'static str, pub &'static str);

/// `rows` of cell texts under `columns`, as a table of class `class`; the
/// hint `empty` when there are no rows.
pub fn table(
    class: &'static str,
    columns: &'static [Column],
    rows: Vec<Vec<String>>,
    empty: &'static str,
) -> AnyView {
    if rows.is_empty() {
        return view! { <p class="hint">{empty}</p> }.into_any();
    }
    let class_of = |column: &Column| (!column.1.is_empty()).then_some(column.1);
    let headings = columns
        .iter()
        .map(|column| view! { <th scope="col" class=class_of(column)>{column.0}</th> })
        .collect_view();
    let rows = rows
        .into_iter()
        .map(|cells| {
            let cells = cells
                .into_iter()
                .zip(columns)
                .map(|(text, column)| view! { <td class=class_of(column)>{text}</td> })
                .collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table class=class>
                <thead>
                    <tr>{headings}</tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
