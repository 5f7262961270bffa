//! Devices: what a User-Agent says about the client (device model, OS and version, browser
//! and version, parsed with uap-core's rules through the `ua-parser` crate) and the
//! fingerprint that recognises the same device across browser updates.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// User-Agent strings longer than this are cut before parsing: real ones are far shorter,
/// and a megabyte of header must not cost a megabyte of regex work.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// The three User-Agent-derived fields of the guides' device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub model: String,
    pub os: String,
    pub browser: String,
    /// Same device, same browser and OS family: stable across version updates.
    pub fingerprint: String,
}

static UAP_YAML: &str = include_str!(concat!(env!("OUT_DIR"), "/uap-regexes.yaml"));

fn extractor() -> &'static ua_parser::Extractor<'static> {
    static EXTRACTOR: OnceLock<ua_parser::Extractor<'static>> = OnceLock::new();
    EXTRACTOR.get_or_init(|| {
        // The rules are embedded at build time from the locked ua-parser package, and the
        // unit tests below parse real agents with them, so a build that passed its tests
        // cannot fail here; `warm_up` runs this at start, so a broken build stops before
        // serving, never in a request.
        #[allow(clippy::expect_used)]
        compile_rules().expect("the embedded uap-core rules parse and compile")
    })
}

fn compile_rules() -> Result<ua_parser::Extractor<'static>, String> {
    let regexes: ua_parser::Regexes<'static> =
        serde_yaml::from_str(UAP_YAML).map_err(|e| format!("uap-core rules: {e}"))?;
    ua_parser::Extractor::try_from(regexes).map_err(|e| format!("uap-core rules: {e}"))
}

/// Compiles the rules now rather than on the first sign-in.
pub fn warm_up() {
    let _ = extractor();
}

/// Cuts to at most `MAX_USER_AGENT_CHARS` characters and drops control characters.
pub fn clean_user_agent(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect()
}

fn version(parts: &[Option<&str>]) -> String {
    parts
        .iter()
        .map_while(|p| p.filter(|s| !s.is_empty()))
        .collect::<Vec<_>>()
        .join(".")
}

fn with_version(name: &str, v: String) -> String {
    if v.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {v}")
    }
}

impl DeviceInfo {
    pub fn from_user_agent(raw: &str) -> Self {
        let ua = clean_user_agent(raw);
        let (browser, os, device) = extractor().extract(&ua);
        let (browser_family, browser) = match browser.filter(|b| b.family != "Other") {
            Some(b) => (
                b.family.to_string(),
                with_version(&b.family, version(&[b.major, b.minor])),
            ),
            None => ("Other".to_owned(), "Unknown browser".to_owned()),
        };
        let (os_family, os) = match os.filter(|o| o.os != "Other") {
            Some(o) => {
                let v = version(&[o.major.as_deref(), o.minor.as_deref(), o.patch.as_deref()]);
                (o.os.to_string(), with_version(&o.os, v))
            }
            None => ("Other".to_owned(), "Unknown OS".to_owned()),
        };
        let model = match device {
            Some(d) if d.device != "Other" => match (d.brand.as_deref(), d.model.as_deref()) {
                (Some(brand), Some(model)) if !model.starts_with(brand) && brand != "Generic" => {
                    format!("{brand} {model}")
                }
                _ => d.device.to_string(),
            },
            _ => match os_family.as_str() {
                "Windows" | "Linux" | "Ubuntu" | "Fedora" | "Chrome OS" | "FreeBSD" => {
                    "Computer".to_owned()
                }
                "Mac OS X" | "macOS" => "Mac".to_owned(),
                _ => "Unknown device".to_owned(),
            },
        };
        let fingerprint = fingerprint(&[&browser_family, &os_family, &model]);
        Self {
            model,
            os,
            browser,
            fingerprint,
        }
    }
}

fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"rampart-device-v1");
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const WIN_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36";

    #[test]
    fn parses_the_six_field_view_of_real_agents() {
        let d = DeviceInfo::from_user_agent(IPHONE);
        assert_eq!(d.model, "Apple iPhone");
        assert_eq!(d.os, "iOS 17.5");
        assert_eq!(d.browser, "Mobile Safari 17.5");
        let w = DeviceInfo::from_user_agent(WIN_CHROME);
        assert_eq!(w.model, "Computer");
        assert_eq!(w.os, "Windows 10");
        assert_eq!(w.browser, "Chrome 118.0");
    }

    #[test]
    fn browser_update_keeps_the_fingerprint_other_browser_changes_it() {
        let newer = WIN_CHROME.replace("118.0.0.0", "131.0.0.0");
        let a = DeviceInfo::from_user_agent(WIN_CHROME);
        let b = DeviceInfo::from_user_agent(&newer);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(
            a.fingerprint,
            DeviceInfo::from_user_agent(IPHONE).fingerprint
        );
    }

    #[test]
    fn garbage_and_huge_agents_do_not_panic() {
        let d = DeviceInfo::from_user_agent("\u{0}\u{7}💥'; DROP TABLE devices;--");
        assert_eq!(d.browser, "Unknown browser");
        let huge = "A".repeat(1_000_000);
        let _ = DeviceInfo::from_user_agent(&huge);
        assert_eq!(clean_user_agent(&huge).len(), MAX_USER_AGENT_CHARS);
    }
}
