//! The gallery file: JSON Lines, one object per line, UTF-8 (see `docs/bulk.md`).
//!
//! - Line 1, the header: `{"format": "palmlink-gallery", "version": 1, "blocks": 10,
//!   "dim": 64, ...}`.
//! - One line per enrolled palm: `external_user_id`, `palm_type`, `enrolled_at` (RFC 3339,
//!   optional), `vendor` (optional), `template` (as a capture's: `f32le_base64` with
//!   `data`, or `f32` with `blocks`) and `crc32` (optional: the CRC-32 of the template's
//!   little-endian bytes, as hex).
//! - The last line, the end: `{"end": true, "records": N}`. A file without it is truncated.
//!
//! Nothing in the file names a tenant: it can be imported into any.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use palmlink_engine::{Layout, Template};
use palmlink_store::PalmType;
use serde::{Deserialize, Serialize};

use crate::capture::{decode_template, TemplateBody};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::validate::check_len;
use crate::FieldError;

/// The `format` of the header.
pub const FORMAT: &str = "palmlink-gallery";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
/// Longest `external_user_id`, as the API accepts it.
const MAX_EXTERNAL_ID: usize = 255;
/// Longest `vendor`, as a capture may name it.
const MAX_VENDOR: usize = 64;

/// The first line.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version.
    pub version: u32,
    /// Blocks per template.
    pub blocks: usize,
    /// Values per block.
    pub dim: usize,
    /// When the file was written (RFC 3339), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
}

impl Header {
    /// The header of a file this build writes now.
    pub fn new(now: i64) -> Header {
        Header {
            format: FORMAT.to_owned(),
            version: VERSION,
            blocks: Layout::DEFAULT.blocks,
            dim: Layout::DEFAULT.dim,
            exported_at: Some(rfc3339(now)),
        }
    }
}

/// A record line or the end line, as read (every field optional; [`check`] decides).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    external_user_id: Option<String>,
    #[serde(default)]
    palm_type: Option<PalmType>,
    #[serde(default)]
    enrolled_at: Option<String>,
    #[serde(default)]
    vendor: Option<String>,
    #[serde(default)]
    template: Option<TemplateBody>,
    #[serde(default)]
    crc32: Option<String>,
    #[serde(default)]
    end: Option<bool>,
    #[serde(default)]
    records: Option<u64>,
}

/// One enrolled palm of the file, checked.
#[derive(Debug)]
pub struct Record {
    /// The tenant's id of the person.
    pub external_user_id: String,
    /// Which palm.
    pub palm_type: PalmType,
    /// When it was enrolled (microseconds), if the file says.
    pub enrolled_at: Option<i64>,
    /// Capture vendor (`unknown` when the file does not say).
    pub vendor: String,
    /// The template, each block L2-normalised.
    pub template: Template,
}

/// What a line after the header holds.
#[derive(Debug)]
pub enum Item {
    /// An enrolled palm.
    Record(Record),
    /// The end line, with the number of records it announces.
    End(u64),
}

/// Why a line is not what the format says, field by field.
pub type LineErrors = Vec<FieldError>;

/// Reads the header line; the message says why it is not one this build reads.
pub fn header(line: &[u8]) -> Result<Header, String> {
    let h: Header = serde_json::from_slice(trim_newline(line))
        .map_err(|e| format!("not a PalmLink gallery header: {e}"))?;
    if h.format != FORMAT {
        return Err(format!("format is {:?}, expected {FORMAT:?}", h.format));
    }
    if h.version != VERSION {
        return Err(format!(
            "version {} is not one this build reads (it reads version {VERSION})",
            h.version
        ));
    }
    let layout = Layout::DEFAULT;
    if (h.blocks, h.dim) != (layout.blocks, layout.dim) {
        return Err(format!(
            "templates of {} x {} values, this deployment's are {} x {}",
            h.blocks, h.dim, layout.blocks, layout.dim
        ));
    }
    Ok(h)
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads and checks a line after the header: a record with every field valid, or the end.
pub fn item(line: &[u8]) -> Result<Item, LineErrors> {
    let line: Line = serde_json::from_slice(trim_newline(line)).map_err(|e| {
        let what = if e.is_eof() {
            "the line ends inside a JSON value (the file may be truncated)".to_owned()
        } else {
            format!("not a valid record: {e}")
        };
        vec![FieldError::new("line", what)]
    })?;
    if line.end.is_some() {
        return end(&line);
    }
    let mut errors = Vec::new();
    let external_user_id = line.external_user_id.unwrap_or_default();
    check_len(
        &mut errors,
        "external_user_id",
        &external_user_id,
        MAX_EXTERNAL_ID,
    );
    if line.palm_type.is_none() {
        errors.push(FieldError::new("palm_type", "is required (left or right)"));
    }
    let enrolled_at = match line.enrolled_at.as_deref() {
        None => None,
        Some(text) => {
            let at = parse_rfc3339(text);
            if at.is_none() {
                errors.push(FieldError::new("enrolled_at", "must be an RFC 3339 time"));
            }
            at
        }
    };
    let vendor = line.vendor.unwrap_or_else(|| "unknown".to_owned());
    check_len(&mut errors, "vendor", &vendor, MAX_VENDOR);
    let template = match &line.template {
        None => {
            errors.push(FieldError::new("template", "is required"));
            None
        }
        Some(body) => {
            if let Some(expected) = &line.crc32 {
                if let Some(e) = check_crc(body, expected) {
                    errors.push(e);
                }
            }
            match decode_template("template", body) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        }
    };
    match (template, line.palm_type, errors.is_empty()) {
        (Some(template), Some(palm_type), true) => Ok(Item::Record(Record {
            external_user_id,
            palm_type,
            enrolled_at,
            vendor,
            template,
        })),
        _ => Err(errors),
    }
}

fn end(line: &Line) -> Result<Item, LineErrors> {
    let others = line.external_user_id.is_some()
        || line.palm_type.is_some()
        || line.enrolled_at.is_some()
        || line.vendor.is_some()
        || line.template.is_some()
        || line.crc32.is_some();
    match (line.end, line.records) {
        (Some(true), Some(n)) if !others => Ok(Item::End(n)),
        _ => Err(vec![FieldError::new(
            "end",
            "the end line is exactly {\"end\": true, \"records\": N}",
        )]),
    }
}

/// The little-endian bytes a template body holds, as given (before normalisation).
fn body_bytes(body: &TemplateBody) -> Option<Vec<u8>> {
    match (body.format.as_str(), &body.blocks, &body.data) {
        ("f32", Some(blocks), _) => Some(
            blocks
                .iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        ("f32le_base64", _, Some(data)) => STANDARD.decode(data.trim()).ok(),
        _ => None,
    }
}

/// An error when the template's bytes do not have the CRC-32 the record states.
fn check_crc(body: &TemplateBody, expected: &str) -> Option<FieldError> {
    let bytes = body_bytes(body)?;
    let actual = format!("{:08x}", crc32fast::hash(&bytes));
    (!actual.eq_ignore_ascii_case(expected.trim())).then(|| {
        FieldError::new(
            "crc32",
            "the template's bytes do not match their checksum (the record is corrupted)",
        )
    })
}

/// The line of a record (without its newline), as this build writes it.
pub fn record_line(
    external_user_id: &str,
    palm_type: PalmType,
    enrolled_at: i64,
    vendor: &str,
    template: &Template,
) -> String {
    let bytes = template.to_le_bytes();
    serde_json::json!({
        "external_user_id": external_user_id,
        "palm_type": palm_type,
        "enrolled_at": rfc3339(enrolled_at),
        "vendor": vendor,
        "template": {"format": "f32le_base64", "data": STANDARD.encode(&bytes)},
        "crc32": format!("{:08x}", crc32fast::hash(&bytes)),
    })
    .to_string()
}

/// The end line (without its newline) after `records` records.
pub fn end_line(records: u64) -> String {
    serde_json::json!({"end": true, "records": records}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(seed: f32) -> Template {
        let values: Vec<f32> = (0..640).map(|i| ((i as f32) * seed).sin() + 0.01).collect();
        Template::from_f32(Layout::DEFAULT, &values).unwrap()
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let t = template(0.37);
        let line = record_line("u-1", PalmType::Left, 1_700_000_000_123_456, "mock", &t);
        let Item::Record(r) = item(line.as_bytes()).unwrap() else {
            panic!("not a record");
        };
        assert_eq!(r.external_user_id, "u-1");
        assert_eq!(r.palm_type, PalmType::Left);
        assert_eq!(r.enrolled_at, Some(1_700_000_000_123_456));
        assert_eq!(r.vendor, "mock");
        for (a, b) in r.template.as_slice().iter().zip(t.as_slice()) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!(matches!(item(end_line(3).as_bytes()), Ok(Item::End(3))));
        let h = header(serde_json::to_string(&Header::new(0)).unwrap().as_bytes()).unwrap();
        assert_eq!(h.version, VERSION);
    }

    #[test]
    fn bad_records_name_their_fields() {
        let t = template(0.5);
        let good = record_line("u", PalmType::Right, 0, "mock", &t);
        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        // One character of the base64 changed: still valid base64, another template.
        let data = v["template"]["data"].as_str().unwrap().to_owned();
        let flipped = if data.starts_with('A') { "B" } else { "A" };
        v["template"]["data"] = format!("{flipped}{}", &data[1..]).into();
        let fields = |line: &str| -> Vec<String> {
            item(line.as_bytes())
                .err()
                .unwrap()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(&v.to_string()), ["crc32"]);
        assert_eq!(fields(&good[..good.len() / 2]), ["line"]);
        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["palm_type"] = "middle".into();
        assert_eq!(fields(&v.to_string()), ["line"]);
        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["external_user_id"] = "".into();
        v["enrolled_at"] = "yesterday".into();
        v.as_object_mut().unwrap().remove("crc32");
        v["template"] = serde_json::json!({"format": "f32", "blocks": [[1.0]]});
        assert_eq!(
            fields(&v.to_string()),
            ["external_user_id", "enrolled_at", "template.blocks"]
        );
        let mut nan = vec![vec![0.5f32; 64]; 10];
        nan[2][3] = f32::NAN;
        let bytes: Vec<u8> = nan.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        v["template"] =
            serde_json::json!({"format": "f32le_base64", "data": STANDARD.encode(bytes)});
        v["external_user_id"] = "x".into();
        v["enrolled_at"] = "2026-01-01T00:00:00Z".into();
        assert_eq!(fields(&v.to_string()), ["template.data[2]"]);
        assert_eq!(fields(r#"{"end": true}"#), ["end"]);
        assert!(header(br#"{"format":"other","version":1,"blocks":10,"dim":64}"#).is_err());
        assert!(
            header(br#"{"format":"palmlink-gallery","version":2,"blocks":10,"dim":64}"#)
                .unwrap_err()
                .contains("version 2")
        );
    }
}
