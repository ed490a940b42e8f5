//! `hearth.v1.AutomationService`.

use std::sync::Arc;

use hearth_proto::v1::{
    self, automation_service_server::AutomationService, CreateRuleRequest, DeleteRuleRequest,
    DeleteRuleResponse, ListRulesRequest, ListRulesResponse,
};
use tonic::{Request, Response, Status};
use tracing::info;

use super::{
    convert, scope,
    status::{invalid, invalid_id},
};
use crate::{
    access::{caller, require},
    core::Core,
    domain::{
        replay, Caller, DeviceId, DeviceKind, HomeId, LoggedDecision, Role, RuleId, RuleState,
        ThresholdRule,
    },
    storage::DecisionsOf,
};

pub struct AutomationApi {
    core: Arc<Core>,
}

impl AutomationApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The device named by `field`, which must exist in `home` and be (or not
    /// be) a sensor.
    async fn device_in_home(
        &self,
        caller: &Caller,
        id: &str,
        field: &'static str,
        home: &HomeId,
        sensor: bool,
    ) -> Result<DeviceId, Status> {
        let id = DeviceId::parse(id, field).map_err(invalid_id)?;
        let not_found = || Status::not_found(format!("{field}: device {id} not found"));
        let known = self
            .core
            .directory
            .lookup(&id)
            .await?
            .ok_or_else(not_found)?;
        // Why: a device of a home the caller has no role in does not exist
        // for it, so the error must not say where it is.
        if !caller.sees(&known.home_id) {
            return Err(not_found());
        }
        if &known.home_id != home {
            return Err(invalid(
                field,
                format!("names device {id} of home {}, not of {home}", known.home_id),
            ));
        }
        match (sensor, known.kind == DeviceKind::Sensor) {
            (true, false) => Err(invalid(
                field,
                format!("names {id}, a {}, not a sensor", known.kind.as_str()),
            )),
            (false, true) => Err(invalid(
                field,
                format!("names {id}, a sensor; a rule must switch a fan or a light"),
            )),
            _ => Ok(id),
        }
    }

    /// Checks a rule as sent: ids, devices, thresholds and durations, and
    /// that `caller` has `need` in its home. `id` empty: a new id (for
    /// CreateRule and DryRun).
    async fn rule_from_proto(
        &self,
        r: v1::Rule,
        caller: &Caller,
        need: Role,
    ) -> Result<ThresholdRule, Status> {
        let id = match r.id.as_str() {
            "" => RuleId::parse(&format!("rule-{:08x}", rand::random::<u32>()), "rule.id")
                .map_err(invalid_id)?,
            id => RuleId::parse(id, "rule.id").map_err(invalid_id)?,
        };
        let home_id = HomeId::parse(&r.home_id, "rule.home_id").map_err(invalid_id)?;
        scope::home(&self.core, caller, &home_id, need, "rule.home_id").await?;
        let metric = convert::metric_filter(r.metric, "rule.metric")?
            .ok_or_else(|| invalid("rule.metric", "must be set"))?;
        let stale_action = convert::stale_action_from_proto(r.stale_action, "rule.stale_action")?;
        if r.name.chars().count() > 255 {
            return Err(invalid("rule.name", "is longer than 255 characters"));
        }
        let rule = ThresholdRule {
            name: if r.name.trim().is_empty() {
                id.to_string()
            } else {
                r.name.trim().to_owned()
            },
            source: self
                .device_in_home(
                    caller,
                    &r.source_device_id,
                    "rule.source_device_id",
                    &home_id,
                    true,
                )
                .await?,
            target: self
                .device_in_home(
                    caller,
                    &r.target_device_id,
                    "rule.target_device_id",
                    &home_id,
                    false,
                )
                .await?,
            id,
            home_id,
            metric,
            on_above: r.on_above,
            off_below: r.off_below,
            enabled: r.enabled,
            min_on_s: r.min_on_seconds,
            min_off_s: r.min_off_seconds,
            sustain_s: r.sustain_seconds,
            stale_after_s: r.stale_after_seconds,
            stale_action,
        };
        rule.validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(rule)
    }

    /// The home of rule `id`, if the caller has at least `need` there.
    async fn rule_home(
        &self,
        caller: &Caller,
        id: &RuleId,
        need: Role,
        field: &str,
    ) -> Result<HomeId, Status> {
        let what = format!("rule {id}");
        let home = self
            .core
            .storage
            .list_rules(None)
            .await?
            .into_iter()
            .find(|r| &r.id == id)
            .map(|r| r.home_id)
            .ok_or_else(|| Status::not_found(format!("{what} not found")))?;
        require(caller, &home, need, &what, field)?;
        Ok(home)
    }
}

/// Most decisions in one ListDecisions answer, and the default.
const MAX_DECISIONS: u32 = 500;
const DEFAULT_DECISIONS: u32 = 50;
/// Most readings a dry run evaluates.
const MAX_DRY_RUN_READINGS: u32 = 200_000;

#[tonic::async_trait]
impl AutomationService for AutomationApi {
    async fn create_rule(
        &self,
        request: Request<CreateRuleRequest>,
    ) -> Result<Response<v1::Rule>, Status> {
        let auth = caller(&request)?;
        let r = request
            .into_inner()
            .rule
            .ok_or_else(|| invalid("rule", "must be set"))?;
        let rule = self.rule_from_proto(r, &auth.caller, Role::Admin).await?;
        let start = RuleState::new(self.core.clock.now());
        self.core.storage.create_rule(&rule, &start).await?;
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "rule.create",
                Some(&rule.home_id),
                rule.id.as_str(),
                true,
            )
            .await;
        info!(rule = %rule.id, home = %rule.home_id, "rule created");
        Ok(Response::new(convert::rule(&rule)))
    }

    async fn list_rules(
        &self,
        request: Request<ListRulesRequest>,
    ) -> Result<Response<ListRulesResponse>, Status> {
        let auth = caller(&request)?;
        let home = match request.into_inner().home_id.as_str() {
            "" => None,
            id => Some(HomeId::parse(id, "home_id").map_err(invalid_id)?),
        };
        if let Some(home) = &home {
            scope::home(&self.core, &auth.caller, home, Role::Viewer, "home_id").await?;
        }
        let rules = self.core.storage.list_rules(home.as_ref()).await?;
        Ok(Response::new(ListRulesResponse {
            rules: rules
                .iter()
                .filter(|r| auth.caller.sees(&r.home_id))
                .map(convert::rule)
                .collect(),
        }))
    }

    async fn delete_rule(
        &self,
        request: Request<DeleteRuleRequest>,
    ) -> Result<Response<DeleteRuleResponse>, Status> {
        let auth = caller(&request)?;
        let id = RuleId::parse(&request.into_inner().id, "id").map_err(invalid_id)?;
        let home = self.rule_home(&auth.caller, &id, Role::Admin, "id").await?;
        self.core.storage.delete_rule(&id).await?;
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "rule.delete",
                Some(&home),
                id.as_str(),
                true,
            )
            .await;
        info!(rule = %id, "rule deleted");
        Ok(Response::new(DeleteRuleResponse {}))
    }

    async fn update_rule(
        &self,
        request: Request<v1::UpdateRuleRequest>,
    ) -> Result<Response<v1::Rule>, Status> {
        let auth = caller(&request)?;
        let r = request
            .into_inner()
            .rule
            .ok_or_else(|| invalid("rule", "must be set"))?;
        if r.id.is_empty() {
            return Err(invalid("rule.id", "must name the rule to update"));
        }
        let id = RuleId::parse(&r.id, "rule.id").map_err(invalid_id)?;
        let home = self
            .rule_home(&auth.caller, &id, Role::Admin, "rule.id")
            .await?;
        let rule = self.rule_from_proto(r, &auth.caller, Role::Admin).await?;
        if rule.home_id != home {
            return Err(invalid(
                "rule.home_id",
                "cannot move a rule to another home",
            ));
        }
        let start = RuleState::new(self.core.clock.now());
        self.core.storage.update_rule(&rule, &start).await?;
        self.core
            .access
            .audit(
                &auth.caller.name(),
                "rule.update",
                Some(&home),
                rule.id.as_str(),
                true,
            )
            .await;
        info!(rule = %rule.id, enabled = rule.enabled, "rule updated");
        Ok(Response::new(convert::rule(&rule)))
    }

    async fn list_decisions(
        &self,
        request: Request<v1::ListDecisionsRequest>,
    ) -> Result<Response<v1::ListDecisionsResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let limit = match r.limit {
            0 => DEFAULT_DECISIONS,
            n if n <= MAX_DECISIONS => n,
            n => return Err(invalid("limit", format!("is {n}, at most {MAX_DECISIONS}"))),
        };
        let decisions = match (r.home_id.as_str(), r.rule_id.as_str()) {
            ("", "") => return Err(invalid("home_id", "or rule_id must be set")),
            (home, "") => {
                let home = HomeId::parse(home, "home_id").map_err(invalid_id)?;
                scope::home(&self.core, &auth.caller, &home, Role::Viewer, "home_id").await?;
                self.core
                    .storage
                    .list_decisions(DecisionsOf::Home(&home), limit)
                    .await?
            }
            ("", rule) => {
                let rule = RuleId::parse(rule, "rule_id").map_err(invalid_id)?;
                self.rule_home(&auth.caller, &rule, Role::Viewer, "rule_id")
                    .await?;
                self.core
                    .storage
                    .list_decisions(DecisionsOf::Rule(&rule), limit)
                    .await?
            }
            _ => return Err(invalid("rule_id", "and home_id must not both be set")),
        };
        Ok(Response::new(v1::ListDecisionsResponse {
            decisions: decisions.iter().map(convert::decision).collect(),
        }))
    }

    async fn dry_run(
        &self,
        request: Request<v1::DryRunRequest>,
    ) -> Result<Response<v1::DryRunResponse>, Status> {
        let auth = caller(&request)?;
        let r = request.into_inner();
        let rule = r.rule.ok_or_else(|| invalid("rule", "must be set"))?;
        let rule = self
            .rule_from_proto(rule, &auth.caller, Role::Viewer)
            .await?;
        let end = match r.end_unix_ms {
            0 => self.core.clock.now(),
            end => end,
        };
        if r.start_unix_ms <= 0 || r.start_unix_ms >= end {
            return Err(invalid(
                "start_unix_ms",
                "must be set and before end_unix_ms",
            ));
        }
        let readings = self
            .core
            .storage
            .readings_after(
                &rule.source,
                rule.metric,
                (r.start_unix_ms - 1, u64::MAX),
                Some(end),
                MAX_DRY_RUN_READINGS,
            )
            .await?;
        let count = readings.len() as u64;
        let decisions = replay(
            &rule,
            r.start_unix_ms,
            readings.iter().map(|r| (r.time, r.value)),
            end,
        );
        Ok(Response::new(v1::DryRunResponse {
            decisions: decisions
                .into_iter()
                .map(|decision| {
                    convert::decision(&LoggedDecision {
                        rule_id: rule.id.clone(),
                        home_id: rule.home_id.clone(),
                        target: rule.target.clone(),
                        decision,
                        command_version: 0,
                    })
                })
                .collect(),
            readings: count,
        }))
    }
}
