//! `[[rules]]`: unique ids, a CEL expression that compiles and uses only the variables and
//! functions the rule engine provides, an action that is built, a mode, routes that exist.

use super::{Errors, UniqueNames};
use crate::config::*;
use crate::error::ConfigError;
use crate::spec::*;
use cel_parser::ast::{EntryExpr, Expr, IdedExpr};
use cel_parser::reference::Val;

/// Longest expression accepted (the parser recurses; a rule is a line, not a program).
const MAX_EXPR_BYTES: usize = 4096;
/// Deepest nesting accepted, for the same reason.
const MAX_DEPTH: usize = 64;

/// Compiled size limit of a `matches` pattern (as the rule engine sets it).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What an unknown action's error suggests.
const ACTIONS_FIX: &str = "use \"block\", \"allow\", \"log\", \"challenge\", \"set_header\", \
                          \"remove_header\", \"route\" or \"rate_limit\"";

/// Headers a rule may not set or remove: they frame the message or the connection, or route
/// it (`host`); the edge owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The fields of `request`.
const REQUEST_FIELDS: &[&str] = &[
    "method", "path", "host", "query", "headers", "cookies", "ja4h",
];
/// The functions and methods rules may call (the interpreter's, without time functions).
const FUNCTIONS: &[&str] = &[
    "contains",
    "size",
    "startsWith",
    "endsWith",
    "matches",
    "string",
    "int",
    "uint",
    "double",
    "bytes",
    "max",
    "min",
    "ip_in_list",
];

/// The entries of a rule-list artifact, checked as `[[rules]]` are (ids unique and not empty,
/// expression, action, status, mode, header) but without routes (a list's rules apply to
/// every route) or IP lists. The errors name `rules[N].key`.
pub fn rule_list_entries(specs: &[RuleSpec]) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let rules = rules(specs, &[], &[], &[], &mut errs);
    if errs.0.is_empty() {
        Ok(rules)
    } else {
        Err(errs.0)
    }
}

pub(super) fn rules(
    specs: &[RuleSpec],
    routes: &[RouteSpec],
    lists: &[&str],
    limits: &[LimitSpec],
    errs: &mut Errors,
) -> Vec<Rule> {
    let mut names = UniqueNames::new(
        "rule",
        "id",
        "give the rule an id",
        "rule ids must be unique: they label metrics and /status",
    );
    specs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("rules[{i}]");
            names.check(&at, &r.id, errs);
            rule(&at, r, routes, lists, limits, errs)
        })
        .collect()
}

fn rule(
    at: &str,
    r: &RuleSpec,
    routes: &[RouteSpec],
    lists: &[&str],
    limits: &[LimitSpec],
    errs: &mut Errors,
) -> Rule {
    let fields = match check_rule_expr_with(&r.expr, lists) {
        Ok(f) => f,
        Err(e) => {
            errs.add(
                format!("{at}.expr"),
                e,
                "write a CEL expression over request.method, request.path, request.host, \
                 request.query, request.headers, request.cookies, request.ja4h, client.ip, \
                 client.rate and bot.score, e.g. 'request.path.startsWith(\"/wp-admin\")'",
            );
            RuleFields::default()
        }
    };
    let action = match r.action.as_str() {
        "block" => RuleAction::Block {
            status: status(at, r.status, errs),
        },
        "allow" => RuleAction::Allow,
        "log" => RuleAction::Log,
        "challenge" => RuleAction::Challenge {
            // 0: `[challenge].difficulty`, filled in once that table is checked.
            difficulty: r.difficulty.map_or(0, |d| {
                super::challenge::difficulty(&format!("{at}.difficulty"), d, errs)
            }),
            nojs: r.nojs.unwrap_or(true),
        },
        "set_header" => RuleAction::SetHeader,
        "remove_header" => RuleAction::RemoveHeader,
        "route" => RuleAction::Route,
        "rate_limit" => RuleAction::RateLimit,
        other => {
            errs.add(
                format!("{at}.action"),
                format!("unknown action {other:?}"),
                ACTIONS_FIX,
            );
            RuleAction::Log
        }
    };
    if !matches!(action, RuleAction::Challenge { .. }) {
        for (key, set) in [
            ("difficulty", r.difficulty.is_some()),
            ("nojs", r.nojs.is_some()),
        ] {
            if set {
                errs.add(
                    format!("{at}.{key}"),
                    format!("{key} only applies to action \"challenge\""),
                    &format!("remove {key}, or use action = \"challenge\""),
                );
            }
        }
    }
    if r.status.is_some() && !matches!(action, RuleAction::Block { .. }) {
        errs.add(
            format!("{at}.status"),
            "status only applies to action \"block\"",
            "remove status, or use action = \"block\"",
        );
    }
    let header = header(at, r, action, errs);
    let route = route_target(at, r, action, routes, errs);
    let limit = limit_target(at, r, action, limits, errs);
    let mode = match r.mode.as_deref() {
        None | Some("enforce") => RuleMode::Enforce,
        Some("log") => RuleMode::Log,
        Some(other) => {
            errs.add(
                format!("{at}.mode"),
                format!("unknown mode {other:?}"),
                "use \"enforce\" (act on a match) or \"log\" (count matches, act on none)",
            );
            RuleMode::Enforce
        }
    };
    let indices = super::route::route_indices(
        at,
        r.routes.as_deref(),
        routes,
        "apply to every route",
        errs,
    );
    Rule {
        id: r.id.clone(),
        expr: r.expr.clone(),
        action,
        mode,
        fields,
        routes: indices,
        header,
        route,
        limit,
    }
}

/// `limit`: required by action `rate_limit`, refused elsewhere; a `[[limits]]` entry with
/// `rules_only = true` (any other is already checked by route: a rule would count twice).
fn limit_target(
    at: &str,
    r: &RuleSpec,
    action: RuleAction,
    limits: &[LimitSpec],
    errs: &mut Errors,
) -> Option<String> {
    let wants = action == RuleAction::RateLimit;
    match (&r.limit, wants) {
        (None, false) => None,
        (Some(_), false) => {
            errs.add(
                format!("{at}.limit"),
                "limit only applies to action \"rate_limit\"",
                "remove limit, or use action = \"rate_limit\"",
            );
            None
        }
        (None, true) => {
            errs.add(
                format!("{at}.limit"),
                "action \"rate_limit\" needs the limit to apply",
                "add limit = \"<name of a [[limits]] entry with rules_only = true>\"",
            );
            None
        }
        (Some(name), true) => match limits.iter().find(|l| l.name == *name) {
            Some(l) if l.rules_only => Some(name.clone()),
            Some(_) => {
                errs.add(
                    format!("{at}.limit"),
                    format!("limit {name:?} applies by route already (rules_only is not set)"),
                    &format!(
                        "set rules_only = true on limit {name:?}, so that only rules apply it"
                    ),
                );
                None
            }
            None => {
                let known: Vec<&str> = limits
                    .iter()
                    .filter(|l| l.rules_only)
                    .map(|l| l.name.as_str())
                    .collect();
                errs.add(
                    format!("{at}.limit"),
                    format!("unknown limit {name:?}"),
                    &format!("use one of the rules_only limits {known:?}"),
                );
                None
            }
        },
    }
}

/// `route`: required by action `route`, refused elsewhere; an existing route's name.
fn route_target(
    at: &str,
    r: &RuleSpec,
    action: RuleAction,
    routes: &[RouteSpec],
    errs: &mut Errors,
) -> Option<String> {
    let wants = action == RuleAction::Route;
    match (&r.route, wants) {
        (None, false) => None,
        (Some(_), false) => {
            errs.add(
                format!("{at}.route"),
                "route only applies to action \"route\"",
                "remove route, or use action = \"route\" (to limit the rule to some routes, \
                 use routes = [...])",
            );
            None
        }
        (None, true) => {
            errs.add(
                format!("{at}.route"),
                "action \"route\" needs the route to send the request to",
                "add route = \"<name of a [[routes]] entry>\"",
            );
            None
        }
        (Some(name), true) => {
            if routes.iter().any(|x| x.name == *name) {
                Some(name.clone())
            } else {
                let known: Vec<&str> = routes.iter().map(|x| x.name.as_str()).collect();
                errs.add(
                    format!("{at}.route"),
                    format!("unknown route {name:?}"),
                    &format!("use one of {known:?}"),
                );
                None
            }
        }
    }
}

/// `header` and `value`: required by `set_header` (both) and `remove_header` (`header`),
/// refused elsewhere; a valid name outside `RESERVED_HEADERS`, a valid value.
fn header(at: &str, r: &RuleSpec, action: RuleAction, errs: &mut Errors) -> Option<RuleHeader> {
    let edits = matches!(action, RuleAction::SetHeader | RuleAction::RemoveHeader);
    if !edits {
        for (key, set) in [("header", r.header.is_some()), ("value", r.value.is_some())] {
            if set {
                errs.add(
                    format!("{at}.{key}"),
                    format!("{key} only applies to actions \"set_header\" and \"remove_header\""),
                    &format!("remove {key}, or use one of those actions"),
                );
            }
        }
        return None;
    }
    let Some(name) = &r.header else {
        errs.add(
            format!("{at}.header"),
            format!("action \"{}\" needs the header to edit", action.label()),
            "add header = \"x-example\" (the header of the request to the origin)",
        );
        return None;
    };
    let mut ok = true;
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Err(_) => {
            ok = false;
            errs.add(
                format!("{at}.header"),
                format!("{name:?} is not a valid header name"),
                "use letters, digits and - (e.g. \"x-shield\")",
            );
        }
        Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => {
            ok = false;
            errs.add(
                format!("{at}.header"),
                format!("{name:?} frames or routes the request; rules cannot edit it"),
                "edit another header (the edge sets this one itself)",
            );
        }
        Ok(_) => {}
    }
    let value = match (action, &r.value) {
        (RuleAction::SetHeader, None) => {
            errs.add(
                format!("{at}.value"),
                "action \"set_header\" needs a value",
                "add value = \"...\" (use remove_header to drop a header)",
            );
            return None;
        }
        (RuleAction::SetHeader, Some(v)) => {
            if http::HeaderValue::from_str(v).is_err() {
                ok = false;
                errs.add(
                    format!("{at}.value"),
                    format!("{v:?} is not a valid header value"),
                    "use visible ASCII and spaces, no line breaks",
                );
            }
            Some(v.clone())
        }
        (_, Some(_)) => {
            errs.add(
                format!("{at}.value"),
                "value only applies to action \"set_header\"",
                "remove value",
            );
            None
        }
        (_, None) => None,
    };
    ok.then(|| RuleHeader {
        name: name.to_ascii_lowercase(),
        value,
    })
}

fn status(at: &str, status: Option<i64>, errs: &mut Errors) -> u16 {
    match status {
        None => 403,
        Some(s) => match u16::try_from(s).ok().filter(|s| (400..=599).contains(s)) {
            Some(s) => s,
            None => {
                errs.add(
                    format!("{at}.status"),
                    format!("{s} is out of range"),
                    "use a status from 400 to 599 (default 403)",
                );
                403
            }
        },
    }
}

/// Compile-check a rule expression: it parses, names only `request` (with its fields),
/// `client.ip`, `client.rate` and `bot.score`, and calls only known functions. The answer is
/// the request fields it reads.
pub fn check_rule_expr(source: &str) -> Result<RuleFields, String> {
    check_rule_expr_with(source, &[])
}

/// `check_rule_expr` where `ip_in_list(ip, "name")` may name these IP lists.
pub fn check_rule_expr_with(source: &str, lists: &[&str]) -> Result<RuleFields, String> {
    if source.trim().is_empty() {
        return Err("empty expression".to_string());
    }
    if source.len() > MAX_EXPR_BYTES {
        return Err(format!(
            "expression is {} bytes, more than {MAX_EXPR_BYTES}",
            source.len()
        ));
    }
    let depth = source
        .bytes()
        .fold((0usize, 0usize), |(cur, max), b| match b {
            b'(' | b'[' | b'{' => (cur + 1, max.max(cur + 1)),
            b')' | b']' | b'}' => (cur.saturating_sub(1), max),
            _ => (cur, max),
        });
    if depth.1 > MAX_DEPTH {
        return Err(format!("expression nests deeper than {MAX_DEPTH}"));
    }
    // The parser (antlr4rust) panics on some inputs (e.g. a lone "("): a panic is this
    // expression's error, not the process's.
    let parsed =
        std::panic::catch_unwind(|| cel_parser::Parser::new().parse(source)).map_err(|_| {
            "the CEL parser could not read this expression; check its brackets and quotes"
                .to_string()
        })?;
    let expr = parsed.map_err(|e| {
        // The first error's line: later ones mostly follow from it.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").trim();
        match first.strip_prefix("ERROR: <input>:") {
            Some(rest) => format!("at {rest}"),
            None => first.to_string(),
        }
    })?;
    let mut fields = RuleFields::default();
    let mut bound = Vec::new();
    walk(&expr, &mut bound, &mut fields, lists)?;
    Ok(fields)
}

fn walk(
    e: &IdedExpr,
    bound: &mut Vec<String>,
    fields: &mut RuleFields,
    lists: &[&str],
) -> Result<(), String> {
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) => Ok(()),
        Expr::Ident(name) => match name.as_str() {
            n if bound.iter().any(|b| b == n) || n.starts_with('@') => Ok(()),
            "request" => {
                // The whole map: every field may be read.
                fields.method = true;
                fields.path = true;
                fields.host = true;
                fields.query = true;
                fields.headers = true;
                fields.cookies = true;
                fields.ja4h = true;
                Ok(())
            }
            "client" => {
                fields.client_ip = true;
                fields.rate = true;
                Ok(())
            }
            "bot" => {
                fields.bot = true;
                Ok(())
            }
            other => Err(format!(
                "unknown variable {other:?} (known: request, client, bot)"
            )),
        },
        Expr::Select(s) => {
            if let Expr::Ident(name) = &s.operand.expr {
                if !bound.iter().any(|b| b == name) {
                    match name.as_str() {
                        "request" => {
                            match s.field.as_str() {
                                "method" => fields.method = true,
                                "path" => fields.path = true,
                                "host" => fields.host = true,
                                "query" => fields.query = true,
                                "headers" => fields.headers = true,
                                "cookies" => fields.cookies = true,
                                "ja4h" => fields.ja4h = true,
                                other => {
                                    return Err(format!(
                                        "unknown field request.{other} (known: {})",
                                        REQUEST_FIELDS.join(", ")
                                    ))
                                }
                            }
                            return Ok(());
                        }
                        "bot" => {
                            if s.field == "score" {
                                fields.bot = true;
                                return Ok(());
                            }
                            return Err(format!("unknown field bot.{} (known: score)", s.field));
                        }
                        "client" => {
                            match s.field.as_str() {
                                "ip" => fields.client_ip = true,
                                "rate" => fields.rate = true,
                                other => {
                                    return Err(format!(
                                        "unknown field client.{other} (known: ip, rate)"
                                    ))
                                }
                            }
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            }
            walk(&s.operand, bound, fields, lists)
        }
        Expr::Call(c) => {
            let name = c.func_name.as_str();
            let operator = name.starts_with('_') || name.starts_with('@') || name == "!_";
            if !operator && !FUNCTIONS.contains(&name) {
                return Err(format!(
                    "unknown function {name:?} (known: {})",
                    FUNCTIONS.join(", ")
                ));
            }
            if name == "ip_in_list" {
                let list = match (c.target.is_none(), c.args.as_slice()) {
                    (true, [_, b]) => match &b.expr {
                        Expr::Literal(Val::String(s)) => Some(s.as_str()),
                        _ => None,
                    },
                    _ => None,
                };
                match list {
                    None => {
                        return Err("ip_in_list takes an address and a list name in quotes, \
                                    e.g. ip_in_list(client.ip, \"office\")"
                            .to_string())
                    }
                    Some(l) if !lists.contains(&l) => {
                        return Err(format!(
                            "ip_in_list: no IP list {l:?} (configured: {lists:?}); add it under \
                             [[ip_lists]]"
                        ))
                    }
                    Some(_) => {}
                }
            }
            if name == "matches" {
                if let Some(Expr::Literal(Val::String(pattern))) = c.args.first().map(|a| &a.expr) {
                    regex::RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| {
                            let e = e.to_string();
                            let last = e.lines().last().unwrap_or("").trim().to_string();
                            format!("matches: {pattern:?} is not a valid regex: {last}")
                        })?;
                }
            }
            if let Some(t) = &c.target {
                walk(t, bound, fields, lists)?;
            }
            c.args
                .iter()
                .try_for_each(|a| walk(a, bound, fields, lists))
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, fields, lists)?;
            let before = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            let r = [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .try_for_each(|x| walk(x, bound, fields, lists));
            bound.truncate(before);
            r
        }
        Expr::List(l) => l
            .elements
            .iter()
            .try_for_each(|x| walk(x, bound, fields, lists)),
        Expr::Map(m) => m.entries.iter().try_for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                walk(&me.key, bound, fields, lists)?;
                walk(&me.value, bound, fields, lists)
            }
            EntryExpr::StructField(sf) => walk(&sf.value, bound, fields, lists),
        }),
        Expr::Struct(_) => Err("message literals are not supported".to_string()),
    }
}
