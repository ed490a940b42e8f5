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
