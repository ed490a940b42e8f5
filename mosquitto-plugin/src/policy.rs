//! What the plugin decides, free of the broker: who may retain, and where
//! the rule applies.

/// The plugin's settings, from its `plugin_opt_*` lines:
///
/// - `plugin_opt_retainers NAME [NAME…]` (required): the logins that may
///   retain, Hearth's (its replicas log in as the dynamic security admin,
///   `HEARTH_MQTT_DYNSEC_ADMIN`).
/// - `plugin_opt_topics FILTER [FILTER…]` (default `#`): where the rule
///   applies; elsewhere the plugin leaves the decision to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    retainers: Vec<String>,
    topics: Vec<String>,
}

/// What the plugin answers Mosquitto for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refused, whatever the plugins after this one would say.
    Deny,
    /// Not this plugin's to decide: dynamic security (or the next plugin)
    /// does, as if this one were not loaded.
    Defer,
}

impl Policy {
    /// The policy `options` (key without `plugin_opt_`, value) say, or an
    /// error naming the option at fault.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut retainers = None;
        let mut topics = None;
        for (key, value) in options {
            let words: Vec<String> = value
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            match key {
                "retainers" => retainers = Some(words),
                "topics" => {
                    if let Some(bad) = words.iter().find(|f| !is_filter(f)) {
                        return Err(format!(
                            "plugin_opt_topics: '{bad}' is not an MQTT topic filter"
                        ));
                    }
                    topics = Some(words);
                }
                other => {
                    return Err(format!(
                        "plugin_opt_{other} is not an option of this plugin \
                         (plugin_opt_retainers, plugin_opt_topics)"
                    ))
                }
            }
        }
        let retainers = retainers.filter(|r| !r.is_empty()).ok_or(
            "plugin_opt_retainers is required: the logins that may retain (Hearth's)".to_owned(),
        )?;
        let topics = topics
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| vec!["#".to_owned()]);
        Ok(Self { retainers, topics })
    }

    /// The answer to a check of `username` (none: anonymous) sending a
    /// message on `topic`, `retain` as flagged. Only what is sent is
    /// judged: a retained message delivered to a subscriber was checked when
    /// it was sent.
    pub fn check(&self, write: bool, retain: bool, username: Option<&str>, topic: &str) -> Verdict {
        let retainer = username.is_some_and(|u| self.retainers.iter().any(|r| r == u));
        if write && retain && !retainer && self.applies_to(topic) {
            Verdict::Deny
        } else {
            Verdict::Defer
        }
    }

    fn applies_to(&self, topic: &str) -> bool {
        self.topics.iter().any(|f| matches(f, topic))
    }

    /// For the broker's log at start.
    pub fn describe(&self) -> String {
        format!(
            "only {} may retain on {}",
            self.retainers.join(", "),
            self.topics.join(" ")
        )
    }
}

/// Whether `filter` is a well-formed MQTT topic filter.
fn is_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['#', '+']),
    })
}

/// Whether `topic` matches `filter`, as MQTT says: `+` is one level, `#`
/// the rest (the parent level included), and a topic starting with `$`
/// matches no wildcard in the first level.
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(t)) if l == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(options: &[(&str, &str)]) -> Policy {
        Policy::from_options(options.iter().copied()).unwrap()
    }

    #[test]
    fn only_the_retainers_retain_and_only_sending_is_judged() {
        let p = policy(&[("retainers", "hearth-admin")]);
        for who in [Some("hearth-device-a"), Some("token"), None] {
            assert_eq!(
                p.check(true, true, who, "hearth/v1/h/a/readings"),
                Verdict::Deny,
                "{who:?}"
            );
            assert_eq!(
                p.check(true, false, who, "hearth/v1/h/a/readings"),
                Verdict::Defer
            );
            // A retained message delivered to a subscriber.
            assert_eq!(
                p.check(false, true, who, "hearth/v1/h/a/desired"),
                Verdict::Defer
            );
        }
        assert_eq!(
            p.check(true, true, Some("hearth-admin"), "hearth/v1/h/a/desired"),
            Verdict::Defer
        );
        // Not a prefix match of the name.
        assert_eq!(
            p.check(true, true, Some("hearth-admin2"), "x"),
            Verdict::Deny
        );
    }

    #[test]
    fn the_rule_applies_only_on_the_topics_named() {
        let p = policy(&[
            ("retainers", "hearth-admin, other"),
            ("topics", "hearth/# homeassistant/+/+/+/config"),
        ]);
        let device = Some("hearth-device-a");
        assert_eq!(p.check(true, true, device, "hearth"), Verdict::Deny);
        assert_eq!(
            p.check(true, true, device, "hearth/v1/h/a/status"),
            Verdict::Deny
        );
        assert_eq!(
            p.check(true, true, device, "homeassistant/fan/hearth_h/h_a/config"),
            Verdict::Deny
        );
        assert_eq!(
            p.check(true, true, device, "homeassistant/status"),
            Verdict::Defer
        );
        assert_eq!(
            p.check(true, true, device, "zigbee2mqtt/lamp"),
            Verdict::Defer
        );
        assert_eq!(
            p.check(true, true, Some("other"), "hearth/x"),
            Verdict::Defer
        );
    }

    #[test]
    fn wildcards_match_as_mqtt_says() {
        assert!(matches("#", "a/b"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }

    #[test]
    fn a_missing_or_unknown_option_or_a_bad_filter_is_refused_by_name() {
        let err =
            |options: &[(&str, &str)]| Policy::from_options(options.iter().copied()).unwrap_err();
        assert!(err(&[]).contains("plugin_opt_retainers is required"));
        assert!(err(&[("retainers", " , ")]).contains("plugin_opt_retainers is required"));
        assert!(err(&[("retainers", "h"), ("retain", "x")]).contains("plugin_opt_retain is not"));
        assert!(err(&[("retainers", "h"), ("topics", "a/#/b")]).contains("'a/#/b'"));
        assert!(err(&[("retainers", "h"), ("topics", "a/b+")]).contains("'a/b+'"));
        assert_eq!(
            policy(&[("retainers", "h")]).describe(),
            "only h may retain on #"
        );
    }
}
