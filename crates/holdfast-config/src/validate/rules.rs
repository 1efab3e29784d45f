//! `[[rules]]`: unique ids, a CEL expression that compiles and uses only the variables and
//! functions the rule engine provides, an action that is built, a mode, routes that exist.

use super::{Errors, UniqueNames};
use crate::config::*;
use crate::spec::*;
use cel_parser::ast::{EntryExpr, Expr, IdedExpr};
use cel_parser::reference::Val;

/// Longest expression accepted (the parser recurses; a rule is a line, not a program).
const MAX_EXPR_BYTES: usize = 4096;
/// Deepest nesting accepted, for the same reason.
const MAX_DEPTH: usize = 64;

/// Compiled size limit of a `matches` pattern (as the rule engine sets it).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The fields of `request`.
const REQUEST_FIELDS: &[&str] = &["method", "path", "host", "query", "headers", "cookies"];
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
];

pub(super) fn rules(specs: &[RuleSpec], routes: &[RouteSpec], errs: &mut Errors) -> Vec<Rule> {
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
            rule(&at, r, routes, errs)
        })
        .collect()
}

fn rule(at: &str, r: &RuleSpec, routes: &[RouteSpec], errs: &mut Errors) -> Rule {
    let fields = match check_rule_expr(&r.expr) {
        Ok(f) => f,
        Err(e) => {
            errs.add(
                format!("{at}.expr"),
                e,
                "write a CEL expression over request.method, request.path, request.host, \
                 request.query, request.headers, request.cookies and client.ip, e.g. \
                 'request.path.startsWith(\"/wp-admin\")'",
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
        other => {
            errs.add(
                format!("{at}.action"),
                format!("unknown action {other:?}"),
                "use \"block\", \"allow\", \"log\" or \"challenge\"",
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
    }
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

/// Compile-check a rule expression: it parses, names only `request` (with its fields) and
/// `client.ip`, and calls only known functions. The answer is the request fields it reads.
pub fn check_rule_expr(source: &str) -> Result<RuleFields, String> {
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
    let expr = cel_parser::Parser::new().parse(source).map_err(|e| {
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
    walk(&expr, &mut bound, &mut fields)?;
    Ok(fields)
}

fn walk(e: &IdedExpr, bound: &mut Vec<String>, fields: &mut RuleFields) -> Result<(), String> {
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
                Ok(())
            }
            "client" => {
                fields.client_ip = true;
                Ok(())
            }
            other => Err(format!(
                "unknown variable {other:?} (known: request, client)"
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
                                other => {
                                    return Err(format!(
                                        "unknown field request.{other} (known: {})",
                                        REQUEST_FIELDS.join(", ")
                                    ))
                                }
                            }
                            return Ok(());
                        }
                        "client" => {
                            if s.field == "ip" {
                                fields.client_ip = true;
                                return Ok(());
                            }
                            return Err(format!("unknown field client.{} (known: ip)", s.field));
                        }
                        _ => {}
                    }
                }
            }
            walk(&s.operand, bound, fields)
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
                walk(t, bound, fields)?;
            }
            c.args.iter().try_for_each(|a| walk(a, bound, fields))
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, fields)?;
            let before = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            let r = [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .try_for_each(|x| walk(x, bound, fields));
            bound.truncate(before);
            r
        }
        Expr::List(l) => l.elements.iter().try_for_each(|x| walk(x, bound, fields)),
        Expr::Map(m) => m.entries.iter().try_for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                walk(&me.key, bound, fields)?;
                walk(&me.value, bound, fields)
            }
            EntryExpr::StructField(sf) => walk(&sf.value, bound, fields),
        }),
        Expr::Struct(_) => Err("message literals are not supported".to_string()),
    }
}
