//! Writing a flat graph (`hnsw.flat`, laid out in `format.rs`) section by
//! section, straight from a builder's arrays, so that no second copy of the
//! graph is held while it is written.

use std::io::{self, Write};

use super::format::{Header, Sections, HEADER_LEN};

/// The sections of the file, in the order they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Part {
    /// The row of each point.
    Rows,
    /// The keys.
    Keys,
    /// The CRC-32 of each key.
    KeyCrcs,
    /// The base-layer lists.
    Base,
    /// The start of each upper layer.
    LevelStart,
    /// The points on each upper layer.
    UpperPoints,
    /// Their lists.
    UpperLinks,
    /// The orphans.
    Orphans,
}

const PARTS: [Part; 8] = [
    Part::Rows,
    Part::Keys,
    Part::KeyCrcs,
    Part::Base,
    Part::LevelStart,
    Part::UpperPoints,
    Part::UpperLinks,
    Part::Orphans,
];

impl Sections {
    fn part(&self, part: Part) -> (usize, usize) {
        match part {
            Part::Rows => self.rows,
            Part::Keys => self.keys,
            Part::KeyCrcs => self.key_crcs,
            Part::Base => self.base,
            Part::LevelStart => self.level_start,
            Part::UpperPoints => self.upper_points,
            Part::UpperLinks => self.upper_links,
            Part::Orphans => self.orphans,
        }
    }
}

/// Writes the sections of a file whose header (but for its CRCs) is known
/// in advance, in order and in as many pieces as the caller likes, with
/// the padding between them, computing the body CRC as it goes. The header
/// comes last: [`FlatWriter::finish`] returns it, to be written over the
/// zeros the file starts with.
pub(super) struct FlatWriter<W: Write> {
    out: W,
    at: usize,
    part: Part,
    crc: crc32fast::Hasher,
    header: Header,
    sections: Sections,
}

fn misuse(what: String) -> io::Error {
    io::Error::other(format!("flat graph writer: {what}"))
}

impl<W: Write> FlatWriter<W> {
    /// A writer of the file `header` describes, into `out`.
    pub(super) fn new(mut out: W, header: Header) -> io::Result<FlatWriter<W>> {
        let sections =
            Sections::of(&header).ok_or_else(|| misuse("the header does not fit".into()))?;
        out.write_all(&[0; HEADER_LEN])?;
        Ok(FlatWriter {
            out,
            at: HEADER_LEN,
            part: Part::Rows,
            crc: crc32fast::Hasher::new(),
            header,
            sections,
        })
    }

    /// Writes the next `bytes` of section `part` (parts in file order).
    pub(super) fn put(&mut self, part: Part, bytes: &[u8]) -> io::Result<()> {
        if part < self.part {
            return Err(misuse(format!("{part:?} after {:?}", self.part)));
        }
        if part > self.part {
            // Every section before `part` must be whole.
            let (start, len) = self.sections.part(self.part);
            let skipped = PARTS
                .iter()
                .filter(|&&p| p > self.part && p < part)
                .any(|&p| self.sections.part(p).1 > 0);
            if self.at < start + len || skipped {
                return Err(misuse(format!("{:?} is incomplete", self.part)));
            }
        }
        let (start, len) = self.sections.part(part);
        if self.at < start {
            let pad = vec![0u8; start - self.at];
            // The padding between the keys and their CRCs is outside the
            // body CRC, like both sections.
            if part != Part::KeyCrcs {
                self.crc.update(&pad);
            }
            self.out.write_all(&pad)?;
            self.at = start;
        }
        if self.at + bytes.len() > start + len {
            return Err(misuse(format!("{part:?} overflows")));
        }
        if !matches!(part, Part::Keys | Part::KeyCrcs) {
            self.crc.update(bytes);
        }
        self.out.write_all(bytes)?;
        self.at += bytes.len();
        self.part = part;
        Ok(())
    }

    /// Checks that every section was written whole; the output and the
    /// header with its CRCs.
    pub(super) fn finish(mut self) -> io::Result<(W, Header)> {
        // An empty last section still ends the file at its start.
        self.put(Part::Orphans, &[])?;
        if self.at != self.sections.end {
            return Err(misuse(format!(
                "{} bytes written of {}",
                self.at, self.sections.end
            )));
        }
        self.out.flush()?;
        let mut header = self.header;
        header.body_crc = self.crc.finalize();
        header.crc = header.computed_crc();
        Ok((self.out, header))
    }
}
