//! Rule compilation and evaluation, differential: the config check, then the rule engine as
//! the data path builds it. Whatever the check accepts must compile; where the expression
//! has a native shape, the native predicate and `cel-interpreter` must give the same answer
//! (including "failed") on every request; and CEL with only the fields the check said the
//! expression reads must answer as CEL with every field (the check misses none). Inputs are
//! expression trees of the native shapes (and some that are not) over arbitrary literals,
//! and arbitrary requests; a leading byte of 0xFF makes the rest a raw expression instead.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use holdfast_modules::{BotScore, RequestView};
use holdfast_shield::rules::fuzzing::{evaluate, Outcome};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

#[path = "common.rs"]
mod common;

#[derive(Debug, Arbitrary)]
enum Field {
    Method,
    Path,
    Host,
    Query,
    ClientIp,
    Ja4h,
    Header(HeaderName),
    Cookie(CookieName),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum HeaderName {
    UserAgent,
    XApiKey,
    Cookie,
    Host,
    Absent,
    UpperCase,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum CookieName {
    Sid,
    Lang,
    Absent,
    Empty,
}

#[derive(Debug, Arbitrary)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Arbitrary)]
enum Expr {
    Lit(bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Eq(Field, String),
    NeFlipped(String, Field),
    StartsWith(Field, String),
    EndsWith(Field, String),
    Contains(Field, String),
    Matches(Field, Regex),
    In(Field, Vec<String>),
    HasHeader(HeaderName),
    HeaderIn(HeaderName),
    HasCookie(CookieName),
    CookieIn(CookieName),
    IpInList(Field),
    Bot(Cmp, i64),
    BotUnknown(bool),
    Rate(Cmp, i64),
    RateFlipped(i64, Cmp),
    /// Shapes left to CEL.
    Size(Field, i64),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Regex {
    Literal(String),
    Prefix(String),
    Class,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Req {
    method: u8,
    path: String,
    query: Option<String>,
    headers: Vec<(HeaderName, Vec<u8>)>,
    cookies: Vec<(CookieName, String)>,
    host: Option<String>,
    ip: [u8; 16],
    v4: bool,
    rate: Option<u32>,
    bot: Option<u8>,
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn header(h: HeaderName) -> &'static str {
    match h {
        HeaderName::UserAgent => "user-agent",
        HeaderName::XApiKey => "x-api-key",
        HeaderName::Cookie => "cookie",
        HeaderName::Host => "host",
        HeaderName::Absent => "x-absent",
        HeaderName::UpperCase => "User-Agent",
    }
}

fn cookie(c: CookieName) -> &'static str {
    match c {
        CookieName::Sid => "sid",
        CookieName::Lang => "lang",
        CookieName::Absent => "absent",
        CookieName::Empty => "",
    }
}

fn field(f: &Field) -> String {
    match f {
        Field::Method => "request.method".into(),
        Field::Path => "request.path".into(),
        Field::Host => "request.host".into(),
        Field::Query => "request.query".into(),
        Field::ClientIp => "client.ip".into(),
        Field::Ja4h => "request.ja4h".into(),
        Field::Header(h) => format!("request.headers[{}]", q(header(*h))),
        Field::Cookie(c) => format!("request.cookies[{}]", q(cookie(*c))),
    }
}

fn cmp(c: &Cmp) -> &'static str {
    match c {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    }
}

fn render(e: &Expr, depth: usize) -> String {
    if depth > 6 {
        return "true".into();
    }
    let r = |x: &Expr| render(x, depth + 1);
    match e {
        Expr::Lit(b) => b.to_string(),
        Expr::And(a, b) => format!("({} && {})", r(a), r(b)),
        Expr::Or(a, b) => format!("({} || {})", r(a), r(b)),
        Expr::Not(a) => format!("!({})", r(a)),
        Expr::Eq(f, s) => format!("{} == {}", field(f), q(s)),
        Expr::NeFlipped(s, f) => format!("{} != {}", q(s), field(f)),
        Expr::StartsWith(f, s) => format!("{}.startsWith({})", field(f), q(s)),
        Expr::EndsWith(f, s) => format!("{}.endsWith({})", field(f), q(s)),
        Expr::Contains(f, s) => format!("{}.contains({})", field(f), q(s)),
        Expr::Matches(f, re) => {
            let pattern = match re {
                Regex::Literal(s) => regex_escape(s),
                Regex::Prefix(s) => format!("^{}", regex_escape(s)),
                Regex::Class => "^[a-z/]+[0-9]*$".into(),
                Regex::Raw(s) => s.clone(),
            };
            format!("{}.matches({})", field(f), q(&pattern))
        }
        Expr::In(f, list) => {
            let items: Vec<String> = list.iter().take(4).map(|s| q(s)).collect();
            format!("{} in [{}]", field(f), items.join(", "))
        }
        Expr::HasHeader(h) => format!("has(request.headers.{})", header(*h).replace('-', "_")),
        Expr::HeaderIn(h) => format!("{} in request.headers", q(header(*h))),
        Expr::HasCookie(c) => format!("has(request.cookies.{})", cookie(*c)),
        Expr::CookieIn(c) => format!("{} in request.cookies", q(cookie(*c))),
        Expr::IpInList(f) => format!("ip_in_list({}, \"office\")", field(f)),
        Expr::Bot(c, n) => format!("bot.score {} {n}", cmp(c)),
        Expr::BotUnknown(eq) => format!("bot.score {} \"unknown\"", if *eq { "==" } else { "!=" }),
        Expr::Rate(c, n) => format!("client.rate {} {n}", cmp(c)),
        Expr::RateFlipped(n, c) => format!("{n} {} client.rate", cmp(c)),
        Expr::Size(f, n) => format!("size({}) > {n}", field(f)),
        Expr::Raw(s) => s.clone(),
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~ ".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    common::quiet_expected_panics();
    let mut u = Unstructured::new(data);
    let raw = data.first() == Some(&0xFF);
    let expr = if raw {
        let _ = u.bytes(1);
        let Ok(s) = <&str>::arbitrary(&mut u) else {
            return;
        };
        s.to_string()
    } else {
        let Ok(e) = Expr::arbitrary(&mut u) else {
            return;
        };
        render(&e, 0)
    };
    let Ok(req) = Req::arbitrary(&mut u) else {
        return;
    };

    let methods = [
        "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PROPFIND", "get",
    ];
    let method =
        http::Method::from_bytes(methods[usize::from(req.method) % methods.len()].as_bytes())
            .expect("method");
    let mut headers = http::HeaderMap::new();
    for (name, value) in req.headers.iter().take(8) {
        let name = http::HeaderName::from_bytes(header(*name).as_bytes()).expect("name");
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    if !req.cookies.is_empty() {
        let text: Vec<String> = req
            .cookies
            .iter()
            .take(4)
            .map(|(c, v)| format!("{}={v}", cookie(*c)))
            .collect();
        if let Ok(v) = http::HeaderValue::from_str(&text.join("; ")) {
            headers.append(http::header::COOKIE, v);
        }
    }
    if let Some(h) = &req.host {
        if let Ok(v) = http::HeaderValue::from_str(h) {
            headers.insert(http::header::HOST, v);
        }
    }
    let client_ip = if req.v4 {
        IpAddr::from([req.ip[0], req.ip[1], req.ip[2], req.ip[3]])
    } else {
        IpAddr::from(req.ip)
    };
    let view = RequestView {
        method: &method,
        version: http::Version::HTTP_11,
        headers: &headers,
        path: &req.path,
        query: req.query.as_deref(),
        client_ip,
        tls: false,
        route: "main",
    };
    let bot = req.bot.map_or(BotScore::Unknown, BotScore::Score);
    match evaluate(&expr, &view, req.rate, bot) {
        Outcome::Refused(why) => assert!(!why.is_empty()),
        Outcome::NotCompiled(e) => {
            panic!("the check accepted {expr:?} but the engine refused it: {e}")
        }
        Outcome::Answered(a) => {
            if let Some(native) = a.native {
                assert_eq!(native, a.cel, "native vs CEL on {expr:?} with {view:?}");
            }
            assert_eq!(
                a.cel, a.cel_all_fields,
                "fields the check listed for {expr:?}"
            );
        }
    }
});
