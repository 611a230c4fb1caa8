//! Reading `.npy` files (NumPy's array format) as they stream in: the header
//! is parsed from the first bytes, then the body is checked item by item
//! (length, finiteness) without holding it in memory.

use crate::error::{Error, Result};

use neuralign_ingest::npy::MAGIC;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
    pub fn parse_name(s: &str) -> Option<DType> {
        match s {
            "float32" => Some(DType::F32),
            "float64" => Some(DType::F64),
            _ => None,
        }
    }
    fn descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub dtype: DType,
    pub shape: Vec<u64>,
    /// Bytes before the data (magic, version, length and the dict).
    pub data_offset: usize,
}

impl Header {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
    pub fn data_bytes(&self) -> u64 {
        self.numel() * self.dtype.size() as u64
    }
}

/// Parses the header from the first bytes of a file. Returns `Ok(None)` when
/// more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>> {
    let bad = |m: &str| Error::invalid(format!("file: not a valid .npy file ({m})"));
    if buf.len() < 10 {
        if !MAGIC.starts_with(&buf[..buf.len().min(6)]) {
            return Err(bad("missing the \\x93NUMPY magic"));
        }
        return Ok(None);
    }
    if &buf[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let major = buf[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10),
        2 | 3 => {
            if buf.len() < 12 {
                return Ok(None);
            }
            (
                u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    if len > 1 << 20 {
        return Err(bad("header longer than 1 MiB"));
    }
    if buf.len() < start + len {
        return Ok(None);
    }
    let text =
        std::str::from_utf8(&buf[start..start + len]).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(text, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let descr = descr.trim().trim_matches('\'').trim_matches('"');
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        other => {
            return Err(Error::invalid(format!(
                "dtype: {other:?} is not supported (expected little-endian float32 '<f4' or float64 '<f8')"
            )))
        }
    };
    let fortran =
        dict_value(text, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    if fortran.trim() != "False" {
        return Err(Error::invalid(
            "fortran_order: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape_text = dict_value(text, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape =
        parse_shape(shape_text).ok_or_else(|| bad(&format!("cannot read shape {shape_text:?}")))?;
    Ok(Some(Header {
        dtype,
        shape,
        data_offset: start + len,
    }))
}

use neuralign_ingest::npy::{dict_value, parse_shape};

/// Encodes a version-1.0 header for an array of the given dtype and shape.
pub fn encode_header(dtype: DType, shape: &[u64]) -> Vec<u8> {
    neuralign_ingest::npy::encode_header(dtype.descr(), shape)
}

/// Checks a `.npy` byte stream piece by piece: header, then every value is
/// finite, then the length is exact. Holds at most one partial item.
#[derive(Debug, Default)]
pub struct Validator {
    head: Vec<u8>,
    header: Option<Header>,
    data_seen: u64,
    carry: Vec<u8>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        if self.header.is_none() {
            self.head.extend_from_slice(bytes);
            match parse_header(&self.head)? {
                None => return Ok(()),
                Some(h) => {
                    if h.shape.is_empty() || h.numel() == 0 {
                        return Err(Error::invalid(format!(
                            "shape: array is empty or scalar (shape {:?}); expected at least one element in 1–4 dimensions",
                            h.shape
                        )));
                    }
                    let rest = std::mem::take(&mut self.head).split_off(h.data_offset);
                    self.header = Some(h);
                    return self.feed_data(&rest);
                }
            }
        }
        self.feed_data(std::mem::take(&mut bytes))
    }

    fn feed_data(&mut self, bytes: &[u8]) -> Result<()> {
        let h = self.header.as_ref().expect("header parsed");
        let item = h.dtype.size();
        self.data_seen += bytes.len() as u64;
        if self.data_seen > h.data_bytes() {
            return Err(Error::invalid(format!(
                "file: .npy data is longer than its shape {:?} says ({} bytes expected)",
                h.shape,
                h.data_bytes()
            )));
        }
        let start_index =
            (self.data_seen - bytes.len() as u64 - self.carry.len() as u64) / item as u64;
        let mut joined;
        let data: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(bytes);
            &joined
        };
        let whole = data.len() / item * item;
        if let Some(bad) = first_non_finite(h.dtype, &data[..whole]) {
            return Err(Error::invalid(format!(
                "values: non-finite value (NaN or Inf) at flat index {}",
                start_index + bad as u64
            )));
        }
        self.carry = data[whole..].to_vec();
        Ok(())
    }

    /// Ends the stream; fails if it stopped early.
    pub fn finish(self) -> Result<Header> {
        let h = self.header.ok_or_else(|| {
            Error::invalid("file: truncated .npy file (the header is incomplete)")
        })?;
        if self.data_seen != h.data_bytes() {
            return Err(Error::invalid(format!(
                "file: truncated .npy file: shape {:?} needs {} data bytes, got {}",
                h.shape,
                h.data_bytes(),
                self.data_seen
            )));
        }
        Ok(h)
    }
}

fn first_non_finite(dtype: DType, data: &[u8]) -> Option<usize> {
    match dtype {
        DType::F32 => data
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes(c.try_into().expect("4 bytes")).is_finite()),
        DType::F64 => data
            .chunks_exact(8)
            .position(|c| !f64::from_le_bytes(c.try_into().expect("8 bytes")).is_finite()),
    }
}

/// Decodes a whole in-memory `.npy` file into float64 values and its shape.
pub fn decode_f64(bytes: &[u8]) -> Result<(Vec<u64>, Vec<f64>)> {
    let mut v = Validator::new();
    v.feed(bytes)?;
    let h = v.finish()?;
    let data = &bytes[h.data_offset..];
    let values = match h.dtype {
        DType::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")) as f64)
            .collect(),
        DType::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
    };
    Ok((h.shape, values))
}

/// Encodes float64 values as a `.npy` file.
pub fn encode_f64(shape: &[u64], values: &[f64]) -> Vec<u8> {
    let mut out = encode_header(DType::F64, shape);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_split_feeding() {
        let vals: Vec<f64> = (0..12).map(|i| i as f64 * 0.5).collect();
        let bytes = encode_f64(&[3, 4], &vals);
        assert_eq!((bytes.len() - 8 * 12) % 64, 0, "header padded to 64 bytes");
        for step in [1, 3, 7, 64, 1000] {
            let mut v = Validator::new();
            for piece in bytes.chunks(step) {
                v.feed(piece).unwrap();
            }
            let h = v.finish().unwrap();
            assert_eq!(h.shape, vec![3, 4]);
        }
        assert_eq!(decode_f64(&bytes).unwrap(), (vec![3, 4], vals));
    }

    #[test]
    fn rejects_bad_files() {
        let vals = [1.0, f64::NAN, 2.0];
        let err = decode_f64(&encode_f64(&[3], &vals)).unwrap_err();
        assert!(err.to_string().contains("flat index 1"), "{err}");
        let good = encode_f64(&[2, 2], &[1.0; 4]);
        let err = decode_f64(&good[..good.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(decode_f64(b"PK\x03\x04 zip")
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(decode_f64(&long)
            .unwrap_err()
            .to_string()
            .contains("longer"));
        let empty = encode_f64(&[0, 3], &[]);
        assert!(decode_f64(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let mut int = good.clone();
        let pos = int.windows(3).position(|w| w == b"<f8").unwrap();
        int[pos + 1] = b'i';
        assert!(decode_f64(&int).unwrap_err().to_string().contains("dtype"));
    }
}
