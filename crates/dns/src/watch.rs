//! Reflectors on Services and EndpointSlices; every change rebuilds the
//! snapshot the server answers from.

use crate::server::Shared;
use crate::zone::Snapshot;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Changes arriving within this window are applied together.
const COALESCE: Duration = Duration::from_millis(20);

fn serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

/// The reflector event handler: wake the rebuild on changes and on the
/// end of a (re)list.
fn on_event<K>(
    what: &'static str,
    ready: Arc<AtomicBool>,
    notify: Arc<Notify>,
) -> impl FnMut(Result<Event<K>, watcher::Error>) -> futures::future::Ready<()> {
    move |ev| {
        match ev {
            Ok(Event::InitDone) => {
                ready.store(true, Ordering::SeqCst);
                notify.notify_one();
            }
            Ok(Event::Apply(_) | Event::Delete(_)) => notify.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "{what} watch error"),
        }
        futures::future::ready(())
    }
}

/// Runs the watches until the process ends.
pub async fn run(client: Client, shared: Shared) {
    let (services, svc_w) = reflector::store::<Service>();
    let (slices, sl_w) = reflector::store::<EndpointSlice>();
    let notify = Arc::new(Notify::new());
    let svc_ready = Arc::new(AtomicBool::new(false));
    let sl_ready = Arc::new(AtomicBool::new(false));
    let svc_task = reflector::reflector(
        svc_w,
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(on_event("service", svc_ready.clone(), notify.clone()));
    let sl_task = reflector::reflector(
        sl_w,
        watcher::watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(on_event("endpointslice", sl_ready.clone(), notify.clone()));
    let rebuild = async {
        loop {
            notify.notified().await;
            tokio::time::sleep(COALESCE).await;
            if !(svc_ready.load(Ordering::SeqCst) && sl_ready.load(Ordering::SeqCst)) {
                continue;
            }
            let snap = Snapshot::new(services.state(), slices.state(), serial());
            *shared.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snap));
        }
    };
    tokio::join!(svc_task, sl_task, rebuild);
}
