//! Natural keys to NetBox ids: mappers name related objects by slug, model or name; the
//! host looks them up in bulk (one list read per kind and batch) and creates only what
//! the sync owns (tags, default sites).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::netbox::prerequisites::OWNERSHIP_TAG_SLUG;
use crate::netbox::{NetBoxClient, NetBoxError};

const CHUNK: usize = 50;

/// NetBox's slugify: lower case, runs of anything but `[a-z0-9]` become `-`, trimmed;
/// empty becomes `fallback`.
pub fn slugify(text: &str, fallback: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        fallback.to_string()
    } else {
        out
    }
}

/// Ids of the objects at `path` whose `field` is one of `values` (exact match), by value.
pub async fn ids_by(
    client: &NetBoxClient,
    path: &str,
    field: &str,
    values: &BTreeSet<String>,
) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let mut out = BTreeMap::new();
    let values: Vec<&String> = values.iter().collect();
    for chunk in values.chunks(CHUNK) {
        let mut query: Vec<(&str, String)> = chunk.iter().map(|v| (field, (*v).clone())).collect();
        query.push(("fields", format!("id,{field}")));
        for object in client.list(path, &query).await? {
            if let (Some(key), Some(id)) = (
                object.get(field).and_then(Value::as_str),
                object.get("id").and_then(Value::as_u64),
            ) {
                out.insert(key.to_string(), id);
            }
        }
    }
    Ok(out)
}

/// Tag ids by tag name, creating missing tags (slug from the name) unless `dry_run`.
/// `Proxbox` maps to the ownership tag whatever its current name.
pub async fn ensure_tags(
    client: &NetBoxClient,
    names: &BTreeSet<String>,
    dry_run: bool,
) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let slugs: BTreeMap<String, String> = names
        .iter()
        .map(|n| {
            let slug = if n.eq_ignore_ascii_case("proxbox") {
                OWNERSHIP_TAG_SLUG.to_string()
            } else {
                slugify(n, "tag")
            };
            (n.clone(), slug)
        })
        .collect();
    let wanted: BTreeSet<String> = slugs.values().cloned().collect();
    let mut by_slug = ids_by(client, "extras/tags/", "slug", &wanted).await?;
    let missing: Vec<(&String, &String)> = slugs
        .iter()
        .filter(|(_, slug)| !by_slug.contains_key(*slug))
        .collect();
    if !missing.is_empty() && !dry_run {
        let mut seen = BTreeSet::new();
        let payloads: Vec<Value> = missing
            .iter()
            .filter(|(_, slug)| seen.insert((*slug).clone()))
            .map(|(name, slug)| json!({ "name": name, "slug": slug, "color": tag_color(slug) }))
            .collect();
        for result in client.bulk_create("extras/tags/", payloads).await {
            if let Err(e) = result {
                tracing::warn!("cannot create a tag: {e}");
            }
        }
        by_slug = ids_by(client, "extras/tags/", "slug", &wanted).await?;
    }
    Ok(slugs
        .into_iter()
        .filter_map(|(name, slug)| by_slug.get(&slug).map(|id| (name, *id)))
        .collect())
}

/// A stable colour for a tag from its slug (Proxmox's own colours are not read).
fn tag_color(slug: &str) -> String {
    let mut hash: u32 = 2_166_136_261;
    for b in slug.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    format!("{:06x}", hash & 0x00ff_ffff)
}

/// The default site of a cluster without one: `Proxmox Default Site - <cluster>`.
pub fn default_site(cluster: &str) -> (String, String) {
    (
        format!("proxmox-default-site-{}", slugify(cluster, "cluster")),
        format!("Proxmox Default Site - {cluster}"),
    )
}

/// Site ids by slug, creating the given default sites when missing (unless `dry_run`).
pub async fn ensure_sites(
    client: &NetBoxClient,
    slugs: &BTreeSet<String>,
    defaults: &BTreeMap<String, String>,
    owner_tag: Option<u64>,
    dry_run: bool,
) -> Result<BTreeMap<String, u64>, NetBoxError> {
    let mut ids = ids_by(client, "dcim/sites/", "slug", slugs).await?;
    let missing: Vec<Value> = defaults
        .iter()
        .filter(|(slug, _)| slugs.contains(*slug) && !ids.contains_key(*slug))
        .map(|(slug, name)| {
            json!({ "name": name, "slug": slug, "status": "active",
                    "tags": owner_tag.into_iter().collect::<Vec<_>>() })
        })
        .collect();
    if !missing.is_empty() && !dry_run {
        for result in client.bulk_create("dcim/sites/", missing).await {
            if let Err(e) = result {
                tracing::warn!("cannot create a default site: {e}");
            }
        }
        ids = ids_by(client, "dcim/sites/", "slug", slugs).await?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_like_netbox() {
        assert_eq!(slugify("PVE Prod #1", "x"), "pve-prod-1");
        assert_eq!(slugify("--", "cluster"), "cluster");
        assert_eq!(slugify("a_b", "x"), "a_b");
        assert_eq!(default_site("Lab 2").0, "proxmox-default-site-lab-2");
    }

    #[test]
    fn tag_colours_are_stable_hex() {
        assert_eq!(tag_color("web"), tag_color("web"));
        assert_eq!(tag_color("web").len(), 6);
        assert_ne!(tag_color("web"), tag_color("db"));
    }
}
