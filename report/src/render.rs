//! Text, JSON and HTML output.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::analyze::Analysis;
use crate::diff::{Diff, PackageStatus, Status};
use crate::findings::shorten;
use crate::model::{PackageSize, Packages, Report};
use crate::scan::Kind;

use rbuild_options::size::image as human;

fn signed(delta: i64) -> String {
    if delta < 0 {
        format!("-{}", human(delta.unsigned_abs()))
    } else {
        format!("+{}", human(delta as u64))
    }
}

/// The text report.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let t = &report.totals;
    let img = &report.image;
    let _ = write!(out, "Image {}", img.name);
    if let Some(id) = &img.id {
        let _ = write!(out, "  id {}", shorten(id, 19));
    }
    if let (Some(os), Some(arch)) = (&img.os, &img.architecture) {
        let _ = write!(out, "  {os}/{arch}");
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Size:       {} compressed, {} uncompressed, {} in {} files ({} layers)",
        human(t.compressed_bytes),
        human(t.uncompressed_bytes),
        human(t.final_bytes),
        t.final_files,
        t.layers
    );
    let _ = writeln!(
        out,
        "Efficiency: {:.1} % ({} of {} file bytes shipped are in the final image)",
        t.efficiency * 100.0,
        human(t.final_bytes),
        human(t.shipped_bytes)
    );
    let _ = writeln!(
        out,
        "Wasted:     {} ({} overwritten or deleted by later layers, {} duplicate content)",
        human(t.wasted_bytes),
        human(t.shadowed_bytes),
        human(t.duplicate_bytes)
    );
    let b = &report.base;
    let base_how = match b.source {
        crate::model::BaseSource::Annotation => "from the base image annotation",
        crate::model::BaseSource::History => "from the history",
        crate::model::BaseSource::Unknown => "not known",
    };
    let _ = write!(
        out,
        "Base:       {} layers, {} compressed ({base_how})",
        b.layers,
        human(b.compressed_bytes)
    );
    if let Some(name) = &b.name {
        let _ = write!(out, " {name}");
    }
    out.push_str("\n\n");

    let mut rows = vec![
        [
            "#",
            "",
            "COMPRESSED",
            "SIZE",
            "FILES",
            "ADDED",
            "MODIFIED",
            "REMOVED",
            "WASTED",
            "INSTRUCTION",
        ]
        .map(String::from),
    ];
    for l in &report.layers {
        let instruction = match (&l.instruction, l.dockerfile_line) {
            (Some(i), Some(line)) => format!("{} (line {line})", shorten(i, 60)),
            (Some(i), None) => shorten(i, 70),
            (None, _) => "-".to_string(),
        };
        rows.push([
            l.index.to_string(),
            if l.base { "base" } else { "" }.to_string(),
            human(l.compressed_bytes),
            human(l.uncompressed_bytes),
            l.files.to_string(),
            human(l.added_bytes),
            human(l.modified_bytes),
            human(l.removed_bytes),
            human(l.shadowed_bytes),
            instruction,
        ]);
    }
    out.push_str("Layers (WASTED: bytes of the layer that later layers hide)\n");
    table(
        &mut out,
        &rows,
        &[
            false, false, true, true, true, true, true, true, true, false,
        ],
    );

    if !report.largest_files.is_empty() {
        out.push_str("\nLargest files\n");
        for f in &report.largest_files {
            let _ = writeln!(
                out,
                "  {:>9}  {}  (layer {})",
                human(f.bytes),
                f.path,
                f.layer
            );
        }
    }
    if !report.largest_dirs.is_empty() {
        out.push_str("\nLargest directories\n");
        for d in &report.largest_dirs {
            let _ = writeln!(
                out,
                "  {:>9}  {}  ({} files)",
                human(d.bytes),
                d.path,
                d.files
            );
        }
    }
    if !report.duplicates.is_empty() {
        out.push_str("\nDuplicate content\n");
        for d in report.duplicates.iter().take(10) {
            let paths: Vec<&str> = d.paths.iter().take(3).map(|p| p.path.as_str()).collect();
            let _ = writeln!(
                out,
                "  {:>9}  {} copies of {}: {}",
                human(d.wasted_bytes),
                d.copies,
                human(d.bytes),
                paths.join(", ")
            );
        }
    }
    if let Some(p) = report.packages.as_ref().filter(|p| p.count > 0) {
        let _ = writeln!(out, "\nPackages ({})", packages_summary(p));
        for package in &p.largest {
            let _ = writeln!(
                out,
                "  {:>9}  {} {}  {}",
                human(package.bytes),
                package.name,
                package.version,
                added_by(package)
            );
        }
    }
    out.push_str("\nFindings\n");
    if report.findings.is_empty() {
        out.push_str("  none\n");
    }
    for f in &report.findings {
        let severity = match f.severity {
            crate::model::Severity::High => "high",
            crate::model::Severity::Medium => "medium",
            crate::model::Severity::Low => "low",
        };
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(out, "  [{severity}] {kind}: {}", f.message);
        let _ = writeln!(out, "      fix: {}", f.fix);
        if !f.paths.is_empty() {
            let _ = writeln!(out, "      e.g. {}", f.paths.join(", "));
        }
    }
    out
}

/// "293MB in 117 packages; 87.8MB in 627 files owned by no package".
fn packages_summary(p: &Packages) -> String {
    format!(
        "{} in {} packages; {} in {} files owned by no package",
        human(p.owned_bytes),
        p.count,
        human(p.unowned_bytes),
        p.unowned_files
    )
}

/// Where a package comes from: "from `RUN apt-get install clang` (line 7, layer 2)".
fn added_by(package: &PackageSize) -> String {
    match (&package.instruction, package.dockerfile_line) {
        (Some(i), Some(line)) => format!(
            "from `{}` (line {line}, layer {})",
            shorten(i, 60),
            package.layer
        ),
        (Some(i), None) => format!("from `{}` (layer {})", shorten(i, 60), package.layer),
        (None, _) => format!("from layer {}", package.layer),
    }
}

fn table(out: &mut String, rows: &[[String; 10]], right: &[bool; 10]) {
    let mut widths = [0usize; 10];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            line.push(' ');
            if right[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The text form of a diff.
pub fn diff_text(diff: &Diff) -> String {
    let mut out = String::new();
    let t = &diff.totals;
    let _ = writeln!(out, "{} -> {}", diff.old, diff.new);
    let line = |out: &mut String, what: &str, (a, b): (u64, u64)| {
        let _ = writeln!(
            out,
            "  {what:<14} {:>10} -> {:>10}  ({})",
            human(a),
            human(b),
            signed(b as i64 - a as i64)
        );
    };
    line(&mut out, "compressed", t.compressed_bytes);
    line(&mut out, "uncompressed", t.uncompressed_bytes);
    line(&mut out, "final files", t.final_bytes);
    line(&mut out, "wasted", t.wasted_bytes);
    let _ = writeln!(
        out,
        "  {:<14} {:>10} -> {:>10}",
        "file count", t.final_files.0, t.final_files.1
    );
    let _ = writeln!(
        out,
        "  {:<14} {:>9.1}% -> {:>9.1}%",
        "efficiency",
        t.efficiency.0 * 100.0,
        t.efficiency.1 * 100.0
    );
    let _ = writeln!(out, "\nLayers: {} shared", diff.shared_layers);
    for l in &diff.removed_layers {
        let _ = writeln!(
            out,
            "  - #{:<3} {:>10}  {}",
            l.index,
            human(l.uncompressed_bytes),
            l.instruction
                .as_deref()
                .map_or("-".into(), |i| shorten(i, 70))
        );
    }
    for l in &diff.added_layers {
        let _ = writeln!(
            out,
            "  + #{:<3} {:>10}  {}",
            l.index,
            human(l.uncompressed_bytes),
            l.instruction
                .as_deref()
                .map_or("-".into(), |i| shorten(i, 70))
        );
    }
    let mark = |s: Status| match s {
        Status::Added => "+",
        Status::Removed => "-",
        Status::Changed => "~",
    };
    out.push_str("\nDirectories\n");
    for d in &diff.dirs {
        let _ = writeln!(
            out,
            "  {} {:>10}  {}  ({} -> {})",
            mark(d.status),
            signed(d.delta),
            d.path,
            human(d.old_bytes),
            human(d.new_bytes)
        );
    }
    if !diff.packages.is_empty() {
        out.push_str("\nPackages\n");
        for p in &diff.packages {
            let (mark, versions) = match p.status {
                PackageStatus::Added => ("+", p.new_version.clone().unwrap_or_default()),
                PackageStatus::Removed => ("-", p.old_version.clone().unwrap_or_default()),
                PackageStatus::Upgraded | PackageStatus::Resized => (
                    "~",
                    format!(
                        "{} -> {}",
                        p.old_version.as_deref().unwrap_or_default(),
                        p.new_version.as_deref().unwrap_or_default()
                    ),
                ),
            };
            let _ = writeln!(
                out,
                "  {mark} {:>10}  {} {versions}  ({} -> {})",
                signed(p.delta),
                p.name,
                human(p.old_bytes),
                human(p.new_bytes)
            );
        }
    }
    out.push_str("\nFiles\n");
    for p in &diff.paths {
        let _ = writeln!(
            out,
            "  {} {:>10}  {}{}",
            mark(p.status),
            signed(p.delta),
            p.path,
            p.layer.map_or(String::new(), |l| format!("  (layer {l})"))
        );
    }
    out
}

/// A directory tree of the final file system, for the treemap.
struct Tree {
    nodes: Vec<TreeNode>,
}

struct TreeNode {
    name: String,
    size: u64,
    /// Files: the layer. Directories: unused.
    layer: u32,
    /// Directories: bytes per layer.
    by_layer: HashMap<u32, u64>,
    /// Files: the owning package (-1: none). Directories: unused.
    package: i64,
    /// Directories: bytes per owning package (-1: none).
    by_package: HashMap<i64, u64>,
    children: HashMap<String, usize>,
    file: bool,
}

impl Tree {
    fn build(analysis: &Analysis) -> Tree {
        let mut nodes = vec![TreeNode {
            name: "/".into(),
            size: 0,
            layer: 0,
            by_layer: HashMap::new(),
            package: -1,
            by_package: HashMap::new(),
            children: HashMap::new(),
            file: false,
        }];
        for (path, node) in &analysis.files {
            if node.kind != Kind::File || node.size == 0 {
                continue;
            }
            let mut at = 0;
            let parts: Vec<&str> = path.split('/').collect();
            let package = analysis.owners.get(&**path).map_or(-1, |&i| i as i64);
            for (i, part) in parts.iter().enumerate() {
                nodes[at].size += node.size;
                *nodes[at].by_layer.entry(node.layer).or_default() += node.size;
                *nodes[at].by_package.entry(package).or_default() += node.size;
                let next = match nodes[at].children.get(*part) {
                    Some(&n) => n,
                    None => {
                        let n = nodes.len();
                        nodes.push(TreeNode {
                            name: (*part).to_string(),
                            size: 0,
                            layer: node.layer,
                            by_layer: HashMap::new(),
                            package,
                            by_package: HashMap::new(),
                            children: HashMap::new(),
                            file: i + 1 == parts.len(),
                        });
                        nodes[at].children.insert((*part).to_string(), n);
                        n
                    }
                };
                at = next;
            }
            nodes[at].size += node.size;
            nodes[at].layer = node.layer;
        }
        Tree { nodes }
    }

    fn dominant(&self, index: usize) -> i64 {
        let node = &self.nodes[index];
        if node.file {
            return i64::from(node.layer);
        }
        node.by_layer
            .iter()
            .max_by_key(|(l, b)| (**b, std::cmp::Reverse(**l)))
            .map_or(-1, |(l, _)| i64::from(*l))
    }

    /// The package with the most bytes under a node (-1: no package owns most).
    fn dominant_package(&self, index: usize) -> i64 {
        let node = &self.nodes[index];
        if node.file {
            return node.package;
        }
        node.by_package
            .iter()
            .max_by_key(|(p, b)| (**b, std::cmp::Reverse(**p)))
            .map_or(-1, |(p, _)| *p)
    }

    /// JSON of the tree, pruned: children smaller than `min` bytes are merged into one
    /// "(N smaller)" node; no deeper than `depth`.
    fn json(&self, index: usize, min: u64, depth: usize) -> serde_json::Value {
        let node = &self.nodes[index];
        let mut value = serde_json::json!({
            "n": node.name,
            "s": node.size,
            "l": self.dominant(index),
            "p": self.dominant_package(index),
        });
        if node.file || depth == 0 {
            return value;
        }
        let mut children: Vec<usize> = node.children.values().copied().collect();
        children.sort_by(|a, b| {
            self.nodes[*b]
                .size
                .cmp(&self.nodes[*a].size)
                .then_with(|| self.nodes[*a].name.cmp(&self.nodes[*b].name))
        });
        let mut out = Vec::new();
        let mut rest = (0u64, 0usize);
        for child in children {
            if self.nodes[child].size >= min {
                out.push(self.json(child, min, depth - 1));
            } else {
                rest.0 += self.nodes[child].size;
                rest.1 += 1;
            }
        }
        if rest.1 > 0 {
            out.push(serde_json::json!({
                "n": format!("({} smaller)", rest.1),
                "s": rest.0,
                "l": -1,
                "p": -1,
            }));
        }
        value["c"] = serde_json::Value::Array(out);
        value
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HTML_STYLE: &str = include_str!("html/report.css");
const HTML_SCRIPT: &str = include_str!("html/report.js");

/// One self-contained HTML page: summary, a layer timeline, a treemap of the final file
/// system coloured by layer, and the findings. Inline CSS, JS and SVG; no network access.
/// When its script has drawn everything it sets `data-ok="1"` on `<html>`; a script error
/// sets `data-error`.
pub fn html(analysis: &Analysis) -> String {
    let report = &analysis.report;
    let tree = Tree::build(analysis);
    let min = (report.totals.final_bytes / 1500).max(1);
    let data = serde_json::json!({
        "tree": tree.json(0, min, 12),
        "layers": report.layers.iter().map(|l| serde_json::json!({
            "i": l.index,
            "base": l.base,
            "c": l.compressed_bytes,
            "u": l.uncompressed_bytes,
            "shipped": l.shipped_bytes,
            "final": l.final_bytes,
            "shadowed": l.shadowed_bytes,
            "files": l.files,
            "ins": l.instruction.clone().unwrap_or_default(),
            "line": l.dockerfile_line,
        })).collect::<Vec<_>>(),
        "packages": analysis.packages.iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>(),
    });
    // `<` only occurs inside JSON strings, where \u003c means the same: no `</script>`.
    let data = data.to_string().replace('<', "\\u003c");
    let t = &report.totals;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><div class=\"cards\">\
         <div class=\"card\"><b>{}</b><span>compressed</span></div>\
         <div class=\"card\"><b>{}</b><span>uncompressed</span></div>\
         <div class=\"card\"><b>{}</b><span>final files ({})</span></div>\
         <div class=\"card\"><b>{:.1} %</b><span>efficiency</span></div>\
         <div class=\"card\"><b>{}</b><span>wasted</span></div>\
         <div class=\"card\"><b>{}</b><span>base layers ({})</span></div></div>",
        escape(&report.image.name),
        human(t.compressed_bytes),
        human(t.uncompressed_bytes),
        human(t.final_bytes),
        t.final_files,
        t.efficiency * 100.0,
        human(t.wasted_bytes),
        report.base.layers,
        escape(&format!("{:?}", report.base.source).to_lowercase()),
    );
    body.push_str(
        "<h2>Layers</h2><p class=\"legend\"><span class=\"sw keep\"></span>bytes in the final image (in the layer's colour) \
         <span class=\"sw lost\"></span>bytes hidden by later layers (wasted) \
         <span class=\"sw meta\"></span>tar overhead, directories, links</p>\
         <div id=\"timeline\"></div>\
         <h2>Final file system</h2><p class=\"legend\">Area: bytes. Colour: the layer a file comes from \
         (grey: many small files), or with the box below the package that owns it (grey: no package). \
         Hover for details, click a directory to zoom, click the path to go back.</p>\
         <label id=\"by-package-label\"><input type=\"checkbox\" id=\"by-package\"> colour by package</label>\
         <div id=\"crumbs\"></div><div id=\"treemap\"></div><div id=\"tip\"></div>",
    );
    body.push_str("<h2>Findings</h2>");
    if report.findings.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str("<table class=\"findings\"><tr><th>severity</th><th>kind</th><th>layer</th><th>bytes</th><th>what and how to fix</th></tr>");
        for f in &report.findings {
            let kind = serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let sev = format!("{:?}", f.severity).to_lowercase();
            let _ = write!(
                body,
                "<tr class=\"{sev}\"><td>{sev}</td><td>{}</td><td>{}</td><td>{}</td><td>{}<br><i>fix:</i> {}<br><small>{}</small></td></tr>",
                escape(&kind),
                f.layer.map_or("-".into(), |l| l.to_string()),
                human(f.bytes),
                escape(&f.message),
                escape(&f.fix),
                escape(&f.paths.join(", ")),
            );
        }
        body.push_str("</table>");
    }
    if let Some(p) = report.packages.as_ref().filter(|p| p.count > 0) {
        let _ = write!(
            body,
            "<h2>Packages</h2><p>{}.</p><table class=\"list\">",
            escape(&packages_summary(p))
        );
        for package in &p.largest {
            let _ = write!(
                body,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                human(package.bytes),
                escape(&package.name),
                escape(&package.version),
                escape(&added_by(package)),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Largest files</h2><table class=\"list\">");
    for f in &report.largest_files {
        let _ = write!(
            body,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>layer {}</td></tr>",
            human(f.bytes),
            escape(&f.path),
            f.layer
        );
    }
    body.push_str("</table><h2>Largest directories</h2><table class=\"list\">");
    for d in &report.largest_dirs {
        let _ = write!(
            body,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{} files</td></tr>",
            human(d.bytes),
            escape(&d.path),
            d.files
        );
    }
    body.push_str("</table>");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>rbuild report: {}</title><style>{HTML_STYLE}</style></head>\
         <body>{body}<script type=\"application/json\" id=\"data\">{data}</script>\
         <script>{HTML_SCRIPT}</script></body></html>\n",
        escape(&report.image.name)
    )
}
