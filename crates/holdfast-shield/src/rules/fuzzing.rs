//! Both rule engines on one expression and one request, for `fuzz/` (the differential
//! target) and tests: the config check's verdict, then the rule compiled as the data path
//! compiles it, evaluated natively (when it has a native shape) and by `cel-interpreter`
//! with the request fields the check said it reads, and again with every field. Not used by
//! the server.

use super::{native, BotScore, IpLists, RuleAction, RuleDef, RuleMetrics, Rules};
use cel_interpreter::Value;
use holdfast_modules::RequestView;
use std::sync::{Arc, OnceLock};

/// The IP list `ip_in_list(…, "office")` reads: 192.0.2.0/24, 2001:db8::/32, 203.0.113.9.
pub const OFFICE_LIST: &str = "office";
const OFFICE: &str = "# version: 1\n192.0.2.0/24\n2001:db8::/32\n203.0.113.9\n";

/// One expression's answers on one request (`None`: the evaluation failed, a miss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// The native predicate's answer, when the expression compiled to one.
    pub native: Option<Option<bool>>,
    /// CEL with the fields `check_rule_expr` listed (what the data path builds).
    pub cel: Option<bool>,
    /// CEL with every field built.
    pub cel_all_fields: Option<bool>,
}

/// What became of an expression.
#[derive(Debug)]
pub enum Outcome {
    /// The config check refused it (then nothing else must accept it).
    Refused(String),
    /// The check accepted it but the engine could not compile it: a contract breach.
    NotCompiled(String),
    Answered(Answers),
}

/// The config check, then both engines on `req` with `client.rate` = `rate` and
/// `bot.score` = `bot`.
pub fn evaluate(expr: &str, req: &RequestView<'_>, rate: Option<u32>, bot: BotScore) -> Outcome {
    let fields = match holdfast_config::check_rule_expr_with(expr, &[OFFICE_LIST]) {
        Ok(f) => f,
        Err(e) => return Outcome::Refused(e),
    };
    let Some((metrics, lists)) = shared() else {
        return Outcome::NotCompiled("the office IP list did not load".to_string());
    };
    let spec = RuleDef {
        id: "fuzz".into(),
        expr: expr.into(),
        action: RuleAction::Log,
        shadow: false,
        routes: Vec::new(),
        fields,
        header: None,
        route: None,
        limit: None,
    };
    let mut rules = match Rules::new(vec![spec], metrics, lists) {
        Ok(r) => r,
        Err(e) => return Outcome::NotCompiled(e.to_string()),
    };
    let Some(rule) = rules.rules.first() else {
        return Outcome::NotCompiled("no rule".to_string());
    };
    let view = native::Req::new(req).with_rate(rate).with_bot(bot);
    let native = rule.native.as_ref().map(|p| p.eval(&view).ok());
    let run = |rules: &Rules| {
        let ctx = rules.context_with(req, rate, bot);
        match rules.rules.first().map(|r| r.program.execute(&ctx)) {
            Some(Ok(Value::Bool(b))) => Some(b),
            _ => None,
        }
    };
    rules.fields = fields;
    let cel = run(&rules);
    rules.fields = holdfast_config::RuleFields {
        method: true,
        path: true,
        host: true,
        query: true,
        headers: true,
        cookies: true,
        client_ip: true,
        ja4h: true,
        bot: true,
        rate: true,
    };
    let cel_all_fields = run(&rules);
    Outcome::Answered(Answers {
        native,
        cel,
        cel_all_fields,
    })
}

/// Metrics and the office list, made once per process.
fn shared() -> Option<&'static (RuleMetrics, IpLists)> {
    static SHARED: OnceLock<Option<(RuleMetrics, IpLists)>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            use holdfast_artifact::{Artifact, ArtifactMetrics, ArtifactOptions};
            let registry = prometheus::Registry::new();
            let metrics = RuleMetrics::new(&registry).ok()?;
            let path = std::env::temp_dir()
                .join(format!("holdfast-fuzz-office-{}.txt", std::process::id()));
            std::fs::write(&path, OFFICE).ok()?;
            let mut options = ArtifactOptions::new(&path);
            options.name = Some(OFFICE_LIST.into());
            let artifact_metrics = Arc::new(ArtifactMetrics::new(&registry).ok()?);
            let list = Arc::new(Artifact::<crate::ip_list::IpListKind>::new(
                options,
                artifact_metrics,
            ));
            list.start();
            let _ = std::fs::remove_file(&path);
            list.current().as_ref()?;
            Some((metrics, IpLists::from([(OFFICE_LIST.to_string(), list)])))
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn view<'a>(headers: &'a http::HeaderMap, path: &'a str) -> RequestView<'a> {
        RequestView {
            method: &http::Method::GET,
            version: http::Version::HTTP_11,
            headers,
            path,
            query: None,
            client_ip: "192.0.2.7".parse().unwrap(),
            tls: false,
            route: "main",
        }
    }

    #[test]
    fn both_engines_answer_and_refusals_say_so() {
        let h = http::HeaderMap::new();
        let v = view(&h, "/wp-admin/x");
        let both = |expr: &str| match evaluate(expr, &v, Some(3), BotScore::Score(7)) {
            Outcome::Answered(a) => a,
            other => panic!("{expr}: {other:?}"),
        };
        let a = both(r#"request.path.startsWith("/wp-admin") && ip_in_list(client.ip, "office")"#);
        assert_eq!(a.native, Some(Some(true)));
        assert_eq!((a.cel, a.cel_all_fields), (Some(true), Some(true)));
        let a = both("size(request.path) > 3 && client.rate < 5 && bot.score == 7");
        assert_eq!(a.native, None);
        assert_eq!(a.cel, Some(true));
        assert!(matches!(
            evaluate("nonsense.field", &v, None, BotScore::Unknown),
            Outcome::Refused(_)
        ));
    }
}
