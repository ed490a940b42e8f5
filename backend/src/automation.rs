//! The automation engine. One replica at a time evaluates the rules: the one
//! holding the `automation` lease in the database, renewed while it lives and
//! taken over by another replica when it dies. The engine reads a rule's new
//! readings from the database (not from this replica's ingest, since with
//! several replicas each reading is stored by only one of them), feeds them
//! and the clock to the rule's state machine, sends the switches it decides
//! to control, logs every decision, and persists the rule's state.
//!
//! Exactly one command per crossing: a switch is sent before the state that
//! records it is saved, so a replica dying in between makes its successor
//! evaluate the same reading again, and control makes no second command
//! because the device is already asked for that state.

use std::{collections::HashMap, sync::Arc, time::Duration};

use hearth_runtime::Clock;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    control::Control,
    domain::{DeviceId, LoggedDecision, RuleId, RuleState, ThresholdRule, UnixMs},
    ingest::StoredCommit,
    metrics::Metrics,
    storage::{Storage, StorageError},
};

/// How often the engine looks at the clock and for readings stored by
/// other replicas.
const TICK: Duration = Duration::from_millis(250);
/// How long a lease lasts unless renewed; renewed at half of it.
const LEASE_MS: i64 = 3_000;
const LEASE_NAME: &str = "automation";
/// Readings evaluated per rule per pass.
const READINGS_PER_PASS: u32 = 1_000;

pub struct Automation {
    storage: Arc<dyn Storage>,
    control: Arc<Control>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// This replica's name in the lease.
    holder: String,
}

/// The leader's view of a rule: its definition when the state was loaded
/// (a changed rule starts afresh) and its state.
struct Running {
    rule: ThresholdRule,
    state: RuleState,
}

impl Automation {
    pub fn new(
        storage: Arc<dyn Storage>,
        control: Arc<Control>,
        metrics: Arc<Metrics>,
        clock: Clock,
        holder: String,
    ) -> Self {
        Self {
            storage,
            control,
            metrics,
            clock,
            holder,
        }
    }

    /// Evaluates rules until shutdown, whenever this replica holds the lease.
    /// A stored batch from one of a rule's sources wakes it at once.
    pub async fn run(
        self: Arc<Self>,
        mut stored: broadcast::Receiver<Arc<StoredCommit>>,
        shutdown: CancellationToken,
    ) {
        let mut lease_until: UnixMs = 0;
        let mut running: HashMap<RuleId, Running> = HashMap::new();
        let mut sources: Vec<DeviceId> = Vec::new();
        // Why an interval and not a sleep per loop: a stream of unrelated
        // batches would restart a sleep forever and starve the ticks.
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
                commit = stored.recv() => match commit {
                    Ok(commit) if commit.iter().flat_map(|b| &b.readings).any(|r| sources.contains(&r.device_id)) => {}
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
            }
            let now = self.clock.now();
            if lease_until - now < LEASE_MS / 2 {
                match self
                    .storage
                    .acquire_lease(LEASE_NAME, &self.holder, now, now + LEASE_MS)
                    .await
                {
                    Ok(true) => {
                        if lease_until <= now {
                            info!(
                                holder = self.holder,
                                "this replica now runs the automation rules"
                            );
                            // Another replica may have moved every rule on.
                            running.clear();
                        }
                        lease_until = now + LEASE_MS;
                    }
                    Ok(false) => {
                        if lease_until > now {
                            info!(
                                holder = self.holder,
                                "another replica runs the automation rules now"
                            );
                        }
                        lease_until = 0;
                    }
                    Err(e) => warn!(error = %e, "could not renew the automation lease"),
                }
            }
            let leader = lease_until > now;
            self.metrics.automation_leader.set(i64::from(leader));
            if !leader {
                continue;
            }
            match self.pass(&mut running).await {
                Ok(rule_sources) => sources = rule_sources,
                Err(e) => warn!(error = %e, "automation pass failed; retrying"),
            }
            if let Err(e) = self.control.expire_commands().await {
                warn!(error = %e, "could not expire old commands");
            }
            if let Err(e) = self.end_overrides().await {
                warn!(error = %e, "could not end manual overrides");
            }
        }
        // Why release: on a rolling update the next leader takes over now,
        // not when the lease would have run out.
        if lease_until > self.clock.now() {
            match self.storage.release_lease(LEASE_NAME, &self.holder).await {
                Ok(()) => info!(holder = self.holder, "released the automation lease"),
                Err(e) => warn!(error = %e, "could not release the automation lease"),
            }
        }
        self.metrics.automation_leader.set(0);
    }

    /// One evaluation of every enabled rule. Returns the rules' sources.
    async fn pass(
        &self,
        running: &mut HashMap<RuleId, Running>,
    ) -> Result<Vec<DeviceId>, StorageError> {
        let rules = self.storage.list_rules(None).await?;
        running.retain(|id, r| rules.iter().any(|rule| &rule.id == id && *rule == r.rule));
        for rule in rules.iter().filter(|r| r.enabled) {
            if !running.contains_key(&rule.id) {
                let state = match self.storage.load_rule_state(&rule.id).await? {
                    Some(state) => state,
                    None => RuleState::new(self.clock.now()),
                };
                running.insert(
                    rule.id.clone(),
                    Running {
                        rule: rule.clone(),
                        state,
                    },
                );
            }
            let entry = running.get_mut(&rule.id).expect("inserted above");
            self.evaluate(rule, &mut entry.state).await?;
        }
        Ok(rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.source.clone())
            .collect())
    }

    /// Feeds the rule its new readings and the clock; acts on what it decides.
    async fn evaluate(
        &self,
        rule: &ThresholdRule,
        state: &mut RuleState,
    ) -> Result<(), StorageError> {
        let before = state.clone();
        let readings = self
            .storage
            .readings_after(
                &rule.source,
                rule.metric,
                state.cursor,
                None,
                READINGS_PER_PASS,
            )
            .await?;
        let mut decisions = Vec::new();
        for r in &readings {
            decisions.extend(state.observe(rule, r.value, r.time));
            state.cursor = (r.time, r.seq);
        }
        decisions.extend(state.tick(rule, self.clock.now()));
        for decision in decisions {
            let command_version = match decision.switch {
                Some(on) => match self
                    .control
                    .rule_decision(
                        &rule.target,
                        on,
                        &format!("rule:{}", rule.id),
                        &decision.reason,
                    )
                    .await
                {
                    Ok(version) => version.unwrap_or(0),
                    Err(e) => {
                        warn!(rule = %rule.id, target = %rule.target, error = %e, "rule could not switch its device");
                        0
                    }
                },
                None => 0,
            };
            info!(
                rule = %rule.id,
                target = %rule.target,
                action = decision.action.as_str(),
                value = decision.value,
                command_version,
                reason = decision.reason,
                "rule decided"
            );
            self.storage
                .record_decision(&LoggedDecision {
                    rule_id: rule.id.clone(),
                    home_id: rule.home_id.clone(),
                    target: rule.target.clone(),
                    decision,
                    command_version,
                })
                .await?;
        }
        if *state != before {
            self.storage.save_rule_state(&rule.id, state).await?;
        }
        Ok(())
    }

    /// Devices whose manual override ran out go back to AUTO, and their
    /// rules take them over.
    async fn end_overrides(&self) -> Result<(), crate::control::ControlError> {
        for id in self.storage.overrides_ended(self.clock.now()).await? {
            if self.control.end_override(&id).await? {
                self.resume(&id).await?;
            }
        }
        Ok(())
    }

    /// A device has just been set to AUTO: each enabled rule that targets it
    /// and has switched it before switches it to what it last decided.
    pub async fn resume(&self, device: &DeviceId) -> Result<(), crate::control::ControlError> {
        for rule in self.storage.list_rules(None).await? {
            if !rule.enabled || &rule.target != device {
                continue;
            }
            let Some(on) = self
                .storage
                .load_rule_state(&rule.id)
                .await?
                .and_then(|s| s.output)
            else {
                continue;
            };
            let reason = format!(
                "rule {}: back in AUTO; the rule has the device {}",
                rule.id,
                if on { "on" } else { "off" }
            );
            let version = self
                .control
                .rule_decision(device, on, &format!("rule:{}", rule.id), &reason)
                .await?;
            if version.is_some() {
                info!(rule = %rule.id, target = %device, on, "AUTO resumed the rule's decision");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hearth_proto::v1::Metric;

    use super::*;
    use crate::{
        control::testing::{eventually, id, TestHome, FAN, SENSOR, T0},
        domain::{Action, Mode, Reading, StaleAction},
        storage::DecisionsOf,
    };

    const RULE: &str = "fan-above-25";

    fn rule(home: &TestHome) -> ThresholdRule {
        ThresholdRule {
            id: RuleId::parse(RULE, "test id").unwrap(),
            home_id: home.home.clone(),
            name: "Fan on above 25 °C".into(),
            source: id(SENSOR),
            metric: Metric::TemperatureCelsius,
            target: id(FAN),
            on_above: 25.0,
            off_below: 23.0,
            enabled: true,
            min_on_s: 0,
            min_off_s: 0,
            sustain_s: 0,
            stale_after_s: 0,
            stale_action: StaleAction::Leave,
        }
    }

    /// A test home with `rule` stored, starting at `T0`, and an engine named
    /// `holder` over it.
    async fn engine(
        fan_mode: Mode,
        rule: impl FnOnce(ThresholdRule) -> ThresholdRule,
    ) -> (TestHome, Automation) {
        let home = TestHome::new(fan_mode).await;
        let rule = rule(self::rule(&home));
        home.storage
            .create_rule(&rule, &RuleState::new(T0))
            .await
            .unwrap();
        let automation = replica(&home, "a");
        (home, automation)
    }

    fn replica(home: &TestHome, holder: &str) -> Automation {
        Automation::new(
            home.storage.clone(),
            home.control.clone(),
            Arc::new(Metrics::default()),
            home.clock.clone(),
            holder.into(),
        )
    }

    /// The sensor's temperature `value`, taken at `at` (a new `seq` each).
    async fn temperature(home: &TestHome, at: UnixMs, value: f64) {
        home.storage
            .insert_readings(&[Reading {
                device_id: id(SENSOR),
                metric: Metric::TemperatureCelsius,
                seq: (at - T0) as u64,
                time: at,
                value,
            }])
            .await
            .unwrap();
    }

    /// The rule's logged decisions, oldest first, as (action, command version).
    async fn decisions(home: &TestHome) -> Vec<(Action, u64)> {
        let rule = RuleId::parse(RULE, "test id").unwrap();
        let mut logged = home
            .storage
            .list_decisions(DecisionsOf::Rule(&rule), 100)
            .await
            .unwrap();
        logged.reverse();
        logged
            .into_iter()
            .map(|d| (d.decision.action, d.command_version))
            .collect()
    }

    async fn fan_desired(home: &TestHome) -> Option<(u64, bool)> {
        home.device(FAN)
            .await
            .state
            .desired
            .map(|d| (d.version, d.on))
    }

    #[tokio::test]
    async fn crossing_the_threshold_switches_a_device_in_auto() {
        let (home, engine) = engine(Mode::Auto, |r| r).await;
        let mut running = HashMap::new();
        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 24.0).await;
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, None, "24 °C is in the dead band");

        home.clock.set(T0 + 2_000);
        temperature(&home, T0 + 2_000, 25.5).await;
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, Some((1, true)));

        home.clock.set(T0 + 3_000);
        temperature(&home, T0 + 3_000, 22.5).await;
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, Some((2, false)));
        assert_eq!(
            decisions(&home).await,
            [(Action::SwitchOn, 1), (Action::SwitchOff, 2)]
        );
        let fan = home.device(FAN).await;
        assert_eq!(
            fan.last_command.unwrap().requested_by,
            format!("rule:{RULE}")
        );
    }

    #[tokio::test]
    async fn a_device_switched_on_or_off_by_hand_is_left_alone_and_the_decision_logged() {
        let (home, engine) = engine(Mode::Off, |r| r).await;
        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 30.0).await;
        engine.pass(&mut HashMap::new()).await.unwrap();
        assert_eq!(fan_desired(&home).await, None);
        assert_eq!(decisions(&home).await, [(Action::SwitchOn, 0)]);
    }

    #[tokio::test]
    async fn a_reading_is_evaluated_once_even_by_an_engine_that_restarts() {
        let (home, engine) = engine(Mode::Auto, |r| r).await;
        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 26.0).await;
        engine.pass(&mut HashMap::new()).await.unwrap();
        // A fresh engine (a restart, or another replica) loads the saved state.
        replica(&home, "b").pass(&mut HashMap::new()).await.unwrap();
        assert_eq!(decisions(&home).await, [(Action::SwitchOn, 1)]);
    }

    #[tokio::test]
    async fn a_crossing_acts_only_once_it_held_for_the_sustain_time_on_the_clock() {
        let (home, engine) = engine(Mode::Auto, |r| ThresholdRule { sustain_s: 30, ..r }).await;
        let mut running = HashMap::new();
        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 26.0).await;
        engine.pass(&mut running).await.unwrap();
        home.clock.set(T0 + 30_999);
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, None, "held for 29.999 s");

        home.clock.set(T0 + 31_000);
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, Some((1, true)));
        assert_eq!(
            decisions(&home).await,
            [(Action::SustainStarted, 0), (Action::SwitchOn, 1)]
        );
    }

    #[tokio::test]
    async fn a_silent_sensor_trips_the_fail_safe_when_the_clock_passes_stale_after() {
        let (home, engine) = engine(Mode::Auto, |r| ThresholdRule {
            stale_after_s: 60,
            stale_action: StaleAction::Off,
            ..r
        })
        .await;
        let mut running = HashMap::new();
        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 26.0).await;
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, Some((1, true)));

        home.clock.set(T0 + 60_999);
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, Some((1, true)));
        home.clock.set(T0 + 61_000);
        engine.pass(&mut running).await.unwrap();
        assert_eq!(fan_desired(&home).await, Some((2, false)));
        assert_eq!(
            decisions(&home).await,
            [(Action::SwitchOn, 1), (Action::Stale, 2)]
        );
    }

    #[tokio::test]
    async fn when_a_manual_override_ends_the_rule_takes_the_device_back() {
        let (home, engine) = engine(Mode::Auto, |r| r).await;
        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 26.0).await;
        engine.pass(&mut HashMap::new()).await.unwrap();
        home.control
            .set_mode(&id(FAN), Mode::Off, Some(T0 + 61_000), "alice")
            .await
            .unwrap();
        assert_eq!(fan_desired(&home).await, Some((2, false)));

        home.clock.set(T0 + 61_000);
        engine.end_overrides().await.unwrap();

        let fan = home.device(FAN).await;
        assert_eq!(fan.state.mode, Mode::Auto);
        assert_eq!(fan_desired(&home).await, Some((3, true)));
    }

    /// Runs engine `holder` over `home` until its token is cancelled.
    fn spawn(
        home: &TestHome,
        holder: &str,
        stored: &broadcast::Sender<Arc<StoredCommit>>,
    ) -> (Arc<Metrics>, CancellationToken, tokio::task::JoinHandle<()>) {
        let metrics = Arc::new(Metrics::default());
        let engine = Arc::new(Automation::new(
            home.storage.clone(),
            home.control.clone(),
            metrics.clone(),
            home.clock.clone(),
            holder.into(),
        ));
        let stop = CancellationToken::new();
        let task = tokio::spawn(engine.run(stored.subscribe(), stop.clone()));
        (metrics, stop, task)
    }

    #[tokio::test]
    async fn only_the_lease_holder_acts_and_a_successor_resumes_where_it_stopped() {
        let (home, _) = engine(Mode::Auto, |r| r).await;
        // Why real time and not `tokio::time::pause()`: SQLite answers from
        // threads of its own, and while the runtime waits for them paused
        // time jumps ahead into sqlx's pool timeout (PoolTimedOut). The
        // engines tick every 250 ms; the lease runs on the manual clock,
        // which stands still unless moved.
        let (stored, _) = broadcast::channel(16);
        let (a, stop_a, task_a) = spawn(&home, "a", &stored);
        let (b, stop_b, task_b) = spawn(&home, "b", &stored);
        let leading = |m: &Metrics| m.automation_leader.get() == 1;
        let a_leads = eventually(|| async {
            match (leading(&a), leading(&b)) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                (true, true) => panic!("two leaders at once"),
                (false, false) => None,
            }
        })
        .await;
        let ((stop_leader, leader), (follower_metrics, stop_follower, follower)) = if a_leads {
            ((stop_a, task_a), (b, stop_b, task_b))
        } else {
            ((stop_b, task_b), (a, stop_a, task_a))
        };

        home.clock.set(T0 + 1_000);
        temperature(&home, T0 + 1_000, 26.0).await;
        // Why wait for the log and not the fan: a decision is logged after
        // the command it made.
        eventually(|| async {
            (decisions(&home).await.last() == Some(&(Action::SwitchOn, 1))).then_some(())
        })
        .await;
        assert_eq!(fan_desired(&home).await, Some((1, true)));
        assert!(!leading(&follower_metrics));

        stop_leader.cancel();
        leader.await.unwrap();
        eventually(|| async { leading(&follower_metrics).then_some(()) }).await;

        home.clock.set(T0 + 2_000);
        temperature(&home, T0 + 2_000, 22.0).await;
        // Why wait for the log and not the fan: a decision is logged after
        // the command it made.
        eventually(|| async {
            (decisions(&home).await.last() == Some(&(Action::SwitchOff, 2))).then_some(())
        })
        .await;
        assert_eq!(fan_desired(&home).await, Some((2, false)));
        assert_eq!(
            decisions(&home).await,
            [(Action::SwitchOn, 1), (Action::SwitchOff, 2)],
            "each reading decided once, by whoever held the lease"
        );
        stop_follower.cancel();
        follower.await.unwrap();
    }
}
