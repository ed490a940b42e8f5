//! `hearth.v1.AutomationService`.

use std::sync::Arc;

use hearth_proto::v1::{
    self, automation_service_server::AutomationService, CreateRuleRequest, DeleteRuleRequest,
    DeleteRuleResponse, ListRulesRequest, ListRulesResponse,
};
use tonic::{Request, Response, Status};

use super::{convert, status::invalid};
use crate::{
    app::Core,
    domain::{DeviceId, DeviceKind, HomeId, RuleId, ThresholdRule},
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
        id: &str,
        field: &'static str,
        home: &HomeId,
        sensor: bool,
    ) -> Result<DeviceId, Status> {
        let id = DeviceId::parse(id, field)?;
        let known = self
            .core
            .directory
            .lookup(&id)
            .await?
            .ok_or_else(|| Status::not_found(format!("{field}: device {id} not found")))?;
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
}

#[tonic::async_trait]
impl AutomationService for AutomationApi {
    async fn create_rule(
        &self,
        request: Request<CreateRuleRequest>,
    ) -> Result<Response<v1::Rule>, Status> {
        let r = request
            .into_inner()
            .rule
            .ok_or_else(|| invalid("rule", "must be set"))?;
        let id = match r.id.as_str() {
            "" => RuleId::parse(&format!("rule-{:08x}", rand::random::<u32>()), "rule.id")?,
            id => RuleId::parse(id, "rule.id")?,
        };
        let home_id = HomeId::parse(&r.home_id, "rule.home_id")?;
        let metric = convert::metric_filter(r.metric, "rule.metric")?
            .ok_or_else(|| invalid("rule.metric", "must be set"))?;
        let rule = ThresholdRule {
            name: if r.name.trim().is_empty() {
                id.to_string()
            } else {
                r.name.trim().to_owned()
            },
            source: self
                .device_in_home(&r.source_device_id, "rule.source_device_id", &home_id, true)
                .await?,
            target: self
                .device_in_home(
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
        };
        rule.validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.core.storage.create_rule(&rule).await?;
        self.core.automation.reload().await?;
        Ok(Response::new(convert::rule(&rule)))
    }

    async fn list_rules(
        &self,
        request: Request<ListRulesRequest>,
    ) -> Result<Response<ListRulesResponse>, Status> {
        let home = match request.into_inner().home_id.as_str() {
            "" => None,
            id => Some(HomeId::parse(id, "home_id")?),
        };
        let rules = self.core.storage.list_rules(home.as_ref()).await?;
        Ok(Response::new(ListRulesResponse {
            rules: rules.iter().map(convert::rule).collect(),
        }))
    }

    async fn delete_rule(
        &self,
        request: Request<DeleteRuleRequest>,
    ) -> Result<Response<DeleteRuleResponse>, Status> {
        let id = RuleId::parse(&request.into_inner().id, "id")?;
        self.core.storage.delete_rule(&id).await?;
        self.core.automation.reload().await?;
        Ok(Response::new(DeleteRuleResponse {}))
    }
}
