//! Documents as lists of [`Block`]s (headings, paragraphs, tables, figures, code) and their two
//! renderings: Markdown ([`to_markdown`]) and one self-contained HTML page ([`to_html`]). `summary.md`
//! and `mer report`'s `report.md` / `report.html` are all rendered from blocks, so an explanation written
//! once as a block reads the same everywhere.

use base64::Engine;
use std::fmt::Write as _;

/// One piece of a document (the summary or a report).
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading (level 1..=3).
    Heading(u8, String),
    /// A paragraph of plain text (inline `code` spans allowed).
    Para(String),
    /// A table: header cells and rows.
    Table {
        /// Header cells.
        head: Vec<String>,
        /// Body rows.
        rows: Vec<Vec<String>>,
    },
    /// A figure: file name (under `figures/`), caption, PNG bytes.
    Image {
        /// File name under `figures/`.
        file: String,
        /// Caption / alt text.
        caption: String,
        /// The PNG.
        png: Vec<u8>,
    },
    /// A preformatted block (spec text, JSON).
    Code(String),
}

/// Markdown of the blocks; figures link to `figures/<file>`.
pub fn to_markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    for b in blocks {
        match b {
            Block::Heading(l, t) => {
                let _ = writeln!(out, "{} {t}\n", "#".repeat(*l as usize));
            }
            Block::Para(t) => {
                let _ = writeln!(out, "{t}\n");
            }
            Block::Table { head, rows } => {
                let _ = writeln!(
                    out,
                    "| {} |",
                    head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
                );
                let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
                for r in rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        r.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
                    );
                }
                out.push('\n');
            }
            Block::Image { file, caption, .. } => {
                let _ = writeln!(out, "![{caption}](figures/{file})\n");
            }
            Block::Code(t) => {
                let _ = writeln!(out, "```\n{}\n```\n", t.trim_end());
            }
        }
    }
    out
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text and turns `code` spans into `<code>`.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out += &esc(part);
        }
    }
    out
}

/// One self-contained HTML page: inline CSS, figures as `data:image/png;base64` URIs, no script and no
/// external asset.
pub fn to_html(title: &str, blocks: &[Block]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n",
        esc(title),
        REPORT_CSS
    );
    for b in blocks {
        match b {
            Block::Heading(l, t) => {
                let _ = writeln!(out, "<h{l}>{}</h{l}>", inline(t));
            }
            Block::Para(t) => {
                let _ = writeln!(out, "<p>{}</p>", inline(t));
            }
            Block::Table { head, rows } => {
                out += "<table><thead><tr>";
                for h in head {
                    let _ = write!(out, "<th>{}</th>", inline(h));
                }
                out += "</tr></thead><tbody>\n";
                for r in rows {
                    let paper = r.iter().any(|c| c.contains("(published)"));
                    out += if paper {
                        "<tr class=\"paper\">"
                    } else {
                        "<tr>"
                    };
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", inline(c));
                    }
                    out += "</tr>\n";
                }
                out += "</tbody></table>\n";
            }
            Block::Image { file, caption, png } => {
                let data = base64::engine::general_purpose::STANDARD.encode(png);
                let _ = writeln!(
                    out,
                    "<figure><img alt=\"{}\" data-file=\"{}\" src=\"data:image/png;base64,{data}\"><figcaption>{}</figcaption></figure>",
                    esc(caption),
                    esc(file),
                    inline(caption)
                );
            }
            Block::Code(t) => {
                let _ = writeln!(out, "<pre>{}</pre>", esc(t));
            }
        }
    }
    out += "</body></html>\n";
    out
}

const REPORT_CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}\
th{background:#f0f0f0}tr.paper td{background:#fff8e1;font-style:italic}code{background:#f4f4f4;padding:0 3px}\
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}figure{margin:1em 0}img{max-width:100%}\
figcaption{font-size:13px;color:#555}";
