//! The incident report as a PDF, written with `pdf-writer` (typst's PDF writer): A4 pages
//! of text in the standard PDF fonts (Helvetica for headings, Courier for the body, so
//! lines wrap exactly by character count), WinAnsi-encoded, with page numbers. No font
//! files are embedded: every PDF reader has these fonts, and `pdftotext` reads them back.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use crate::clock::format_utc;
use crate::service::incidents::IncidentReport;

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 48.0;
const BODY_SIZE: f32 = 8.5;
/// Courier's advance is 0.6 em for every character.
const BODY_CHARS: usize = ((PAGE_W - 2.0 * MARGIN) / (BODY_SIZE * 0.6)) as usize;

#[derive(Clone, Copy)]
enum Style {
    Title,
    Heading,
    Body,
}

impl Style {
    fn font(self) -> Name<'static> {
        match self {
            Self::Title | Self::Heading => Name(b"F1"),
            Self::Body => Name(b"F2"),
        }
    }
    fn size(self) -> f32 {
        match self {
            Self::Title => 16.0,
            Self::Heading => 11.0,
            Self::Body => BODY_SIZE,
        }
    }
    /// The space a line of this style takes, above it included.
    fn leading(self) -> f32 {
        match self {
            Self::Title => 24.0,
            Self::Heading => 20.0,
            Self::Body => 11.0,
        }
    }
}

/// The report's lines before they are laid out on pages.
struct Lines(Vec<(Style, String)>);

impl Lines {
    fn push(&mut self, style: Style, text: impl Into<String>) {
        self.0.push((style, text.into()));
    }

    /// Body text, wrapped at the page width; continuation lines are indented.
    fn body(&mut self, text: &str) {
        let mut first = true;
        let mut rest: Vec<char> = text.chars().collect();
        while !rest.is_empty() || first {
            let width = if first { BODY_CHARS } else { BODY_CHARS - 4 };
            let cut = if rest.len() <= width {
                rest.len()
            } else {
                // Break at the last space that fits, or hard at the width.
                rest[..width]
                    .iter()
                    .rposition(|c| *c == ' ')
                    .filter(|&p| p > width / 2)
                    .unwrap_or(width)
            };
            let line: String = rest[..cut].iter().collect();
            let line = line.trim_end().to_owned();
            self.push(
                Style::Body,
                if first {
                    line
                } else {
                    format!("    {}", line.trim_start())
                },
            );
            rest.drain(..cut);
            first = false;
        }
    }
}

/// Text in the WinAnsi encoding of the standard fonts; what it cannot show becomes `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '→' => b'>',
            _ => b'?',
        })
        .collect()
}

fn lines_of(r: &IncidentReport) -> Lines {
    let mut l = Lines(Vec::new());
    l.push(Style::Title, "Incident report");
    l.body(&format!(
        "Account UID {} ({}). Covers {} to {} (UTC). Made by Rampart at the owner's request.",
        r.account_uid,
        r.email,
        format_utc(r.since),
        format_utc(r.generated_at)
    ));
    l.body(&r.audit_chain);
    if !r.incidents.is_empty() {
        l.push(Style::Heading, "Incidents opened");
        for i in &r.incidents {
            l.body(&format!("- {i}"));
        }
    }
    l.push(Style::Heading, "Timeline (UTC, oldest first)");
    for e in &r.timeline {
        let mut s = format!("{}  [{}] {}", format_utc(e.at), e.kind, e.what);
        if let Some(ip) = &e.ip {
            s.push_str(&format!(" | IP {ip}"));
        }
        if let Some(p) = &e.place {
            s.push_str(&format!(", {p}"));
        }
        if let Some(d) = &e.device {
            s.push_str(&format!(" | {d}"));
        }
        s.push_str(&format!(" | by {}", e.actor));
        l.body(&s);
    }
    l.push(
        Style::Heading,
        "Sign-ins (device model, OS, browser, IP, place, first and last seen)",
    );
    for s in &r.sign_ins {
        l.body(&format!(
            "{}  {} | {} | {} | {} | IP {} | {} | first seen {} | last active {}",
            format_utc(s.at),
            s.result,
            s.device_model,
            s.os,
            s.browser,
            s.ip,
            s.place,
            s.first_seen.map_or_else(|| "-".into(), format_utc),
            s.last_active.map_or_else(|| "-".into(), format_utc),
        ));
    }
    l.push(Style::Heading, "Withdrawals");
    if r.withdrawals.is_empty() {
        l.body("None in this period.");
    }
    for w in &r.withdrawals {
        l.body(&format!(
            "{}  {} {} on {} to {} | {} | TxID {}",
            format_utc(w.at),
            w.amount,
            w.asset,
            w.network,
            w.destination,
            w.state,
            w.txid.as_deref().unwrap_or("-"),
        ));
    }
    l
}

/// The report as PDF bytes.
pub fn incident_report(r: &IncidentReport) -> Vec<u8> {
    let lines = lines_of(r);
    // Lay out: a page takes lines until the next would cross the bottom margin.
    let mut pages: Vec<Vec<(Style, String)>> = vec![Vec::new()];
    let mut y = PAGE_H - MARGIN;
    for (style, text) in lines.0 {
        if y - style.leading() < MARGIN + 20.0 {
            pages.push(Vec::new());
            y = PAGE_H - MARGIN;
        }
        y -= style.leading();
        if let Some(page) = pages.last_mut() {
            page.push((style, text));
        }
    }
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let heading_font = Ref::new(3);
    let body_font = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages.len() as i32);
    pdf.type1_font(heading_font)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(body_font)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&format!(
            "Incident report, account {}",
            r.account_uid
        )))
        .producer(TextStr("Rampart"));
    let total = pages.len();
    for (i, page_lines) in pages.into_iter().enumerate() {
        let id = page_ids[i];
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(id);
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(Name(b"F1"), heading_font)
            .pair(Name(b"F2"), body_font);
        page.finish();
        let mut c = Content::new();
        let mut y = PAGE_H - MARGIN;
        for (style, text) in &page_lines {
            y -= style.leading();
            c.begin_text()
                .set_font(style.font(), style.size())
                .next_line(MARGIN, y)
                .show(Str(&win_ansi(text)))
                .end_text();
        }
        let footer = format!(
            "Rampart incident report · account {} · page {} of {}",
            r.account_uid,
            i + 1,
            total
        );
        c.begin_text()
            .set_font(Name(b"F2"), 7.0)
            .next_line(MARGIN, MARGIN - 16.0)
            .show(Str(&win_ansi(&footer)))
            .end_text();
        pdf.stream(content_id, &c.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_wraps_within_the_page_and_unknown_characters_show_as_question_marks() {
        let mut l = Lines(Vec::new());
        l.body(&"word ".repeat(60));
        assert!(l.0.len() >= 3);
        assert!(l.0.iter().all(|(_, t)| t.chars().count() <= BODY_CHARS));
        assert_eq!(win_ansi("a·b—c→d你"), b"a\xb7b\x97c>d?".to_vec());
    }
}
