//! Bosun's pod scheduling algorithm: a pure, synchronous re-implementation of
//! kube-scheduler's default profile (v1.33) over `k8s-openapi` types.
//!
//! * [`Snapshot`] holds nodes and their (bound or assumed) pods.
//! * [`schedule`] runs PreFilter/Filter/Score and picks a node, or returns a
//!   [`FitError`] whose [`FitError::message`] matches upstream's
//!   `FailedScheduling` text.
//! * [`preempt`] implements DefaultPreemption's PostFilter.

pub mod framework;
pub mod interpod;
pub mod labels;
pub mod plugins;
pub mod preemption;
pub mod quantity;
pub mod resources;
pub mod runtime;
pub mod snapshot;
pub mod spread;

pub use framework::{
    run_filters, schedule, Code, FitError, NodeScore, PodState, Profile, ScheduleResult,
    ScoringStrategy, Status, Weights, MAX_NODE_SCORE,
};
pub use preemption::{preempt, preempt_with_diagnosis, PreemptionResult};
pub use quantity::{
    parse_quantity, quantity_milli_value, quantity_value, ParsedQuantity, QuantityError,
};
pub use resources::{pod_non_zero_requests, pod_requests, Resources};
pub use snapshot::{namespace_labels, NodeInfo, PodInfo, Snapshot};

#[cfg(test)]
mod tests;
