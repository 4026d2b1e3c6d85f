//! An event recorder like client-go's: writes core/v1 Events about objects
//! (what `kubectl describe` shows), aggregating repeats into a count.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    pub fn pod(namespace: &str, name: &str, uid: &str) -> Self {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }
}

/// (object, reason, message) → (event name, count): repeats become counts.
type Seen = HashMap<(ObjectRef, String, String), (String, i64)>;

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    host: String,
    seen: Arc<Mutex<Seen>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Recorder {
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        Recorder {
            client,
            component: component.into(),
            host: host.into(),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records an event; failures are logged, never returned (events are best effort).
    pub async fn record(&self, obj: &ObjectRef, type_: &str, reason: &str, message: &str) {
        let ns = if obj.namespace.is_empty() {
            "default"
        } else {
            obj.namespace.as_str()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let key = (obj.clone(), reason.to_string(), message.to_string());
        let existing = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((name, count)) = existing {
            let patch = json!({"count": count + 1, "lastTimestamp": now()});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                if let Ok(mut m) = self.seen.lock() {
                    m.insert(key, (name, count + 1));
                }
                return;
            }
        }
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let name = format!("{}.{:x}", obj.name, nanos);
        let t = now();
        let mut ev: Value = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"apiVersion": obj.api_version, "kind": obj.kind, "namespace": obj.namespace, "name": obj.name, "uid": obj.uid},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component},
            "firstTimestamp": t, "lastTimestamp": t, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host,
        });
        if !self.host.is_empty() {
            ev["source"]["host"] = json!(self.host);
        }
        let ev: Event = match serde_json::from_value(ev) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "building event");
                return;
            }
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                if let Ok(mut m) = self.seen.lock() {
                    // Bounded: a long-running component forgets old events.
                    if m.len() > 4096 {
                        m.clear();
                    }
                    m.insert(key, (name, 1));
                }
            }
            Err(e) => tracing::debug!(reason, error = %e, "event not recorded"),
        }
    }
}
