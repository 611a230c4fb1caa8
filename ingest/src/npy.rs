//! NumPy `.npy` files of any numeric or string dtype: the header, element
//! decoding to f64 or text, and the writer of neuralign's normalized arrays
//! (little-endian float32/float64, C order).

use std::io::{BufWriter, Read, Write};

use crate::error::{IngestError, Result};

pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// One element type of a `.npy` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    Bool,
    Int(u8),
    UInt(u8),
    Float(u8),
    /// Fixed-width text: `S` (bytes, width in bytes) or `U` (UCS-4, width in characters).
    Bytes(u32),
    Unicode(u32),
}

impl Elem {
    pub fn size(self) -> u64 {
        match self {
            Elem::Bool => 1,
            Elem::Int(b) | Elem::UInt(b) | Elem::Float(b) => b as u64,
            Elem::Bytes(w) => w as u64,
            Elem::Unicode(w) => 4 * w as u64,
        }
    }
    pub fn is_numeric(self) -> bool {
        !matches!(self, Elem::Bytes(_) | Elem::Unicode(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    pub elem: Elem,
    pub big_endian: bool,
    pub shape: Vec<u64>,
    /// The descr string as written, for messages and provenance.
    pub descr: String,
    pub data_offset: u64,
}

impl NpyHeader {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
    pub fn data_bytes(&self) -> u64 {
        self.numel().saturating_mul(self.elem.size())
    }
}

fn bad(field: &str, m: &str) -> IngestError {
    IngestError::invalid(format!("{field}: not a valid .npy file ({m})"))
}

/// Reads and parses the header; `field` names the file or archive entry in errors.
pub fn read_header<R: Read>(r: &mut R, field: &str) -> Result<NpyHeader> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| bad(field, "shorter than a header"))?;
    if &pre[..6] != MAGIC {
        return Err(bad(field, "missing the \\x93NUMPY magic"));
    }
    let (len, start) = match pre[6] {
        1 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l)
                .map_err(|_| bad(field, "truncated header"))?;
            (u16::from_le_bytes(l) as usize, 10)
        }
        2 | 3 => {
            let mut l = [0u8; 4];
            r.read_exact(&mut l)
                .map_err(|_| bad(field, "truncated header"))?;
            (u32::from_le_bytes(l) as usize, 12)
        }
        v => return Err(bad(field, &format!("unsupported format version {v}"))),
    };
    if len > 1 << 20 {
        return Err(bad(field, "header longer than 1 MiB"));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|_| bad(field, "truncated header"))?;
    let text = String::from_utf8(text).map_err(|_| bad(field, "header is not text"))?;
    let descr = dict_value(&text, "descr").ok_or_else(|| bad(field, "header has no 'descr'"))?;
    let descr = descr
        .trim()
        .trim_matches('\'')
        .trim_matches('"')
        .to_string();
    let (elem, big_endian) = parse_descr(&descr).ok_or_else(|| {
        IngestError::invalid(format!(
            "{field}: dtype {descr:?} is not supported (numbers: bool, int8–64, uint8–64, float32/64; text: S or U)"
        ))
    })?;
    let fortran = dict_value(&text, "fortran_order")
        .ok_or_else(|| bad(field, "header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(IngestError::invalid(format!(
            "{field}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray"
        )));
    }
    let shape_text =
        dict_value(&text, "shape").ok_or_else(|| bad(field, "header has no 'shape'"))?;
    let shape = parse_shape(shape_text)
        .ok_or_else(|| bad(field, &format!("cannot read shape {shape_text:?}")))?;
    Ok(NpyHeader {
        elem,
        big_endian,
        shape,
        descr,
        data_offset: (start + len) as u64,
    })
}

fn parse_descr(d: &str) -> Option<(Elem, bool)> {
    if !d.is_ascii() || d.len() < 3 {
        return None;
    }
    let big = match d.as_bytes()[0] as char {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return None,
    };
    let rest = &d[1..];
    let (kind, width) = rest.split_at(1);
    let width: u32 = width.parse().ok()?;
    let elem = match (kind, width) {
        ("b", 1) => Elem::Bool,
        ("i", 1 | 2 | 4 | 8) => Elem::Int(width as u8),
        ("u", 1 | 2 | 4 | 8) => Elem::UInt(width as u8),
        ("f", 4 | 8) => Elem::Float(width as u8),
        ("S", 1..=4096) => Elem::Bytes(width),
        ("U", 1..=4096) => Elem::Unicode(width),
        _ => return None,
    };
    Some((elem, big))
}

/// The raw text of `key`'s value in the header's Python dict literal.
pub fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}':");
    let pat2 = format!("\"{key}\":");
    let pos = text
        .find(&pat1)
        .map(|p| p + pat1.len())
        .or_else(|| text.find(&pat2).map(|p| p + pat2.len()))?;
    let rest = text[pos..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

pub fn parse_shape(s: &str) -> Option<Vec<u64>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('L').parse().ok())
        .collect()
}

/// Encodes a version-1.0 header; `descr` is e.g. `<f8`.
pub fn encode_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn word<const N: usize>(b: &[u8], big: bool) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&b[..N]);
    if big {
        w.reverse();
    }
    w
}

/// One numeric element as f64 (int64 beyond 2^53 loses precision, as in numpy).
pub fn decode_f64(elem: Elem, big: bool, b: &[u8]) -> f64 {
    match elem {
        Elem::Bool => (b[0] != 0) as u8 as f64,
        Elem::Int(1) => b[0] as i8 as f64,
        Elem::Int(2) => i16::from_le_bytes(word(b, big)) as f64,
        Elem::Int(4) => i32::from_le_bytes(word(b, big)) as f64,
        Elem::Int(_) => i64::from_le_bytes(word(b, big)) as f64,
        Elem::UInt(1) => b[0] as f64,
        Elem::UInt(2) => u16::from_le_bytes(word(b, big)) as f64,
        Elem::UInt(4) => u32::from_le_bytes(word(b, big)) as f64,
        Elem::UInt(_) => u64::from_le_bytes(word(b, big)) as f64,
        Elem::Float(4) => f32::from_le_bytes(word(b, big)) as f64,
        Elem::Float(_) => f64::from_le_bytes(word(b, big)),
        Elem::Bytes(_) | Elem::Unicode(_) => f64::NAN,
    }
}

/// Reads exactly the header's data, in pieces of at most `piece` bytes,
/// handing each whole run of elements to `each`.
pub fn for_each_piece<R: Read>(
    r: &mut R,
    h: &NpyHeader,
    field: &str,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let item = h.elem.size() as usize;
    let total = h.data_bytes();
    let per = ((1 << 20) / item).max(1) * item;
    let mut buf = vec![0u8; per.min(total as usize)];
    let mut left = total;
    while left > 0 {
        let n = per.min(left as usize);
        read_exactly(r, &mut buf[..n], field, total - left, total)?;
        each(&buf[..n])?;
        left -= n as u64;
    }
    expect_end(r, h, field)
}

/// Fails when the file goes on after the data its header declares.
pub fn expect_end<R: Read>(r: &mut R, h: &NpyHeader, field: &str) -> Result<()> {
    let mut extra = [0u8; 1];
    if matches!(r.read(&mut extra), Ok(1)) {
        return Err(IngestError::invalid(format!(
            "{field}: has bytes after the {} bytes of data its header declares",
            h.data_bytes()
        )));
    }
    Ok(())
}

/// Fills `buf` from `r`; `done` of the header's `total` data bytes were read
/// before, for the message when the file ends early.
pub fn read_exactly<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    field: &str,
    done: u64,
    total: u64,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(IngestError::invalid(format!(
                "{field}: truncated: the header declares {total} bytes of data, the file has {}",
                done + got as u64
            )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IngestError::invalid(format!("{field}: cannot read: {e}"))),
        }
    }
    Ok(())
}

/// A 1-D array of text or integers as strings (stimulus ids, labels).
pub fn read_strings<R: Read>(r: &mut R, h: &NpyHeader, field: &str) -> Result<Vec<String>> {
    if h.shape.len() != 1 {
        return Err(IngestError::invalid(format!(
            "{field}: must be 1-D, got shape {:?}",
            h.shape
        )));
    }
    let item = h.elem.size() as usize;
    let mut out = Vec::with_capacity(h.numel().min(1 << 20) as usize);
    let mut bad = None;
    for_each_piece(r, h, field, |p| {
        for b in p.chunks_exact(item) {
            out.push(match h.elem {
                Elem::Bytes(_) => {
                    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                    String::from_utf8(b[..end].to_vec()).unwrap_or_else(|_| {
                        bad = Some("bytes that are not UTF-8");
                        String::new()
                    })
                }
                Elem::Unicode(_) => b
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(word(c, h.big_endian)))
                    .take_while(|&c| c != 0)
                    .map(|c| {
                        char::from_u32(c).unwrap_or_else(|| {
                            bad = Some("an invalid code point");
                            '\u{fffd}'
                        })
                    })
                    .collect(),
                Elem::Float(_) => {
                    let v = decode_f64(h.elem, h.big_endian, b);
                    if v.fract() != 0.0 || !v.is_finite() {
                        bad = Some("non-integer floats (ids must be text or integers)");
                    }
                    format!("{}", v as i64)
                }
                _ => format!("{}", decode_f64(h.elem, h.big_endian, b) as i64),
            });
        }
        Ok(())
    })?;
    if let Some(why) = bad {
        return Err(IngestError::invalid(format!("{field}: contains {why}")));
    }
    Ok(out)
}

/// Output dtype of a normalized array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F64,
}

impl OutType {
    pub fn name(self) -> &'static str {
        match self {
            OutType::F32 => "float32",
            OutType::F64 => "float64",
        }
    }
    pub fn descr(self) -> &'static str {
        match self {
            OutType::F32 => "<f4",
            OutType::F64 => "<f8",
        }
    }
    pub fn size(self) -> u64 {
        match self {
            OutType::F32 => 4,
            OutType::F64 => 8,
        }
    }
    /// float32 sources stay float32; everything else widens to float64.
    pub fn for_source(elem: Elem) -> OutType {
        if elem == Elem::Float(4) {
            OutType::F32
        } else {
            OutType::F64
        }
    }
}

/// Writes a normalized `.npy` file value by value; `finish` checks the count.
pub struct NpyOut<W: Write> {
    w: BufWriter<W>,
    ty: OutType,
    expected: u64,
    written: u64,
    pub shape: Vec<u64>,
}

impl<W: Write> NpyOut<W> {
    pub fn new(w: W, ty: OutType, shape: &[u64]) -> Result<Self> {
        let mut w = BufWriter::with_capacity(1 << 20, w);
        w.write_all(&encode_header(ty.descr(), shape))
            .map_err(|e| IngestError::io("output", e))?;
        Ok(NpyOut {
            w,
            ty,
            expected: shape.iter().product(),
            written: 0,
            shape: shape.to_vec(),
        })
    }

    pub fn ty(&self) -> OutType {
        self.ty
    }

    #[inline]
    pub fn push(&mut self, v: f64) -> Result<()> {
        let r = match self.ty {
            OutType::F32 => self.w.write_all(&(v as f32).to_le_bytes()),
            OutType::F64 => self.w.write_all(&v.to_le_bytes()),
        };
        self.written += 1;
        r.map_err(|e| IngestError::io("output", e))
    }

    /// Values already in the output's dtype and byte order, as bytes.
    pub fn push_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len() as u64 / self.ty.size();
        self.w
            .write_all(bytes)
            .map_err(|e| IngestError::io("output", e))
    }

    pub fn push_all(&mut self, vs: &[f64]) -> Result<()> {
        vs.iter().try_for_each(|&v| self.push(v))
    }

    pub fn finish(mut self) -> Result<W> {
        if self.written != self.expected {
            return Err(IngestError::invalid(format!(
                "output: wrote {} values for shape {:?} ({} expected)",
                self.written, self.shape, self.expected
            )));
        }
        self.w.flush().map_err(|e| IngestError::io("output", e))?;
        self.w
            .into_inner()
            .map_err(|e| IngestError::io("output", e.into_error()))
    }
}
