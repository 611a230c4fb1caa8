//! Stimulus sets from `.npy`/`.npz` arrays, zip archives of PNG/JPEG with a
//! CSV manifest, or an HDF5 dataset: written as one normalized array
//! (images N × C × H × W float32; features N × D; sequences N × T × D) plus
//! per-stimulus ids, labels, extra columns and thumbnails. Arrays are
//! converted one stimulus at a time, so memory stays at one image.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::align::check_unique;
use crate::archive::{is_safe_path, Archive};
use crate::error::{list_some, IngestError, Result};
use crate::format::{sniff, Format, MANIFEST};
use crate::h5::H5;
use crate::images::{self, ResizeFilter};
use crate::limits::Limits;
use crate::npy::{self, Elem, NpyHeader, NpyOut, OutType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StimulusKind {
    Images,
    Features,
    Sequences,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Nhwc,
    Nchw,
}

/// How to read an uploaded stimulus set; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StimulusOptions {
    pub format: Option<Format>,
    pub kind: Option<StimulusKind>,
    /// Channel order of a 4-D image array; inferred when unambiguous.
    pub layout: Option<Layout>,
    /// The array inside an `.npz` (default: `images`, `stimuli`, `features`
    /// or the only array besides `stimulus_ids` and `labels`).
    pub key: Option<String>,
    /// HDF5: the stimulus dataset, and optional id and label datasets.
    pub dataset: Option<String>,
    pub ids_dataset: Option<String>,
    pub labels_dataset: Option<String>,
    /// `WxH`: resize every archive image to this size (otherwise sizes must match).
    pub resize: Option<String>,
    pub resize_filter: Option<ResizeFilter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayoutReport {
    pub source: Layout,
    /// "declared" or "inferred".
    pub how: String,
}

/// What was read, for the stimulus set's row and its stimuli rows.
#[derive(Debug, Clone)]
pub struct StimulusSetData {
    pub format: Format,
    pub kind: StimulusKind,
    pub shape: Vec<u64>,
    pub dtype: OutType,
    pub source_dtype: String,
    pub layout: Option<LayoutReport>,
    pub value_range: (f64, f64),
    pub resized_to: Option<(u32, u32)>,
    pub ids: Vec<String>,
    pub labels: Option<Vec<String>>,
    pub extra_columns: Vec<String>,
    /// Per stimulus, the values of `extra_columns`.
    pub extra: Vec<Vec<String>>,
    /// One PNG per stimulus for image sets; empty otherwise.
    pub thumbnails: Vec<Vec<u8>>,
}

/// Reads `path` and writes the normalized array to `out`.
pub fn read(
    path: &Path,
    opts: &StimulusOptions,
    limits: &Limits,
    out: &Path,
) -> Result<StimulusSetData> {
    let format = match opts.format {
        Some(f) => f,
        None => sniff(path)?,
    };
    if opts.resize.is_some() && format != Format::Zip {
        return Err(IngestError::invalid(
            "resize: only images in a zip archive are resized; arrays already share one size",
        ));
    }
    let mut sink = File::create(out).map_err(|e| IngestError::io("output", e))?;
    let data = match format {
        Format::Npy => {
            let mut r = BufReader::with_capacity(1 << 20, open(path)?);
            let h = npy::read_header(&mut r, "file")?;
            let mut items = NpyItems::new(r, h.clone(), "file");
            let mut data = from_array(&h.shape, &h.descr, h.elem == Elem::UInt(1), &mut items, opts, limits, &mut sink)?;
            items.finish()?;
            data.format = Format::Npy;
            data.ids = default_ids(data.shape[0]);
            data
        }
        Format::Npz => read_npz(path, opts, limits, &mut sink)?,
        Format::Hdf5 | Format::Nwb => read_hdf5(path, opts, limits, &mut sink, format)?,
        Format::Zip => read_zip(path, opts, limits, &mut sink)?,
        Format::Csv => {
            return Err(IngestError::invalid(
                "format: a stimulus set cannot be a long CSV; use npy, npz, zip (images + manifest.csv) or hdf5",
            ))
        }
    };
    sink.sync_all().map_err(|e| IngestError::io("output", e))?;
    if data.ids.len() as u64 != data.shape[0] {
        return Err(IngestError::invalid(format!(
            "stimulus_ids: {} ids for {} stimuli",
            data.ids.len(),
            data.shape[0]
        )));
    }
    if let Some(l) = &data.labels {
        if l.len() != data.ids.len() {
            return Err(IngestError::invalid(format!(
                "labels: {} labels for {} stimuli",
                l.len(),
                data.ids.len()
            )));
        }
    }
    check_unique("stimulus_ids", &data.ids)?;
    Ok(data)
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| IngestError::io("file", e))
}

fn default_ids(n: u64) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Yields one stimulus's values at a time.
trait Items {
    fn next_into(&mut self, buf: &mut Vec<f64>, count: usize) -> Result<()>;
}

struct NpyItems<R: Read> {
    r: R,
    h: NpyHeader,
    field: String,
    raw: Vec<u8>,
    read: u64,
}

impl<R: Read> NpyItems<R> {
    fn new(r: R, h: NpyHeader, field: &str) -> Self {
        NpyItems {
            r,
            h,
            field: field.to_string(),
            raw: Vec::new(),
            read: 0,
        }
    }
    fn finish(mut self) -> Result<()> {
        npy::expect_end(&mut self.r, &self.h, &self.field)
    }
}

impl<R: Read> Items for NpyItems<R> {
    fn next_into(&mut self, buf: &mut Vec<f64>, count: usize) -> Result<()> {
        let item = self.h.elem.size() as usize;
        self.raw.resize(count * item, 0);
        npy::read_exactly(
            &mut self.r,
            &mut self.raw,
            &self.field,
            self.read,
            self.h.data_bytes(),
        )?;
        self.read += self.raw.len() as u64;
        buf.clear();
        buf.extend(
            self.raw
                .chunks_exact(item)
                .map(|b| npy::decode_f64(self.h.elem, self.h.big_endian, b)),
        );
        Ok(())
    }
}

/// Stimuli of an HDF5 dataset, read a slab of rows at a time.
struct H5Items<'a> {
    h5: &'a H5,
    path: &'a str,
    rows: u64,
    next_row: u64,
    slab: Vec<f64>,
    at: usize,
}

impl Items for H5Items<'_> {
    fn next_into(&mut self, buf: &mut Vec<f64>, count: usize) -> Result<()> {
        if self.at >= self.slab.len() {
            let n = crate::h5::rows_per_slab(count as u64).min(self.rows - self.next_row);
            self.slab = self
                .h5
                .read_rows_f64("dataset", self.path, self.next_row, n)?;
            self.next_row += n;
            self.at = 0;
            if self.slab.len() != (n as usize) * count {
                return Err(IngestError::invalid(format!(
                    "dataset: {:?} returned a short slab",
                    self.path
                )));
            }
        }
        buf.clear();
        buf.extend_from_slice(&self.slab[self.at..self.at + count]);
        self.at += count;
        Ok(())
    }
}

fn infer_layout(shape: &[u64], declared: Option<Layout>) -> Result<LayoutReport> {
    if let Some(l) = declared {
        return Ok(LayoutReport {
            source: l,
            how: "declared".into(),
        });
    }
    let ch = |d: u64| d == 1 || d == 3;
    let (first, last) = (shape[1], shape[3]);
    let source = match (ch(first), ch(last)) {
        (false, true) => Layout::Nhwc,
        (true, false) => Layout::Nchw,
        _ => {
            return Err(IngestError::invalid(format!(
                "layout: cannot tell the channel axis of shape {shape:?}; set layout=nhwc or layout=nchw"
            )))
        }
    };
    Ok(LayoutReport {
        source,
        how: "inferred".into(),
    })
}

/// Converts an N × … array, one stimulus at a time.
fn from_array(
    shape: &[u64],
    source_dtype: &str,
    is_u8: bool,
    items: &mut dyn Items,
    opts: &StimulusOptions,
    limits: &Limits,
    sink: &mut File,
) -> Result<StimulusSetData> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(IngestError::invalid(format!(
            "shape: {shape:?} has no stimuli or an empty axis"
        )));
    }
    let n = shape[0];
    limits.check("stimuli", n, limits.max_stimuli)?;
    let (kind, layout) = match (shape.len(), opts.kind) {
        (2, None | Some(StimulusKind::Features)) => (StimulusKind::Features, None),
        (3, Some(StimulusKind::Sequences)) => (StimulusKind::Sequences, None),
        (3, Some(StimulusKind::Images)) => (StimulusKind::Images, None),
        (3, None) => {
            return Err(IngestError::invalid(format!(
                "kind: shape {shape:?} is either grayscale images (N×H×W) or sequences (N×T×D); set kind=images or kind=sequences"
            )))
        }
        (4, None | Some(StimulusKind::Images)) => (StimulusKind::Images, Some(infer_layout(shape, opts.layout)?)),
        (d, k) => {
            return Err(IngestError::invalid(format!(
                "shape: a {d}-D array {shape:?} cannot be {} (features are N×D, sequences N×T×D, images N×H×W or N×H×W×C / N×C×H×W)",
                k.map_or("a stimulus set".to_string(), |k| format!("{k:?}").to_lowercase())
            )))
        }
    };
    // Normalized shape and, for images, (c, h, w) and whether the source is channels-last.
    let (out_shape, chw, nhwc) = match (kind, &layout) {
        (StimulusKind::Images, None) => (
            vec![n, 1, shape[1], shape[2]],
            Some((1, shape[1], shape[2])),
            false,
        ),
        (StimulusKind::Images, Some(l)) => {
            let (c, h, w) = match l.source {
                Layout::Nhwc => (shape[3], shape[1], shape[2]),
                Layout::Nchw => (shape[1], shape[2], shape[3]),
            };
            if c != 1 && c != 3 {
                return Err(IngestError::invalid(format!(
                    "shape: images need 1 or 3 channels, {shape:?} has {c} in layout {:?}",
                    l.source
                )));
            }
            (vec![n, c, h, w], Some((c, h, w)), l.source == Layout::Nhwc)
        }
        _ => (shape.to_vec(), None, false),
    };
    if let Some((_, h, w)) = chw {
        limits.check("height", h, limits.max_image_side)?;
        limits.check("width", w, limits.max_image_side)?;
    }
    // Images are always float32; other arrays keep float32, else widen.
    let f32_source = source_dtype.ends_with("f4") || source_dtype == "float32";
    let dtype = if kind == StimulusKind::Images || f32_source {
        OutType::F32
    } else {
        OutType::F64
    };
    limits.check_bytes("shape", &out_shape, dtype.size())?;
    let per: usize = shape[1..].iter().product::<u64>() as usize;
    let scale = if is_u8 && kind == StimulusKind::Images {
        1.0 / 255.0
    } else {
        1.0
    };
    let mut out = NpyOut::new(&mut *sink, dtype, &out_shape)?;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut buf = Vec::with_capacity(per);
    let mut chw_buf = vec![0f32; if chw.is_some() { per } else { 0 }];
    let mut thumbnails = Vec::new();
    for i in 0..n {
        items.next_into(&mut buf, per)?;
        if let Some(bad) = buf.iter().position(|v| !v.is_finite()) {
            return Err(IngestError::invalid(format!(
                "values: stimulus {i} has a non-finite value ({}) at flat position {bad}",
                buf[bad]
            )));
        }
        for v in buf.iter_mut() {
            *v *= scale;
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        match chw {
            Some((c, h, w)) => {
                let (c, hw) = (c as usize, (h * w) as usize);
                for p in 0..hw {
                    for k in 0..c {
                        let src = if nhwc { p * c + k } else { k * hw + p };
                        chw_buf[k * hw + p] = buf[src] as f32;
                    }
                }
                for &v in &chw_buf {
                    out.push(v as f64)?;
                }
                let (tlo, thi) = if is_u8 {
                    (0.0, 1.0)
                } else {
                    chw_buf
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, &v| {
                            (a.0.min(v as f64), a.1.max(v as f64))
                        })
                };
                thumbnails.push(images::thumbnail(
                    &chw_buf, c, h as usize, w as usize, tlo, thi,
                )?);
            }
            None => out.push_all(&buf)?,
        }
    }
    out.finish()?;
    Ok(StimulusSetData {
        format: Format::Npy,
        kind,
        shape: out_shape,
        dtype,
        source_dtype: source_dtype.to_string(),
        layout,
        value_range: (lo, hi),
        resized_to: None,
        ids: Vec::new(),
        labels: None,
        extra_columns: Vec::new(),
        extra: Vec::new(),
        thumbnails,
    })
}

const NPZ_META: [&str; 2] = ["stimulus_ids", "labels"];

fn read_npz(
    path: &Path,
    opts: &StimulusOptions,
    limits: &Limits,
    sink: &mut File,
) -> Result<StimulusSetData> {
    let mut ar = Archive::open(BufReader::new(open(path)?), limits, "file")?;
    let arrays: Vec<String> = ar
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".npy").map(str::to_string))
        .collect();
    let key = pick_npz_key(
        &arrays,
        opts.key.as_deref(),
        &["images", "stimuli", "features", "x"],
        &NPZ_META,
    )?;
    let mut data = {
        let entry = format!("{key}.npy");
        let mut r = ar.open_entry(&entry)?;
        let field = format!("key {key:?}");
        let h = npy::read_header(&mut r, &field)?;
        let mut items = NpyItems::new(r, h.clone(), &field);
        let d = from_array(
            &h.shape,
            &h.descr,
            h.elem == Elem::UInt(1),
            &mut items,
            opts,
            limits,
            sink,
        )?;
        items.finish()?;
        d
    };
    data.format = Format::Npz;
    data.ids = if arrays.iter().any(|a| a == "stimulus_ids") {
        npz_strings(&mut ar, "stimulus_ids")?
    } else {
        default_ids(data.shape[0])
    };
    if arrays.iter().any(|a| a == "labels") {
        data.labels = Some(npz_strings(&mut ar, "labels")?);
    }
    Ok(data)
}

/// Text (or integer) 1-D array `name` of an `.npz`.
pub fn npz_strings<R: Read + std::io::Seek>(
    ar: &mut Archive<R>,
    name: &str,
) -> Result<Vec<String>> {
    let mut r = ar.open_entry(&format!("{name}.npy"))?;
    let h = npy::read_header(&mut r, name)?;
    npy::read_strings(&mut r, &h, name)
}

/// The array an `.npz` upload means: the requested key, else a conventional
/// name, else the only array that is not metadata.
pub fn pick_npz_key(
    arrays: &[String],
    key: Option<&str>,
    conventional: &[&str],
    meta: &[&str],
) -> Result<String> {
    if arrays.is_empty() {
        return Err(IngestError::invalid(
            "file: the .npz archive holds no .npy arrays",
        ));
    }
    if let Some(k) = key {
        if arrays.iter().any(|a| a == k) {
            return Ok(k.to_string());
        }
        return Err(IngestError::invalid(format!(
            "key: {k:?} is not in the .npz (it has {})",
            list_some(arrays, 20)
        )));
    }
    if let Some(c) = conventional.iter().find(|c| arrays.iter().any(|a| a == *c)) {
        return Ok(c.to_string());
    }
    let data: Vec<&String> = arrays
        .iter()
        .filter(|a| !meta.contains(&a.as_str()))
        .collect();
    match data.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(IngestError::invalid(format!(
            "key: the .npz has several arrays ({}); set key to the one to read",
            list_some(arrays, 20)
        ))),
    }
}

fn read_hdf5(
    path: &Path,
    opts: &StimulusOptions,
    limits: &Limits,
    sink: &mut File,
    format: Format,
) -> Result<StimulusSetData> {
    let h5 = H5::open(path, limits)?;
    let ds = opts.dataset.as_deref().ok_or_else(|| {
        IngestError::invalid(
            "dataset: required for an HDF5 stimulus set (the path of the stimulus array)",
        )
    })?;
    let ty = h5.type_name("dataset", ds)?;
    let shape = h5.shape("dataset", ds)?;
    let is_u8 = ty == "uint8";
    let mut items = H5Items {
        h5: &h5,
        path: ds,
        rows: shape.first().copied().unwrap_or(0),
        next_row: 0,
        slab: Vec::new(),
        at: 0,
    };
    let mut data = from_array(&shape, &ty, is_u8, &mut items, opts, limits, sink)?;
    data.format = format;
    data.ids = match &opts.ids_dataset {
        Some(p) => h5.read_strings("ids_dataset", p, limits)?,
        None => default_ids(data.shape[0]),
    };
    if let Some(p) = &opts.labels_dataset {
        data.labels = Some(h5.read_strings("labels_dataset", p, limits)?);
    }
    Ok(data)
}

struct ManifestRow {
    id: String,
    file: String,
    label: Option<String>,
    extra: Vec<String>,
}

fn read_manifest(bytes: &[u8]) -> Result<(Vec<String>, Vec<ManifestRow>, bool)> {
    let mut rd = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers: Vec<String> = rd
        .headers()
        .map_err(|e| {
            IngestError::invalid(format!("manifest.csv: cannot read the header row ({e})"))
        })?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (idc, filec) = match (col("stimulus_id"), col("filename")) {
        (Some(i), Some(f)) => (i, f),
        _ => {
            return Err(IngestError::invalid(format!(
            "manifest.csv: the header must have stimulus_id and filename columns, got {headers:?}"
        )))
        }
    };
    let labelc = col("label");
    let extra_cols: Vec<usize> = (0..headers.len())
        .filter(|&i| i != idc && i != filec && Some(i) != labelc)
        .collect();
    let mut rows = Vec::new();
    for (line, rec) in rd.records().enumerate() {
        let rec =
            rec.map_err(|e| IngestError::invalid(format!("manifest.csv: line {}: {e}", line + 2)))?;
        rows.push(ManifestRow {
            id: rec[idc].trim().to_string(),
            file: rec[filec].trim().to_string(),
            label: labelc.map(|c| rec[c].to_string()),
            extra: extra_cols.iter().map(|&c| rec[c].to_string()).collect(),
        });
    }
    Ok((
        extra_cols.iter().map(|&c| headers[c].clone()).collect(),
        rows,
        labelc.is_some(),
    ))
}

fn read_zip(
    path: &Path,
    opts: &StimulusOptions,
    limits: &Limits,
    sink: &mut File,
) -> Result<StimulusSetData> {
    if matches!(opts.kind, Some(k) if k != StimulusKind::Images) {
        return Err(IngestError::invalid(
            "kind: a zip with a manifest holds images",
        ));
    }
    let resize = opts.resize.as_deref().map(images::parse_size).transpose()?;
    let mut ar = Archive::open(BufReader::new(open(path)?), limits, "file")?;
    if !ar.contains(MANIFEST) {
        return Err(IngestError::invalid(
            "file: the zip has no manifest.csv at its top level",
        ));
    }
    let (extra_columns, rows, has_label) = read_manifest(&ar.read_entry(MANIFEST)?)?;
    if rows.is_empty() {
        return Err(IngestError::invalid("manifest.csv: lists no stimuli"));
    }
    limits.check("stimuli", rows.len() as u64, limits.max_stimuli)?;
    let unsafe_names: Vec<String> = rows
        .iter()
        .filter(|r| !is_safe_path(&r.file))
        .map(|r| format!("{:?}", r.file))
        .collect();
    if !unsafe_names.is_empty() {
        return Err(IngestError::invalid(format!(
            "manifest.csv: filename(s) with an unsafe path (absolute or with '..'): {}",
            list_some(&unsafe_names, 20)
        )));
    }
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| !ar.contains(&r.file))
        .map(|r| format!("{:?}", r.file))
        .collect();
    if !missing.is_empty() {
        return Err(IngestError::invalid(format!(
            "manifest.csv: {} file(s) are not in the archive: {}",
            missing.len(),
            list_some(&missing, 20)
        )));
    }
    // Pass 1, headers only: sizes agree (or will be resized) and the channel count.
    let mut size: Option<(u32, u32, String)> = None;
    let mut all_gray = true;
    for r in &rows {
        let bytes = ar.read_entry(&r.file)?;
        let (w, h, gray) = images::probe(&bytes, &format!("images[{:?}]", r.file), limits)?;
        all_gray &= gray;
        match &size {
            None => size = Some((w, h, r.file.clone())),
            Some((w0, h0, f0)) if resize.is_none() && (w, h) != (*w0, *h0) => {
                return Err(IngestError::invalid(format!(
                    "images: {:?} is {w}x{h} but {f0:?} is {w0}x{h0}; set resize=WxH (and resize_filter) to resize them all",
                    r.file
                )))
            }
            _ => {}
        }
    }
    let (w, h) = resize.unwrap_or_else(|| {
        let (w, h, _) = size.clone().expect("rows is not empty");
        (w, h)
    });
    let c: u64 = if all_gray { 1 } else { 3 };
    let shape = vec![rows.len() as u64, c, h as u64, w as u64];
    limits.check_bytes("images", &shape, 4)?;
    let mut out = NpyOut::new(&mut *sink, OutType::F32, &shape)?;
    let mut px = Vec::with_capacity((c as usize) * (w * h) as usize);
    let mut thumbnails = Vec::with_capacity(rows.len());
    for r in &rows {
        let bytes = ar.read_entry(&r.file)?;
        let img = images::decode(&bytes, &format!("images[{:?}]", r.file), limits)?;
        let img = images::resize(img, (w, h), opts.resize_filter.unwrap_or_default());
        px.clear();
        images::push_chw(&img, c as usize, &mut px);
        for &v in &px {
            out.push(v as f64)?;
        }
        thumbnails.push(images::thumbnail(
            &px, c as usize, h as usize, w as usize, 0.0, 1.0,
        )?);
    }
    out.finish()?
        .flush()
        .map_err(|e| IngestError::io("output", e))?;
    Ok(StimulusSetData {
        format: Format::Zip,
        kind: StimulusKind::Images,
        shape,
        dtype: OutType::F32,
        source_dtype: "uint8".into(),
        layout: None,
        value_range: (0.0, 1.0),
        resized_to: resize,
        ids: rows.iter().map(|r| r.id.clone()).collect(),
        labels: has_label.then(|| {
            rows.iter()
                .map(|r| r.label.clone().unwrap_or_default())
                .collect()
        }),
        extra_columns,
        extra: rows.into_iter().map(|r| r.extra).collect(),
        thumbnails,
    })
}
