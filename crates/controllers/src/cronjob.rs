//! The cronjob controller (not written yet).

/// Runs the controller until the process ends.
pub async fn run(_client: kube::Client) {}
