//! The inventory as a table, as SPDX 2.3 JSON and as CycloneDX 1.5 JSON.
//!
//! The documents are deterministic: packages come sorted, identifiers derive from the image
//! and the packages, and the only date is the image's `created` time (1970-01-01 when the
//! config has none), so two runs on one image write the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::license::{id_tail, license_ref, spdx_id};
use super::{Inventory, Package, purl_encode};

/// The tool that writes the documents: `rbuild-VERSION`.
pub fn tool() -> String {
    format!("rbuild-{}", env!("CARGO_PKG_VERSION"))
}

/// The image's `created` time as `YYYY-MM-DDThh:mm:ssZ` (UTC, whole seconds).
fn created(inventory: &Inventory) -> String {
    inventory
        .image
        .created
        .as_deref()
        .and_then(|c| c.parse::<jiff::Timestamp>().ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The instruction and Dockerfile line of a package's layer, for display.
fn origin(inventory: &Inventory, package: &Package) -> String {
    let Some(layer) = inventory.layer(package) else {
        return format!("layer {}", package.layer);
    };
    let mut out = format!("layer {}", layer.index);
    if let Some(line) = layer.dockerfile_line {
        let _ = write!(out, ", Dockerfile:{line}");
    }
    if let Some(instruction) = &layer.instruction {
        let mut shown: String = instruction.chars().take(60).collect();
        if shown.len() < instruction.len() {
            shown.push_str("...");
        }
        let _ = write!(out, ": {shown}");
    }
    out
}

/// The licences of a package for the table, cut at 40 characters.
fn licenses_cell(package: &Package) -> String {
    let all = package.licenses.join(", ");
    if all.chars().count() <= 40 {
        return all;
    }
    let head: String = all.chars().take(37).collect();
    format!("{head}...")
}

/// A readable table: one package a line, then the unowned files.
pub fn table(inventory: &Inventory) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Image: {}", inventory.image.name);
    if let Some(distro) = &inventory.distro {
        let _ = writeln!(
            out,
            "Distribution: {}",
            distro.pretty_name.as_deref().unwrap_or(&distro.id)
        );
    }
    let _ = writeln!(
        out,
        "Packages: {}; files: {}, {} owned by no package\n",
        inventory.packages.len(),
        inventory.files,
        inventory.unowned_files
    );
    let width = |f: &dyn Fn(&Package) -> usize, min: usize| {
        inventory
            .packages
            .iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .clamp(min, 40)
    };
    let name_w = width(&|p| p.name.chars().count(), 4);
    let version_w = width(&|p| p.version.chars().count(), 7);
    let license_w = width(&|p| licenses_cell(p).chars().count(), 7);
    let _ = writeln!(
        out,
        "{:<6} {:<name_w$} {:<version_w$} {:<license_w$} {:>5}  ADDED BY",
        "TYPE", "NAME", "VERSION", "LICENSE", "FILES"
    );
    for p in &inventory.packages {
        let _ = writeln!(
            out,
            "{:<6} {:<name_w$} {:<version_w$} {:<license_w$} {:>5}  {}",
            p.ecosystem.name(),
            p.name,
            p.version,
            licenses_cell(p),
            p.files.len(),
            origin(inventory, p)
        );
    }
    if inventory.unowned_files > 0 {
        let _ = writeln!(
            out,
            "\nFiles owned by no package ({}):",
            inventory.unowned_files
        );
        for path in &inventory.unowned {
            let _ = writeln!(out, "  {path}");
        }
        let more = inventory.unowned_files - inventory.unowned.len() as u64;
        if more > 0 {
            let _ = writeln!(out, "  ... and {more} more");
        }
    }
    out
}

/// The SPDX element id of package `index` (letters, digits, `.` and `-` only).
fn spdx_ref(index: usize, package: &Package) -> String {
    format!(
        "SPDXRef-Package-{}-{index}-{}",
        package.ecosystem.name(),
        id_tail(&package.name)
    )
}

/// The image as a package URL: `pkg:oci/NAME@DIGEST`.
fn image_purl(inventory: &Inventory) -> Option<String> {
    let id = inventory.image.id.as_deref()?;
    let name = inventory
        .image
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&inventory.image.name);
    let name = name.split([':', '@']).next().unwrap_or(name).to_lowercase();
    Some(format!(
        "pkg:oci/{}@{}",
        purl_encode(&name, false),
        purl_encode(id, false)
    ))
}

/// SPDX 2.3 JSON: a package for the image that CONTAINS a package per component, the
/// document DESCRIBES the image. Licences without an SPDX identifier are `LicenseRef-`s
/// declared in `hasExtractedLicensingInfos`.
pub fn spdx_json(inventory: &Inventory) -> String {
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let mut packages = Vec::new();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    let mut image = json!({
        "SPDXID": "SPDXRef-Image",
        "name": inventory.image.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    });
    if let Some(id) = &inventory.image.id {
        image["versionInfo"] = json!(id);
    }
    if let Some(purl) = image_purl(inventory) {
        image["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }]);
    }
    packages.push(image);
    for (index, p) in inventory.packages.iter().enumerate() {
        let id = spdx_ref(index, p);
        let declared = if p.licenses.is_empty() {
            "NOASSERTION".to_string()
        } else {
            let ids: Vec<String> = p
                .licenses
                .iter()
                .map(|name| match spdx_id(name) {
                    Some(id) => id.to_string(),
                    None => {
                        let r = license_ref(name);
                        extracted.entry(r.clone()).or_insert_with(|| name.clone());
                        r
                    }
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            ids.join(" AND ")
        };
        let mut comment = origin(inventory, p);
        let _ = write!(comment, "; from {}", p.database);
        let mut package = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "comment": comment,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if let Some(source) = &p.source {
            package["sourceInfo"] = json!(format!("built from source package {source}"));
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let namespace = format!(
        "urn:rbuild:spdx:{}:{}",
        purl_encode(&inventory.image.name, false),
        purl_encode(inventory.image.id.as_deref().unwrap_or("unknown"), false)
    );
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inventory.image.name,
        "documentNamespace": namespace,
        "creationInfo": {
            "created": created(inventory),
            "creators": [format!("Tool: {}", tool())],
        },
        "documentDescribes": ["SPDXRef-Image"],
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, name)| json!({"licenseId": id, "name": name, "extractedText": name}))
            .collect();
    }
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}

/// A UUID made from the image id (the same image, the same serial number).
fn serial(inventory: &Inventory) -> String {
    let seed = format!(
        "{}\n{}",
        inventory.image.name,
        inventory.image.id.as_deref().unwrap_or("")
    );
    let mut b = *blake3::hash(seed.as_bytes()).as_bytes();
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::analyze::hex(&b[..16]);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// CycloneDX 1.5 JSON: `metadata.component` is the image, `components` the packages (with
/// purl, licences and a `bom-ref`), and properties name each one's layer and Dockerfile
/// line.
pub fn cyclonedx_json(inventory: &Inventory) -> String {
    let mut refs: BTreeMap<String, usize> = BTreeMap::new();
    let components: Vec<Value> = inventory
        .packages
        .iter()
        .map(|p| {
            // The purl, made unique when two databases list the same package.
            let seen = refs.entry(p.purl.clone()).or_insert(0);
            *seen += 1;
            let bom_ref = if *seen == 1 {
                p.purl.clone()
            } else {
                format!("{}#{}", p.purl, seen)
            };
            let licenses: Vec<Value> = p
                .licenses
                .iter()
                .map(|name| match spdx_id(name) {
                    Some(id) => json!({"license": {"id": id}}),
                    None => json!({"license": {"name": name}}),
                })
                .collect();
            let mut properties = vec![
                json!({"name": "rbuild:package:type", "value": p.ecosystem.name()}),
                json!({"name": "rbuild:package:database", "value": p.database}),
                json!({"name": "rbuild:layer:index", "value": p.layer.to_string()}),
            ];
            if let Some(layer) = inventory.layer(p) {
                if let Some(digest) = &layer.digest {
                    properties.push(json!({"name": "rbuild:layer:digest", "value": digest}));
                }
                if let Some(line) = layer.dockerfile_line {
                    properties.push(
                        json!({"name": "rbuild:layer:dockerfile-line", "value": line.to_string()}),
                    );
                }
                if let Some(instruction) = &layer.instruction {
                    properties
                        .push(json!({"name": "rbuild:layer:instruction", "value": instruction}));
                }
            }
            if let Some(source) = &p.source {
                properties.push(json!({"name": "rbuild:package:source", "value": source}));
            }
            let mut component = json!({
                "type": "library",
                "bom-ref": bom_ref,
                "name": p.name,
                "version": p.version,
                "purl": p.purl,
                "properties": properties,
            });
            if !licenses.is_empty() {
                component["licenses"] = Value::Array(licenses);
            }
            component
        })
        .collect();
    let mut image = json!({
        "type": "container",
        "bom-ref": "image",
        "name": inventory.image.name,
    });
    if let Some(id) = &inventory.image.id {
        image["version"] = json!(id);
    }
    if let Some(purl) = image_purl(inventory) {
        image["purl"] = json!(purl);
    }
    let (tool_name, tool_version) = ("rbuild", env!("CARGO_PKG_VERSION"));
    let document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial(inventory),
        "version": 1,
        "metadata": {
            "timestamp": created(inventory),
            "tools": {"components": [{"type": "application", "name": tool_name, "version": tool_version}]},
            "component": image,
        },
        "components": components,
    });
    serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"
}
