//! Native predicates: the common rule shapes compiled to a tree evaluated directly on the
//! [`RequestView`], with no value map and no allocation per request (the CEL interpreter
//! builds a map of the request for every evaluation and walks the AST of every rule).
//!
//! Compiled: `startsWith`, `endsWith`, `contains`, `matches` (a regex compiled once), `==`,
//! `!=` and `in [string, ...]` over `request.method`, `.path`, `.host`, `.query`,
//! `client.ip`, `request.headers["name"]` and `request.cookies["name"]`; presence tests
//! (`"name" in request.headers`, `has(request.cookies.name)`); `true`/`false`; combined with
//! `&&`, `||`, `!`. Anything else stays with CEL.
//!
//! The results are those of `cel-interpreter` 0.10 exactly (tests.rs compares both over a
//! table of expressions and requests), including its own semantics: an absent header or
//! cookie indexes to `null`, so `== "x"` is false, `!= "x"` true, `in [..]` false and
//! `contains` false, while `startsWith`, `endsWith` and `matches` on it fail (the rule's
//! error); `&&` and `||` evaluate left to right and an error on the left is the result.

use cel_parser::ast::{CallExpr, Expr, IdedExpr};
use cel_parser::reference::Val;
use holdfast_modules::RequestView;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use super::IpLists;
use crate::ip_list::IpListKind;
use holdfast_artifact::Artifact;

/// A rule's expression failed at run time (CEL: an execution error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalError;

/// A compiled expression.
#[derive(Debug)]
pub enum Pred {
    Lit(bool),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
    Test(Field, Test),
    /// The header or cookie is present.
    Has(Field),
    /// `ip_in_list(field, "name")`: the field, as an address, is in the IP list.
    IpIn(Field, Arc<Artifact<IpListKind>>),
    /// `bot.score` compared with an integer, or `== / != "unknown"`.
    Bot(Cmp, BotRhs),
    /// `client.rate OP n` (an integer on either side, written with `client.rate` first).
    Rate(Cmp, i64),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What `bot.score` is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotRhs {
    Int(i64),
    /// The string "unknown" (only with `==` and `!=`).
    Unknown,
}

/// A string the request has (or, for headers and cookies, may lack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Method,
    Path,
    Host,
    Query,
    ClientIp,
    /// `request.ja4h` (computed once per request, on first use).
    Ja4h,
    /// A lower-case header name, as the request map's keys are.
    Header(http::HeaderName),
    Cookie(Box<str>),
}

/// A test on a field's value.
#[derive(Debug)]
pub enum Test {
    Eq(Box<str>),
    Ne(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Matches(regex::Regex),
    In(Box<[Box<str>]>),
}

impl Test {
    /// On a value that is there.
    fn on(&self, v: &str) -> bool {
        match self {
            Test::Eq(s) => v == &**s,
            Test::Ne(s) => v != &**s,
            Test::StartsWith(s) => v.starts_with(&**s),
            Test::EndsWith(s) => v.ends_with(&**s),
            Test::Contains(s) => v.contains(&**s),
            Test::Matches(re) => re.is_match(v),
            Test::In(list) => list.iter().any(|s| v == &**s),
        }
    }

    /// On `null` (an absent header or cookie), as cel-interpreter answers.
    fn on_null(&self) -> Result<bool, EvalError> {
        match self {
            Test::Eq(_) | Test::In(_) | Test::Contains(_) => Ok(false),
            Test::Ne(_) => Ok(true),
            Test::StartsWith(_) | Test::EndsWith(_) | Test::Matches(_) => Err(EvalError),
        }
    }
}

/// Compile an expression to a native predicate, or `None` when it has a shape left to CEL.
pub fn compile(source: &str, regex_size_limit: usize, lists: &IpLists) -> Option<Pred> {
    // The parser panics on some inputs; those are left to CEL (which the config check
    // already refused).
    let expr = std::panic::catch_unwind(|| cel_parser::Parser::new().parse(source))
        .ok()?
        .ok()?;
    pred(
        &expr,
        &Env {
            limit: regex_size_limit,
            lists,
        },
    )
}

/// What compiling needs besides the expression.
struct Env<'a> {
    limit: usize,
    lists: &'a IpLists,
}

fn pred(e: &IdedExpr, env: &Env<'_>) -> Option<Pred> {
    match &e.expr {
        Expr::Literal(Val::Boolean(b)) => Some(Pred::Lit(*b)),
        Expr::Select(s) if s.test => Some(Pred::Has(map_key(&s.operand, &s.field)?)),
        Expr::Call(c) => call(c, env),
        _ => None,
    }
}

fn call(c: &CallExpr, env: &Env<'_>) -> Option<Pred> {
    use cel_parser::ast::operators as op;
    let name = c.func_name.as_str();
    match (&c.target, c.args.as_slice()) {
        (None, [a, b]) if name == op::LOGICAL_AND => {
            Some(Pred::And(Box::new(pred(a, env)?), Box::new(pred(b, env)?)))
        }
        (None, [a, b]) if name == op::LOGICAL_OR => {
            Some(Pred::Or(Box::new(pred(a, env)?), Box::new(pred(b, env)?)))
        }
        (None, [a]) if name == op::LOGICAL_NOT => Some(Pred::Not(Box::new(pred(a, env)?))),
        (None, [a, b]) if bot_score_select(a) && cmp(name).is_some() => {
            let rhs = match &b.expr {
                Expr::Literal(Val::Int(n)) => BotRhs::Int(*n),
                Expr::Literal(Val::String(s))
                    if s == "unknown" && (name == op::EQUALS || name == op::NOT_EQUALS) =>
                {
                    BotRhs::Unknown
                }
                _ => return None,
            };
            Some(Pred::Bot(cmp(name)?, rhs))
        }
        (None, [a, b]) if bot_score_select(b) && (name == op::EQUALS || name == op::NOT_EQUALS) => {
            let rhs = match &a.expr {
                Expr::Literal(Val::Int(n)) => BotRhs::Int(*n),
                Expr::Literal(Val::String(s)) if s == "unknown" => BotRhs::Unknown,
                _ => return None,
            };
            Some(Pred::Bot(cmp(name)?, rhs))
        }
        (None, [a, b]) if client_rate_select(a) => match &b.expr {
            Expr::Literal(Val::Int(n)) => Some(Pred::Rate(cmp(name)?, *n)),
            _ => None,
        },
        (None, [a, b]) if client_rate_select(b) => match &a.expr {
            // `n OP client.rate` is `client.rate OP' n`.
            Expr::Literal(Val::Int(n)) => Some(Pred::Rate(cmp(name)?.flip(), *n)),
            _ => None,
        },
        (None, [a, b]) if name == op::EQUALS || name == op::NOT_EQUALS => {
            let (f, s) = match (field(a), string(b)) {
                (Some(f), Some(s)) => (f, s),
                _ => (field(b)?, string(a)?),
            };
            let t = if name == op::EQUALS {
                Test::Eq(s.into())
            } else {
                Test::Ne(s.into())
            };
            Some(Pred::Test(f, t))
        }
        (None, [a, b]) if name == op::IN => {
            if let (Some(key), Expr::Select(_)) = (string(a), &b.expr) {
                // "name" in request.headers: a key test on the map.
                return Some(Pred::Has(map_key(b, key)?));
            }
            let f = field(a)?;
            let Expr::List(l) = &b.expr else { return None };
            let list = l
                .elements
                .iter()
                .map(|x| string(x).map(Box::<str>::from))
                .collect::<Option<Vec<_>>>()?;
            Some(Pred::Test(f, Test::In(list.into())))
        }
        (None, [a, b]) if name == "ip_in_list" => {
            let list = env.lists.get(string(b)?)?;
            Some(Pred::IpIn(field(a)?, Arc::clone(list)))
        }
        (Some(t), [arg]) => {
            let f = field(t)?;
            let s = string(arg)?;
            let test = match name {
                "startsWith" => Test::StartsWith(s.into()),
                "endsWith" => Test::EndsWith(s.into()),
                "contains" => Test::Contains(s.into()),
                "matches" => Test::Matches(
                    regex::RegexBuilder::new(s)
                        .size_limit(env.limit)
                        .build()
                        .ok()?,
                ),
                _ => return None,
            };
            Some(Pred::Test(f, test))
        }
        _ => None,
    }
}

/// `bot.score`.
fn bot_score_select(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Select(s) if !s.test && s.field == "score"
        && matches!(&s.operand.expr, Expr::Ident(r) if r == "bot"))
}

/// `client.rate`.
fn client_rate_select(e: &IdedExpr) -> bool {
    matches!(&e.expr, Expr::Select(s) if !s.test && s.field == "rate"
        && matches!(&s.operand.expr, Expr::Ident(r) if r == "client"))
}

impl Cmp {
    /// The operator with its operands swapped (`a < b` is `b > a`).
    fn flip(self) -> Cmp {
        match self {
            Cmp::Eq => Cmp::Eq,
            Cmp::Ne => Cmp::Ne,
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
        }
    }

    fn on(self, n: i64, m: i64) -> bool {
        match self {
            Cmp::Eq => n == m,
            Cmp::Ne => n != m,
            Cmp::Lt => n < m,
            Cmp::Le => n <= m,
            Cmp::Gt => n > m,
            Cmp::Ge => n >= m,
        }
    }
}

fn cmp(name: &str) -> Option<Cmp> {
    use cel_parser::ast::operators as op;
    Some(match name {
        op::EQUALS => Cmp::Eq,
        op::NOT_EQUALS => Cmp::Ne,
        op::LESS => Cmp::Lt,
        op::LESS_EQUALS => Cmp::Le,
        op::GREATER => Cmp::Gt,
        op::GREATER_EQUALS => Cmp::Ge,
        _ => return None,
    })
}

/// `bot.score OP rhs` as cel-interpreter answers: equality across types is false, an order
/// across types (the string "unknown" against a number) is an error.
fn bot_cmp(score: super::BotScore, op: Cmp, rhs: BotRhs) -> Result<bool, EvalError> {
    use super::BotScore;
    match (score, rhs) {
        (BotScore::Score(n), BotRhs::Int(m)) => Ok(op.on(i64::from(n), m)),
        (BotScore::Unknown, BotRhs::Unknown) => match op {
            Cmp::Eq => Ok(true),
            Cmp::Ne => Ok(false),
            _ => Err(EvalError),
        },
        (BotScore::Score(_), BotRhs::Unknown) | (BotScore::Unknown, BotRhs::Int(_)) => match op {
            Cmp::Eq => Ok(false),
            Cmp::Ne => Ok(true),
            _ => Err(EvalError),
        },
    }
}

fn string(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(Val::String(s)) => Some(s),
        _ => None,
    }
}

/// `request.method` and the like, `client.ip`, `request.headers["x"]`, `request.cookies["x"]`.
fn field(e: &IdedExpr) -> Option<Field> {
    match &e.expr {
        Expr::Select(s) if !s.test => {
            let Expr::Ident(root) = &s.operand.expr else {
                return None;
            };
            match (root.as_str(), s.field.as_str()) {
                ("request", "method") => Some(Field::Method),
                ("request", "path") => Some(Field::Path),
                ("request", "host") => Some(Field::Host),
                ("request", "query") => Some(Field::Query),
                ("request", "ja4h") => Some(Field::Ja4h),
                ("client", "ip") => Some(Field::ClientIp),
                _ => None,
            }
        }
        Expr::Call(c) if c.func_name == cel_parser::ast::operators::INDEX && c.target.is_none() => {
            let [m, k] = c.args.as_slice() else {
                return None;
            };
            map_key(m, string(k)?)
        }
        _ => None,
    }
}

/// The entry `key` of `request.headers` or `request.cookies`.
fn map_key(map: &IdedExpr, key: &str) -> Option<Field> {
    let Expr::Select(s) = &map.expr else {
        return None;
    };
    if s.test || !matches!(&s.operand.expr, Expr::Ident(r) if r == "request") {
        return None;
    }
    match s.field.as_str() {
        "headers" => {
            // The map's keys are lower-case header names; any other key is never there,
            // a case left to CEL rather than special-cased here.
            let name = http::HeaderName::from_bytes(key.as_bytes()).ok()?;
            (name.as_str() == key).then_some(Field::Header(name))
        }
        "cookies" => Some(Field::Cookie(key.into())),
        _ => None,
    }
}

/// One request as the predicates read it: the host and client IP text made once, on first use.
pub struct Req<'r, 'v> {
    view: &'r RequestView<'v>,
    /// `client.rate`, counted once at the start of the rules' run (`None`: not counted, as
    /// when no rule read it then; a rule reading it is then that rule's error).
    rate: Option<u32>,
    /// `bot.score`: what the bot module wrote in the request's `ModuleCtx`.
    bot: super::BotScore,
    host: OnceCell<Cow<'v, str>>,
    ip: OnceCell<IpText>,
    ja4h: OnceCell<String>,
}

impl<'r, 'v> Req<'r, 'v> {
    pub fn new(view: &'r RequestView<'v>) -> Self {
        Req {
            view,
            rate: None,
            bot: super::BotScore::Unknown,
            host: OnceCell::new(),
            ip: OnceCell::new(),
            ja4h: OnceCell::new(),
        }
    }

    /// With `client.rate` counted as `rate`.
    pub fn with_rate(mut self, rate: Option<u32>) -> Self {
        self.rate = rate;
        self
    }

    /// With `bot.score` as `bot`.
    pub fn with_bot(mut self, bot: super::BotScore) -> Self {
        self.bot = bot;
        self
    }

    /// `bot.score`.
    pub fn bot(&self) -> super::BotScore {
        self.bot
    }

    /// `client.rate`, if counted.
    pub fn rate(&self) -> Option<u32> {
        self.rate
    }

    /// The field's value; `None` for an absent header or cookie.
    fn value(&self, f: &Field) -> Option<Cow<'_, str>> {
        let v = self.view;
        Some(match f {
            Field::Method => Cow::Borrowed(v.method.as_str()),
            Field::Path => Cow::Borrowed(v.path),
            Field::Query => Cow::Borrowed(v.query.unwrap_or("")),
            Field::Host => Cow::Borrowed(self.host.get_or_init(|| host(v)).as_ref()),
            Field::ClientIp => Cow::Borrowed(self.ip.get_or_init(|| IpText::of(v)).as_str()),
            Field::Ja4h => Cow::Borrowed(self.ja4h.get_or_init(|| holdfast_bot::ja4h(v)).as_str()),
            Field::Header(name) => String::from_utf8_lossy(v.headers.get(name)?.as_bytes()),
            Field::Cookie(name) => Cow::Borrowed(cookie(v, name)?),
        })
    }
}

impl Pred {
    /// The expression's value on one request, as CEL would give it.
    pub fn eval(&self, req: &Req<'_, '_>) -> Result<bool, EvalError> {
        match self {
            Pred::Lit(b) => Ok(*b),
            Pred::And(a, b) => Ok(a.eval(req)? && b.eval(req)?),
            Pred::Or(a, b) => Ok(a.eval(req)? || b.eval(req)?),
            Pred::Not(a) => Ok(!a.eval(req)?),
            Pred::Has(f) => Ok(req.value(f).is_some()),
            Pred::Bot(op, rhs) => bot_cmp(req.bot, *op, *rhs),
            Pred::Rate(op, n) => Ok(op.on(i64::from(req.rate.ok_or(EvalError)?), *n)),
            Pred::IpIn(Field::ClientIp, list) => in_list(list, Some(req.view.client_ip)),
            Pred::IpIn(f, list) => match req.value(f) {
                // CEL cannot call the function on null: an error.
                None => Err(EvalError),
                Some(v) => in_list(list, v.parse().ok()),
            },
            Pred::Test(f, t) => match req.value(f) {
                Some(v) => Ok(t.on(&v)),
                None => t.on_null(),
            },
        }
    }
}

/// Whether `ip` is in the list's active value (`None`, not an address: no); an error while
/// the list has no value (never loaded and no last-known-good).
pub fn in_list(list: &Artifact<IpListKind>, ip: Option<IpAddr>) -> Result<bool, EvalError> {
    let current = list.current();
    let active = current.as_ref().ok_or(EvalError)?;
    Ok(ip.is_some_and(|ip| active.value.contains(ip)))
}

/// The first value of cookie `name` over every `Cookie` header (as the CEL map keeps it).
fn cookie<'v>(req: &RequestView<'v>, name: &str) -> Option<&'v str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
}

/// The `Host` header without its port, lower-cased (borrowed when it already is).
pub fn host<'v>(req: &RequestView<'v>) -> Cow<'v, str> {
    let Some(h) = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return Cow::Borrowed("");
    };
    let h = if h.starts_with('[') {
        h.split_once(']')
            .map_or(h, |(a, _)| a.trim_start_matches('['))
    } else {
        h.rsplit_once(':').map_or(h, |(a, _)| a)
    };
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// An IP address as text, on the stack (the longest, an IPv4-mapped IPv6, is 45 bytes).
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn of(req: &RequestView<'_>) -> Self {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        // Cannot overflow: 48 bytes hold every address's text.
        let _ = write!(t, "{}", req.client_ip);
        t
    }
    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
