//! `[status_page]`: the public status page's listener, export targets and components, each
//! component naming routes, pools and steered DNS names that exist.

use super::{listen_addr, overlaps, Errors};
use crate::config::{Component, Dns, StatusPage};
use crate::spec::{Spec, StatusPageSpec};
use std::net::SocketAddr;
use std::path::Path;

pub(super) fn status_page(
    spec: Option<&StatusPageSpec>,
    all: &Spec,
    dns: Option<&Dns>,
    taken: &[(String, SocketAddr)],
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<StatusPage> {
    let spec = spec?;
    let listen = listen_addr("status_page.listen", &spec.listen, errs);
    if let Some(addr) = listen {
        if let Some((path, _)) = taken.iter().find(|(_, b)| overlaps(&addr, b)) {
            errs.add(
                "status_page.listen",
                format!("{addr} is also {path}"),
                "give the status page an address of its own",
            );
        }
    }
    let export_dir = spec.export_dir.as_deref().and_then(|d| {
        if d.is_empty() {
            errs.add(
                "status_page.export_dir",
                "empty path",
                "name a folder Holdfast may write, e.g. \"/var/lib/holdfast/status\", or leave it out",
            );
            return None;
        }
        Some(base_dir.join(d))
    });
    let export_put = spec.export_put.as_deref().and_then(|u| {
        let scheme = u.starts_with("http://") || u.starts_with("https://");
        if scheme && u.ends_with('/') && u.parse::<http::Uri>().is_ok() {
            return Some(u.to_string());
        }
        errs.add(
            "status_page.export_put",
            format!("{u:?} is not an http:// or https:// URL ending in /"),
            "write e.g. \"https://storage.example.net/status/\" (index.html and status.json are PUT under it)",
        );
        None
    });
    let export_ca_file = spec.export_ca_file.as_deref().and_then(|f| {
        let https = export_put.as_deref().is_some_and(|u| u.starts_with("https://"));
        if f.is_empty() || !https {
            errs.add(
                "status_page.export_ca_file",
                if f.is_empty() { "empty path" } else { "set, but export_put is not an https:// URL" },
                "name a PEM file of the CAs the https:// export_put is checked against, or leave it out (the system's CAs)",
            );
            return None;
        }
        Some(base_dir.join(f))
    });
    let components = components(spec, all, dns, errs);
    Some(StatusPage {
        listen: listen?,
        title: spec.title.clone().unwrap_or_else(|| "Status".to_string()),
        export_dir,
        export_put,
        export_ca_file,
        components,
    })
}

fn components(
    spec: &StatusPageSpec,
    all: &Spec,
    dns: Option<&Dns>,
    errs: &mut Errors,
) -> Vec<Component> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, c) in spec.components.iter().enumerate() {
        let at = format!("status_page.components[{i}]");
        if c.name.trim().is_empty() {
            errs.add(
                format!("{at}.name"),
                "empty name",
                "name the component as your users know it, e.g. \"Website\"",
            );
        } else if !seen.insert(c.name.as_str()) {
            errs.add(
                format!("{at}.name"),
                format!("{:?} is named twice", c.name),
                "give each component its own name",
            );
        }
        if c.routes.is_empty() && c.pools.is_empty() && c.dns.is_empty() {
            errs.add(
                at.clone(),
                "maps to nothing",
                "name what makes it up: routes = [...], pools = [...] and/or dns = [...]",
            );
        }
        for (j, r) in c.routes.iter().enumerate() {
            if !all.routes.iter().any(|x| x.name == *r) {
                errs.add(
                    format!("{at}.routes[{j}]"),
                    format!("unknown route {r:?}"),
                    "name a [[routes]] entry",
                );
            }
        }
        for (j, p) in c.pools.iter().enumerate() {
            if !all.pools.iter().any(|x| x.name == *p) {
                errs.add(
                    format!("{at}.pools[{j}]"),
                    format!("unknown pool {p:?}"),
                    "name a [[pools]] entry",
                );
            }
        }
        let mut names = Vec::new();
        for (j, n) in c.dns.iter().enumerate() {
            let mut name = n.to_ascii_lowercase();
            if !name.ends_with('.') {
                name.push('.');
            }
            let steered = dns.is_some_and(|d| d.steered.iter().any(|s| s.name == name));
            if !steered {
                errs.add(
                    format!("{at}.dns[{j}]"),
                    format!("{n:?} is not a steered name"),
                    "name a [[dns.steered]] name",
                );
            }
            names.push(name);
        }
        out.push(Component {
            name: c.name.clone(),
            routes: c.routes.clone(),
            pools: c.pools.clone(),
            dns: names,
        });
    }
    out
}
