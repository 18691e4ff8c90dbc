//! `docs/plugin-calls.md` against the plugin it describes: every backend path in the
//! installed netbox-proxbox's Python source has a row, and every row marked `served` is
//! a route of this host.
//!
//! The plugin source is `PROXBOX_PLUGIN_SOURCE`, else the `netbox_proxbox` package in the
//! virtualenv of `tests/netbox/netbox.sh`. Without it the scan says it is skipped, unless
//! `PROXBOX_REQUIRE_NETBOX=1`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proxbox_host::server::openapi::ROUTES;

/// Top-level segments of the backend's URL space (after a `{…url…}` base URL).
const BACKEND_TOP: [&str; 15] = [
    "proxmox",
    "sync",
    "extras",
    "netbox",
    "auth",
    "health",
    "admin",
    "cloud",
    "intent",
    "ssh",
    "pbs",
    "version",
    "openapi.json",
    "full-update",
    "ws",
];

/// Files of the plugin that hold NetBox's own URL patterns, not backend calls.
const NOT_BACKEND_FILES: [&str; 2] = ["urls.py", "views/sitemap.py"];

fn table() -> String {
    std::fs::read_to_string(common::repo_root().join("docs/plugin-calls.md"))
        .expect("docs/plugin-calls.md")
}

/// The rows of the table: normalised path -> (status, our route).
fn rows(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(path) = cells
            .get(1)
            .and_then(|c| backticked(c))
            .or_else(|| (cells.len() == 1).then(|| backticked(cells[0])).flatten())
        else {
            continue;
        };
        let status = cells.get(4).copied().unwrap_or("not a request").to_string();
        let route = cells.get(3).copied().unwrap_or_default().to_string();
        out.insert(normalise(&path), (status, route));
    }
    out
}

fn backticked(cell: &str) -> Option<String> {
    let start = cell.find('`')? + 1;
    let end = start + cell[start..].find('`')?;
    Some(cell[start..end].to_string())
}

/// `{x}` -> `{}`, optional `[…]` parts and a trailing `/` removed.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth > 0 => {}
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

/// Whether `key` (from the source) matches a table path: segment by segment, `{}` on
/// either side matching any segment.
fn matches(key: &str, row: &str) -> bool {
    let a: Vec<&str> = key.split('/').collect();
    let b: Vec<&str> = row.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || *x == "{}" || *y == "{}")
}

/// The string literals of a Python file with their line, adjacent literals joined (as
/// Python does); comments skipped.
fn literals(text: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<(String, usize)> = Vec::new();
    let (mut i, mut line) = (0, 1);
    let mut joinable = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => line += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' => {
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                let quote = if triple { 3 } else { 1 };
                let start_line = line;
                let mut j = i + quote;
                let mut body = String::new();
                while j < chars.len()
                    && !(chars[j] == c && (!triple || chars[j..].starts_with(&[c, c, c])))
                {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        body.push(chars[j + 1]);
                        j += 2;
                        continue;
                    }
                    if chars[j] == '\n' {
                        line += 1;
                    }
                    body.push(chars[j]);
                    j += 1;
                }
                match out.last_mut() {
                    Some(last) if joinable => last.0.push_str(&body),
                    _ => out.push((body, start_line)),
                }
                i = j + quote;
                joinable = true;
                continue;
            }
            c if c.is_whitespace() => {}
            'r' | 'R' | 'b' | 'B' | 'f' | 'F' | 'u' | 'U'
                if i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') =>
            {
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                let after = chars.get(i + 2).copied().unwrap_or(' ');
                let prefix = next == '"'
                    || next == '\''
                    || ("rRbBfF".contains(next) && (after == '"' || after == '\''));
                if !prefix {
                    joinable = false;
                }
            }
            _ => joinable = false,
        }
        i += 1;
    }
    out
}

/// The backend path a literal names, normalised, if it names one: a `{…url…}` placeholder or `scheme://host` followed by a path in the backend's URL space, or a
/// bare relative path of a sync stage or proxy call.
fn backend_path(literal: &str) -> Option<String> {
    let mut s = literal;
    if let Some(at) = s.find("://")
        && !s[..at].contains('/')
    {
        let rest = &s[at + 3..];
        s = rest.find('/').map_or("/", |p| &rest[p..]);
    }
    let mut based = false;
    if s.starts_with('{')
        && let Some(end) = s.find('}')
        && s[..end].contains("url")
    {
        s = &s[end + 1..];
        based = true;
    }
    let s = s.split('?').next().unwrap_or(s);
    let body = match s.strip_prefix('/') {
        Some(body) => body,
        None if !based => s,
        None => return None,
    };
    let first = body.split('/').next().unwrap_or_default();
    let stage = (body.starts_with("dcim/devices/")
        || body.starts_with("virtualization/virtual-machines/"))
        && body.split('/').any(|seg| seg == "create");
    let wanted = if based {
        body.is_empty() || BACKEND_TOP.contains(&first) || stage
    } else {
        stage
            || [
                "proxmox/",
                "sync/individual/",
                "extras/",
                "cloud/",
                "intent/",
            ]
            .iter()
            .any(|p| body.starts_with(p))
    };
    if !wanted {
        return None;
    }
    let mut key = normalise(&format!("/{body}"));
    if key.ends_with("{}") && !key.ends_with("/{}") {
        key.truncate(key.len() - 2);
    }
    Some(key.trim_end_matches('/').to_string()).map(|k| if k.is_empty() { "/".into() } else { k })
}

fn plugin_source() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PROXBOX_PLUGIN_SOURCE") {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("PROXBOX_NETBOX_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/proxbox-host/netbox")
        });
    let lib = home.join("venv/lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/netbox_proxbox"))
        .find(|p| p.is_dir())
}

fn python_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("plugin source")
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if path.is_dir() {
            if !["tests", "migrations", "__pycache__"]
                .contains(&rel.rsplit('/').next().unwrap_or(""))
            {
                python_files(root, &path, out);
            }
        } else if rel.ends_with(".py") && !NOT_BACKEND_FILES.contains(&rel.as_str()) {
            out.push(path);
        }
    }
}

#[test]
fn every_backend_path_in_the_plugin_source_has_a_row() {
    let Some(root) = plugin_source() else {
        assert!(
            std::env::var("PROXBOX_REQUIRE_NETBOX").as_deref() != Ok("1"),
            "PROXBOX_REQUIRE_NETBOX=1 but the plugin source was not found"
        );
        eprintln!("SKIPPED: no netbox_proxbox source (set PROXBOX_PLUGIN_SOURCE)");
        return;
    };
    let rows = rows(&table());
    let mut files = Vec::new();
    python_files(&root, &root, &mut files);
    assert!(
        files.len() > 50,
        "{} Python files under {}",
        files.len(),
        root.display()
    );
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source");
        for (literal, line) in literals(&text) {
            if let Some(key) = backend_path(&literal) {
                found.entry(key).or_insert_with(|| {
                    format!("{}:{line}", file.strip_prefix(&root).unwrap().display())
                });
            }
        }
    }
    for stage in [
        "/dcim/devices/create",
        "/sync/individual/vm",
        "/proxmox/cluster/status",
    ] {
        assert!(
            found.contains_key(stage),
            "the scan no longer finds {stage}: {found:#?}"
        );
    }
    let missing: Vec<String> = found
        .iter()
        .filter(|(key, _)| {
            let stream = format!("{key}/stream");
            !rows
                .keys()
                .any(|row| matches(key, row) || matches(&stream, row))
        })
        .map(|(key, at)| format!("{key} ({at})"))
        .collect();
    assert!(
        missing.is_empty(),
        "backend paths of the plugin missing from docs/plugin-calls.md: {missing:#?}"
    );
}

#[test]
fn every_served_row_is_a_route_of_this_host() {
    let rows = rows(&table());
    let served: Vec<(&String, &String)> = rows
        .iter()
        .filter(|(_, (status, _))| status == "served")
        .map(|(path, (_, route))| (path, route))
        .collect();
    assert!(served.len() > 30, "{} served rows", served.len());
    for (path, route) in served {
        let route = backticked(route).unwrap_or_else(|| panic!("{path}: no route named"));
        let ours = normalise(&route);
        let known = ours == "/ws" || ROUTES.iter().any(|r| normalise(r.path) == ours);
        assert!(
            known,
            "{path} is marked served by {route}, which this host does not serve"
        );
        assert!(
            matches(path, &ours),
            "{path} is served by an unrelated route {route}"
        );
    }
    for missing in rows.iter().filter(|(_, (s, _))| s == "missing") {
        assert!(
            !ROUTES.iter().any(|r| normalise(r.path) == *missing.0),
            "{} is served now: mark it served",
            missing.0
        );
    }
}

#[test]
fn the_scanner_reads_python_literals_like_python() {
    let source = "x = f\"{ctx.http_url.rstrip('/')}/proxmox/api2/nodes/\"\n    f\"{quote(n, safe='')}/time\"  # \"/not/this\"\ny = 'sync/individual/vm'\nz = \"/plugins/proxbox/x\"\nw = f\"{base_url}/a/b\"";
    let keys: Vec<Option<String>> = literals(source)
        .iter()
        .map(|(l, _)| backend_path(l))
        .collect();
    assert_eq!(
        keys,
        [
            Some("/proxmox/api2/nodes/{}/time".to_string()),
            Some("/sync/individual/vm".to_string()),
            None,
            None,
        ]
    );
    assert!(matches(
        "/proxmox/{}/{}/{}/config",
        "/proxmox/{}/{}/{}/config"
    ));
    assert!(matches(
        "/proxmox/firewall/datacenter/{}",
        "/proxmox/firewall/datacenter/ipsets"
    ));
    assert!(!matches("/proxmox/nodes", "/proxmox/nodes/{}/time"));
    assert_eq!(
        normalise("/proxmox/firewall/datacenter/rules[/{pos}]"),
        "/proxmox/firewall/datacenter/rules"
    );
}
