//! The cronjob controller (upstream `cronjob_controllerv2.go`): creates a Job
//! named `<cronjob>-<scheduled minutes since epoch>` for each schedule time,
//! with concurrencyPolicy, startingDeadlineSeconds (and the "too many missed
//! start times" rule), suspend, time zones, history limits and status
//! (active, lastScheduleTime, lastSuccessfulTime).

pub mod schedule;

use crate::job::kit::{self, controlled_by, controller_ref, Error, Result};
use crate::job::plan::{cond_true, is_finished};
use bosun_events::{ObjectRef, Recorder};
use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use schedule::Schedule;
use std::sync::Arc;
use std::time::Duration;

pub const COMPONENT: &str = "cronjob-controller";
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// upstream's nextScheduleDelta: requeue a little after the schedule time.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let cjs: Api<CronJob> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT, ""),
        client: client.clone(),
    });
    Controller::new(cjs, watcher::Config::default())
        .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cronjob reconcile");
            }
        })
        .await;
}

fn error_policy(_cj: Arc<CronJob>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    if kit::is_conflict(e) {
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %e, "cronjob sync failed");
    Action::requeue(kit::ERROR_REQUEUE)
}

/// How many schedule times were missed, upstream's three buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missed {
    None,
    Few,
    Many(i64),
}

/// upstream's mostRecentScheduleTime: (earliest time considered, the most
/// recent unmet schedule time at or before `now`, how many were missed).
pub fn most_recent_schedule_time(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    starting_deadline: Option<i64>,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
    include_deadline: bool,
) -> std::result::Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = last_schedule.unwrap_or(created);
    if include_deadline {
        if let Some(d) = starting_deadline {
            let deadline = Timestamp::from_second(now.as_second() - d).unwrap_or(now);
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    let Some(t1) = sched.next(earliest, tz) else {
        return Ok((earliest, None, Missed::None));
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = sched.next(t1, tz) else {
        return Ok((earliest, Some(t1), Missed::Few));
    };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::Few));
    }
    let between = t2.as_second() - t1.as_second();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    // Walk the real schedule (irregular schedules included) for a while,
    // then fall back to upstream's approximation.
    let mut recent = t2;
    let mut count = 2i64;
    while count <= 1000 {
        match sched.next(recent, tz) {
            Some(n) if n <= now => {
                recent = n;
                count += 1;
            }
            _ => break,
        }
    }
    if count > 1000 {
        let elapsed = now.as_second() - t1.as_second();
        count = elapsed / between + 1;
        recent = Timestamp::from_second(t1.as_second() + (count - 1) * between).unwrap_or(recent);
    }
    let missed = if count > 100 {
        Missed::Many(count)
    } else {
        Missed::Few
    };
    Ok((earliest, Some(recent), missed))
}

/// upstream's nextScheduleTimeDuration: how long until the next schedule
/// time after the most recent one (plus a small delta).
pub fn next_schedule_duration(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Option<Duration> {
    let (earliest, recent, _) =
        most_recent_schedule_time(created, last_schedule, None, now, sched, tz, false).ok()?;
    let base = recent.unwrap_or(earliest);
    let next = sched.next(base, tz)?;
    let secs = (next.as_second() - now.as_second()).max(0) as u64;
    Some(Duration::from_secs(secs) + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<minutes since the epoch of the scheduled time>`.
pub fn job_name(cj: &str, scheduled: Timestamp) -> String {
    format!("{cj}-{}", scheduled.as_second().div_euclid(60))
}

/// upstream's getJobFromTemplate2.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let tmpl = cj.spec.clone().unwrap_or_default().job_template;
    let mut meta = tmpl.metadata.unwrap_or_default();
    meta.name = Some(job_name(&cj.name_any(), scheduled));
    meta.namespace = cj.namespace();
    meta.generate_name = None;
    let stamp = scheduled
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let stamp = stamp.replace("+00:00", "Z");
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), stamp);
    meta.owner_references = Some(vec![controller_ref("batch/v1", "CronJob", &cj.metadata)]);
    Job {
        metadata: meta,
        spec: tmpl.spec,
        status: None,
    }
}

fn cj_ref(cj: &CronJob) -> ObjectRef {
    ObjectRef {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        namespace: cj.namespace().unwrap_or_default(),
        name: cj.name_any(),
        uid: cj.metadata.uid.clone().unwrap_or_default(),
    }
}

fn job_obj_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        resource_version: j.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// "Complete" or "Failed" for a finished job.
fn finished_condition(j: &Job) -> &'static str {
    match &j.status {
        Some(s) if cond_true(s, "Complete") => "Complete",
        _ => "Failed",
    }
}

fn job_finished(j: &Job) -> bool {
    j.status.as_ref().is_some_and(is_finished)
}

async fn delete_job(ctx: &Ctx, cj: &CronJob, j: &Job) -> Result<()> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &j.namespace().unwrap_or_default());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(&j.name_any(), &dp).await {
        Ok(_) => {}
        Err(e) if kit::is_not_found(&e) => {}
        Err(e) => {
            ctx.recorder
                .record(
                    &cj_ref(cj),
                    "Warning",
                    "FailedDelete",
                    &format!("Deleted job: {e}"),
                )
                .await;
            return Err(e.into());
        }
    }
    ctx.recorder
        .record(
            &cj_ref(cj),
            "Normal",
            "SuccessfulDelete",
            &format!("Deleted job {}", j.name_any()),
        )
        .await;
    Ok(())
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Job> = job_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, &uid))
        .collect();
    let r = cj_ref(&cj);
    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut active = status.active.clone().unwrap_or_default();
    let in_active =
        |active: &Vec<ObjectReference>, u: &Option<String>| active.iter().any(|a| &a.uid == u);

    for j in &jobs {
        let found = in_active(&active, &j.metadata.uid);
        let finished = job_finished(j);
        if !found && !finished {
            ctx.recorder
                .record(
                    &r,
                    "Warning",
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                )
                .await;
        } else if found && finished {
            active.retain(|a| a.uid != j.metadata.uid);
            ctx.recorder
                .record(
                    &r,
                    "Normal",
                    "SawCompletedJob",
                    &format!(
                        "Saw completed job: {}, condition: {}",
                        j.name_any(),
                        finished_condition(j)
                    ),
                )
                .await;
        }
        if finished && finished_condition(j) == "Complete" {
            if let Some(ct) = j.status.as_ref().and_then(|s| s.completion_time.clone()) {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| ct.0 > l.0)
                {
                    status.last_successful_time = Some(ct);
                }
            }
        }
    }
    let children: Vec<Option<String>> = jobs.iter().map(|j| j.metadata.uid.clone()).collect();
    let mut missing = Vec::new();
    active.retain(|a| {
        let keep = children.contains(&a.uid);
        if !keep {
            missing.push(a.name.clone().unwrap_or_default());
        }
        keep
    });
    for m in missing {
        ctx.recorder
            .record(
                &r,
                "Normal",
                "MissingJob",
                &format!("Active job went missing: {m}"),
            )
            .await;
    }

    let mut requeue: Option<Duration> = None;
    let mut created: Option<Job> = None;
    'sync: {
        if cj.metadata.deletion_timestamp.is_some() {
            break 'sync;
        }
        let tz = match spec.time_zone.as_deref() {
            None => TimeZone::UTC,
            Some(z) => match TimeZone::get(z) {
                Ok(tz) => tz,
                Err(e) => {
                    ctx.recorder
                        .record(
                            &r,
                            "Warning",
                            "UnknownTimeZone",
                            &format!("invalid timeZone: {z:?}: {e}"),
                        )
                        .await;
                    break 'sync;
                }
            },
        };
        if spec.suspend == Some(true) {
            break 'sync;
        }
        let sched = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "UnparseableSchedule",
                        &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                    )
                    .await;
                break 'sync;
            }
        };
        let now = kit::now();
        let created_at = cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        let last = status.last_schedule_time.as_ref().map(|t| t.0);
        requeue = next_schedule_duration(created_at, last, now, &sched, &tz);
        let scheduled = match most_recent_schedule_time(
            created_at,
            last,
            spec.starting_deadline_seconds,
            now,
            &sched,
            &tz,
            true,
        ) {
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "InvalidSchedule",
                        &format!("invalid schedule: {} : {e}", spec.schedule),
                    )
                    .await;
                break 'sync;
            }
            Ok((_, None, _)) => break 'sync,
            Ok((_, Some(t), missed)) => {
                if let Missed::Many(n) = missed {
                    ctx.recorder
                        .record(
                            &r,
                            "Warning",
                            "TooManyMissedTimes",
                            &format!("too many missed start times: {n}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
                        )
                        .await;
                }
                t
            }
        };
        if let Some(d) = spec.starting_deadline_seconds {
            if scheduled.as_second() + d < now.as_second() {
                let when = scheduled
                    .strftime("%a, %d %b %Y %H:%M:%S +0000")
                    .to_string();
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "MissSchedule",
                        &format!("Missed scheduled time to start a job: {when}"),
                    )
                    .await;
                break 'sync;
            }
        }
        let jname = job_name(&name, scheduled);
        if active
            .iter()
            .any(|a| a.name.as_deref() == Some(jname.as_str()))
            || last == Some(scheduled)
        {
            break 'sync;
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active.is_empty() {
            ctx.recorder
                .record(
                    &r,
                    "Normal",
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                )
                .await;
            break 'sync;
        }
        if policy == "Replace" {
            for a in active.clone() {
                if let Some(j) = jobs.iter().find(|j| j.metadata.uid == a.uid) {
                    delete_job(&ctx, &cj, j).await?;
                }
                active.retain(|x| x.uid != a.uid);
            }
        }
        let job = job_from_template(&cj, scheduled, &tz);
        match job_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                ctx.recorder
                    .record(
                        &r,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created job {}", j.name_any()),
                    )
                    .await;
                active.push(job_obj_ref(&j));
                status.last_schedule_time = Some(Time(scheduled));
                created = Some(j);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created by someone else (or an earlier sync): assume they
                // recorded it.
                break 'sync;
            }
            Err(e) => {
                ctx.recorder
                    .record(
                        &r,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating job: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }

    status.active = (!active.is_empty()).then_some(active);
    if status != old_status {
        let mut c = (*cj).clone();
        c.status = Some(status);
        cj_api
            .replace_status(&name, &PostParams::default(), &c)
            .await?;
    }

    // History limits: the oldest finished jobs beyond the limits go.
    if cj.metadata.deletion_timestamp.is_none() {
        let mut jobs = jobs;
        if let Some(j) = created {
            jobs.push(j);
        }
        for (want_complete, limit) in [
            (true, spec.successful_jobs_history_limit),
            (false, spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut done: Vec<&Job> = jobs
                .iter()
                .filter(|j| {
                    job_finished(j) && (finished_condition(j) == "Complete") == want_complete
                })
                .collect();
            if done.len() as i32 <= limit {
                continue;
            }
            done.sort_by_key(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref().map(|t| t.0))
                    .or(j.metadata.creation_timestamp.as_ref().map(|t| t.0))
            });
            let n = done.len() - limit.max(0) as usize;
            for j in &done[..n] {
                delete_job(&ctx, &cj, j).await?;
            }
        }
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn most_recent_and_missed() {
        let s = Schedule::parse("*/1 * * * *").unwrap();
        let tz = TimeZone::UTC;
        let created = ts("2024-01-01T00:00:30Z");
        // Before the first time: nothing due.
        let r = most_recent_schedule_time(
            created,
            None,
            None,
            ts("2024-01-01T00:00:59Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, None);
        // One due.
        let r = most_recent_schedule_time(
            created,
            None,
            None,
            ts("2024-01-01T00:01:10Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, Some(ts("2024-01-01T00:01:00Z")));
        assert_eq!(r.2, Missed::Few);
        // Several missed: the most recent one is started.
        let r = most_recent_schedule_time(
            created,
            None,
            None,
            ts("2024-01-01T00:05:10Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, Some(ts("2024-01-01T00:05:00Z")));
        // More than 100 missed: upstream's warning.
        let r = most_recent_schedule_time(
            created,
            None,
            None,
            ts("2024-01-01T03:00:10Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, Some(ts("2024-01-01T03:00:00Z")));
        assert_eq!(r.2, Missed::Many(180));
        // startingDeadlineSeconds bounds how far back we look.
        let r = most_recent_schedule_time(
            created,
            None,
            Some(200),
            ts("2024-01-01T03:00:10Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, Some(ts("2024-01-01T03:00:00Z")));
        assert_eq!(r.2, Missed::Few);
        // Already scheduled at the last time: nothing new.
        let r = most_recent_schedule_time(
            created,
            Some(ts("2024-01-01T00:05:00Z")),
            None,
            ts("2024-01-01T00:05:30Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, None);
        // Irregular schedules land on real schedule times.
        let s = Schedule::parse("0 0 1,15 * *").unwrap();
        let r = most_recent_schedule_time(
            created,
            None,
            None,
            ts("2024-03-20T00:00:00Z"),
            &s,
            &tz,
            true,
        )
        .unwrap();
        assert_eq!(r.1, Some(ts("2024-03-15T00:00:00Z")));
    }

    #[test]
    fn requeue_after_next_time() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let d = next_schedule_duration(
            ts("2024-01-01T00:00:00Z"),
            None,
            ts("2024-01-01T00:03:00Z"),
            &s,
            &TimeZone::UTC,
        );
        assert_eq!(d, Some(Duration::from_secs(120) + NEXT_SCHEDULE_DELTA));
        let d = next_schedule_duration(
            ts("2024-01-01T00:00:00Z"),
            Some(ts("2024-01-01T00:05:00Z")),
            ts("2024-01-01T00:06:00Z"),
            &s,
            &TimeZone::UTC,
        );
        assert_eq!(d, Some(Duration::from_secs(240) + NEXT_SCHEDULE_DELTA));
    }

    #[test]
    fn job_names_and_template() {
        let cj: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hello", "namespace": "default", "uid": "u1"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap();
        let t = ts("2024-01-01T00:01:00Z");
        assert_eq!(job_name("hello", t), "hello-28401121");
        let j = job_from_template(&cj, t, &TimeZone::UTC);
        assert_eq!(j.metadata.name.as_deref(), Some("hello-28401121"));
        assert_eq!(
            j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(j.metadata.labels.as_ref().unwrap()["a"], "b");
        let o = &j.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((o.kind.as_str(), o.controller), ("CronJob", Some(true)));
        let ny = TimeZone::get("America/New_York").unwrap();
        let j = job_from_template(&cj, t, &ny);
        assert_eq!(
            j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2023-12-31T19:01:00-05:00"
        );
    }
}
