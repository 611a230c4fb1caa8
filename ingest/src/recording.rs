//! Neural recordings from `.npy`/`.npz`, HDF5 datasets, long CSV and NWB
//! (spike times binned per trial, or a processed array), normalized to
//! repetitions × stimuli × neurons [× time bins] with NaN where a value is
//! missing (ragged repetitions, masked NaN), and aligned to the stimulus set
//! by id. `.npy`/`.npz` stream through and HDF5 datasets are read a slab
//! of rows at a time, in bounded memory; long CSV and NWB spike binning
//! build the dense array in memory, bounded by the decoded limit.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::align::{align, check_unique};
use crate::archive::Archive;
use crate::error::{list_some, IngestError, Result};
use crate::format::{sniff, Format};
use crate::h5::H5;
use crate::limits::Limits;
use crate::npy::{self, NpyOut, OutType};
use crate::stimuli::{npz_strings, pick_npz_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// Any NaN is an error.
    #[default]
    Reject,
    /// NaN marks a missing value and is stored as NaN. Infinities are
    /// always errors.
    Mask,
}

/// How to read an uploaded recording; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordingOptions {
    pub format: Option<Format>,
    /// The array inside an `.npz` (default `responses`, `recording`, `data`,
    /// or the only array besides `stimulus_ids` and `neuron_ids`).
    pub key: Option<String>,
    /// HDF5 (or a processed array in an NWB file): the dataset path.
    pub dataset: Option<String>,
    pub stimulus_ids_dataset: Option<String>,
    pub neuron_ids_dataset: Option<String>,
    pub nan_policy: Option<NanPolicy>,
    /// NWB: the intervals table holding stimulus presentations (`trials`).
    pub intervals: Option<String>,
    /// NWB: the column of that table naming each presentation's stimulus.
    pub stimulus_column: Option<String>,
    /// NWB: counting window relative to each presentation's start, seconds.
    pub window_start: Option<f64>,
    pub window_end: Option<f64>,
    /// NWB: bin width in seconds (default: the whole window, one bin).
    pub bin_size: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct RecordingData {
    pub format: Format,
    /// repetitions × stimuli × neurons [× bins]
    pub shape: Vec<u64>,
    pub dtype: OutType,
    pub source_dtype: String,
    /// The source was stimuli × neurons (one repetition).
    pub trial_averaged: bool,
    /// Index into the stimulus set of each stimulus on axis 1.
    pub stimulus_index: Vec<u32>,
    pub neuron_ids: Vec<String>,
    pub nan_count: u64,
    /// Seconds per time bin when the format says (NWB binning).
    pub bin_size: Option<f64>,
    /// What was read and how, for provenance.
    pub source: serde_json::Value,
}

/// Reads `path` and writes the normalized array to `out`.
pub fn read(
    path: &Path,
    opts: &RecordingOptions,
    set_ids: &[String],
    limits: &Limits,
    out: &Path,
) -> Result<RecordingData> {
    let format = match opts.format {
        Some(f) => f,
        None => match sniff(path)? {
            Format::Hdf5 if opts.dataset.is_none() => Format::Nwb,
            f => f,
        },
    };
    let sink = File::create(out).map_err(|e| IngestError::io("output", e))?;
    let policy = opts.nan_policy.unwrap_or_default();
    let d =
        match format {
            Format::Npy => {
                let mut r = BufReader::with_capacity(
                    1 << 20,
                    File::open(path).map_err(|e| IngestError::io("file", e))?,
                );
                let h = npy::read_header(&mut r, "file")?;
                let mut d = stream_npy(&mut r, &h, "file", None, set_ids, policy, limits, sink)?;
                d.format = Format::Npy;
                d
            }
            Format::Npz => read_npz(path, opts, set_ids, policy, limits, sink)?,
            Format::Hdf5 => read_hdf5(path, opts, set_ids, policy, limits, sink, Format::Hdf5)?,
            Format::Nwb if opts.dataset.is_some() => {
                read_hdf5(path, opts, set_ids, policy, limits, sink, Format::Nwb)?
            }
            Format::Nwb => read_nwb(path, opts, set_ids, limits, sink)?,
            Format::Csv => read_csv(path, set_ids, policy, limits, sink)?,
            Format::Zip => return Err(IngestError::invalid(
                "format: a recording cannot be an image archive; use npy, npz, hdf5, csv or nwb",
            )),
        };
    check_unique("neuron_ids", &d.neuron_ids)?;
    Ok(d)
}

/// Normalized shape of a source array: 2-D is one repetition.
fn normalized_shape(shape: &[u64], limits: &Limits) -> Result<Vec<u64>> {
    let s = match shape.len() {
        2 => vec![1, shape[0], shape[1]],
        3 | 4 => shape.to_vec(),
        _ => {
            return Err(IngestError::invalid(format!(
                "shape: a recording is repetitions × stimuli × neurons [× time bins] or stimuli × neurons, got {shape:?}"
            )))
        }
    };
    let names = ["repetitions", "stimuli", "neurons", "time bins"];
    for (i, &d) in s.iter().enumerate() {
        if d == 0 {
            return Err(IngestError::invalid(format!(
                "shape: {shape:?} has zero {}",
                names[i]
            )));
        }
    }
    limits.check("repetitions", s[0], limits.max_repetitions)?;
    limits.check("stimuli", s[1], limits.max_stimuli)?;
    limits.check("neurons", s[2], limits.max_neurons)?;
    if let Some(&b) = s.get(3) {
        limits.check("time bins", b, limits.max_time_bins)?;
    }
    Ok(s)
}

/// The stimulus index of axis 1: by ids when the upload names them,
/// otherwise the whole set in order.
fn stimulus_index(n: u64, ids: Option<&[String]>, set_ids: &[String]) -> Result<Vec<u32>> {
    match ids {
        Some(ids) => {
            if ids.len() as u64 != n {
                return Err(IngestError::invalid(format!(
                    "stimulus_ids: {} ids for {n} stimuli on axis 1",
                    ids.len()
                )));
            }
            align(set_ids, ids)
        }
        None if n == set_ids.len() as u64 => Ok((0..n as u32).collect()),
        None => Err(IngestError::invalid(format!(
            "shape: the recording has {n} stimuli on its stimulus axis but the stimulus set has {}; \
             upload stimulus_ids to align a subset or another order",
            set_ids.len()
        ))),
    }
}

/// Where flat element `i` sits, for messages.
fn position(shape: &[u64], mut i: u64) -> String {
    let names = ["repetition", "stimulus", "neuron", "time bin"];
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = i % shape[k];
        i /= shape[k];
    }
    idx.iter()
        .zip(names)
        .map(|(v, n)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks values against the NaN policy as they pass, counting masked ones.
struct Values<'a> {
    shape: &'a [u64],
    policy: NanPolicy,
    at: u64,
    nan: u64,
}

impl Values<'_> {
    fn check(&mut self, v: f64) -> Result<f64> {
        let i = self.at;
        self.at += 1;
        self.check_at(i, v)
    }

    fn check_at(&mut self, i: u64, v: f64) -> Result<f64> {
        if v.is_finite() {
            return Ok(v);
        }
        if v.is_nan() && self.policy == NanPolicy::Mask {
            self.nan += 1;
            return Ok(f64::NAN);
        }
        Err(IngestError::invalid(format!(
            "values: {v} at {}{}",
            position(self.shape, i),
            if v.is_nan() {
                "; set nan_policy=mask to store missing values as NaN"
            } else {
                "; infinities are never accepted"
            }
        )))
    }
}

#[allow(clippy::too_many_arguments)]
fn stream_npy<R: Read>(
    r: &mut R,
    h: &npy::NpyHeader,
    field: &str,
    ids: Option<&[String]>,
    set_ids: &[String],
    policy: NanPolicy,
    limits: &Limits,
    sink: File,
) -> Result<RecordingData> {
    if !h.elem.is_numeric() {
        return Err(IngestError::invalid(format!(
            "{field}: dtype {:?} is not numeric",
            h.descr
        )));
    }
    let shape = normalized_shape(&h.shape, limits)?;
    let ty = OutType::for_source(h.elem);
    limits.check_bytes("shape", &shape, ty.size())?;
    let stimulus_index = stimulus_index(shape[1], ids, set_ids)?;
    let mut out = NpyOut::new(sink, ty, &shape)?;
    let mut vals = Values {
        shape: &shape,
        policy,
        at: 0,
        nan: 0,
    };
    let item = h.elem.size() as usize;
    let native = !h.big_endian && matches!(h.elem, npy::Elem::Float(4 | 8));
    npy::for_each_piece(r, h, field, |p| {
        if native {
            // Already the stored dtype and byte order: check, then copy as is.
            let base = vals.at;
            let bad =
                |k: usize, v: f64, vals: &mut Values| vals.check_at(base + k as u64, v).map(|_| ());
            if item == 4 {
                for (k, c) in p.chunks_exact(4).enumerate() {
                    let v = f32::from_le_bytes(c.try_into().expect("4 bytes"));
                    if !v.is_finite() {
                        bad(k, v as f64, &mut vals)?;
                    }
                }
            } else {
                for (k, c) in p.chunks_exact(8).enumerate() {
                    let v = f64::from_le_bytes(c.try_into().expect("8 bytes"));
                    if !v.is_finite() {
                        bad(k, v, &mut vals)?;
                    }
                }
            }
            vals.at += (p.len() / item) as u64;
            return out.push_raw(p);
        }
        for b in p.chunks_exact(item) {
            out.push(vals.check(npy::decode_f64(h.elem, h.big_endian, b))?)?;
        }
        Ok(())
    })?;
    out.finish()?
        .sync_all()
        .map_err(|e| IngestError::io("output", e))?;
    let nan_count = vals.nan;
    Ok(RecordingData {
        format: Format::Npy,
        trial_averaged: h.shape.len() == 2,
        neuron_ids: (0..shape[2]).map(|i| i.to_string()).collect(),
        shape,
        dtype: ty,
        source_dtype: h.descr.clone(),
        stimulus_index,
        nan_count,
        bin_size: None,
        source: json!({}),
    })
}

fn read_npz(
    path: &Path,
    opts: &RecordingOptions,
    set_ids: &[String],
    policy: NanPolicy,
    limits: &Limits,
    sink: File,
) -> Result<RecordingData> {
    let f = File::open(path).map_err(|e| IngestError::io("file", e))?;
    let mut ar = Archive::open(BufReader::new(f), limits, "file")?;
    let arrays: Vec<String> = ar
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".npy").map(str::to_string))
        .collect();
    let key = pick_npz_key(
        &arrays,
        opts.key.as_deref(),
        &["responses", "recording", "data", "x"],
        &["stimulus_ids", "neuron_ids"],
    )?;
    let ids = if arrays.iter().any(|a| a == "stimulus_ids") {
        Some(npz_strings(&mut ar, "stimulus_ids")?)
    } else {
        None
    };
    let neuron_ids = if arrays.iter().any(|a| a == "neuron_ids") {
        Some(npz_strings(&mut ar, "neuron_ids")?)
    } else {
        None
    };
    let field = format!("key {key:?}");
    let mut r = ar.open_entry(&format!("{key}.npy"))?;
    let h = npy::read_header(&mut r, &field)?;
    let mut d = stream_npy(
        &mut r,
        &h,
        &field,
        ids.as_deref(),
        set_ids,
        policy,
        limits,
        sink,
    )?;
    d.format = Format::Npz;
    d.source = json!({"key": key});
    if let Some(n) = neuron_ids {
        set_neuron_ids(&mut d, n)?;
    }
    Ok(d)
}

fn set_neuron_ids(d: &mut RecordingData, ids: Vec<String>) -> Result<()> {
    if ids.len() as u64 != d.shape[2] {
        return Err(IngestError::invalid(format!(
            "neuron_ids: {} ids for {} neurons",
            ids.len(),
            d.shape[2]
        )));
    }
    d.neuron_ids = ids;
    Ok(())
}

/// Writes a dense in-memory array through the NaN policy.
fn write_dense(
    values: &[f64],
    shape: &[u64],
    ty: OutType,
    policy: NanPolicy,
    sink: File,
) -> Result<u64> {
    let mut out = NpyOut::new(sink, ty, shape)?;
    let mut vals = Values {
        shape,
        policy,
        at: 0,
        nan: 0,
    };
    for &v in values {
        out.push(vals.check(v)?)?;
    }
    out.finish()?
        .sync_all()
        .map_err(|e| IngestError::io("output", e))?;
    Ok(vals.nan)
}

#[allow(clippy::too_many_arguments)]
fn read_hdf5(
    path: &Path,
    opts: &RecordingOptions,
    set_ids: &[String],
    policy: NanPolicy,
    limits: &Limits,
    sink: File,
    format: Format,
) -> Result<RecordingData> {
    let h5 = H5::open(path, limits)?;
    let ds = opts.dataset.as_deref().ok_or_else(|| {
        IngestError::invalid("dataset: required for an HDF5 recording (the path of the repetitions × stimuli × neurons array)")
    })?;
    let ty_name = h5.type_name("dataset", ds)?;
    let src_shape = h5.shape("dataset", ds)?;
    let shape = normalized_shape(&src_shape, limits)?;
    let ty = if ty_name == "float32" {
        OutType::F32
    } else {
        OutType::F64
    };
    limits.check_bytes("shape", &shape, ty.size())?;
    let ids = opts
        .stimulus_ids_dataset
        .as_deref()
        .map(|p| h5.read_strings("stimulus_ids_dataset", p, limits))
        .transpose()?;
    let stimulus_index = stimulus_index(shape[1], ids.as_deref(), set_ids)?;
    // Slabs of rows along the source's first axis, in C order like the output.
    let mut out = NpyOut::new(sink, ty, &shape)?;
    let mut vals = Values {
        shape: &shape,
        policy,
        at: 0,
        nan: 0,
    };
    let (rows, row_values) = (src_shape[0], src_shape[1..].iter().product::<u64>());
    let mut row = 0;
    while row < rows {
        let n = crate::h5::rows_per_slab(row_values).min(rows - row);
        let slab = h5.read_rows_f64("dataset", ds, row, n)?;
        if slab.len() as u64 != n * row_values {
            return Err(IngestError::invalid(format!(
                "dataset: {ds:?} returned a short slab"
            )));
        }
        for v in slab {
            out.push(vals.check(v)?)?;
        }
        row += n;
    }
    out.finish()?
        .sync_all()
        .map_err(|e| IngestError::io("output", e))?;
    let nan_count = vals.nan;
    let mut d = RecordingData {
        format,
        trial_averaged: src_shape.len() == 2,
        neuron_ids: (0..shape[2]).map(|i| i.to_string()).collect(),
        shape,
        dtype: ty,
        source_dtype: ty_name,
        stimulus_index,
        nan_count,
        bin_size: None,
        source: json!({"dataset": ds, "stimulus_ids_dataset": opts.stimulus_ids_dataset, "neuron_ids_dataset": opts.neuron_ids_dataset}),
    };
    if let Some(p) = &opts.neuron_ids_dataset {
        set_neuron_ids(&mut d, h5.read_strings("neuron_ids_dataset", p, limits)?)?;
    }
    Ok(d)
}

/// Stimuli named by a file's rows, in the set's order; unknown ids are an error.
fn present_in_set_order(
    set_ids: &[String],
    seen: &HashMap<String, u32>,
) -> Result<(Vec<u32>, HashMap<String, usize>)> {
    let unknown: Vec<String> = {
        let known: std::collections::HashSet<&str> = set_ids.iter().map(String::as_str).collect();
        let mut u: Vec<String> = seen
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .map(|k| format!("{k:?}"))
            .collect();
        u.sort();
        u
    };
    if !unknown.is_empty() {
        return Err(IngestError::invalid(format!(
            "stimulus_ids: {} id(s) are not in the stimulus set: {}",
            unknown.len(),
            list_some(&unknown, 20)
        )));
    }
    let mut index = Vec::new();
    let mut axis = HashMap::new();
    for (i, id) in set_ids.iter().enumerate() {
        if seen.contains_key(id) {
            axis.insert(id.clone(), index.len());
            index.push(i as u32);
        }
    }
    Ok((index, axis))
}

fn read_csv(
    path: &Path,
    set_ids: &[String],
    policy: NanPolicy,
    limits: &Limits,
    sink: File,
) -> Result<RecordingData> {
    let f = File::open(path).map_err(|e| IngestError::io("file", e))?;
    let mut rd = csv::ReaderBuilder::new().from_reader(BufReader::with_capacity(1 << 20, f));
    let headers: Vec<String> = rd
        .headers()
        .map_err(|e| IngestError::invalid(format!("file: cannot read the CSV header row ({e})")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let (sc, nc, rc, vc) = match (col("stimulus_id"), col("neuron_id"), col("repetition"), col("value")) {
        (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
        _ => {
            return Err(IngestError::invalid(format!(
                "file: a long CSV needs the columns stimulus_id, neuron_id, repetition, value[, time_bin]; got {headers:?}"
            )))
        }
    };
    let tc = col("time_bin");
    struct Row {
        stim: u32,
        neuron: u32,
        rep: i64,
        bin: u32,
        value: f64,
        line: u64,
    }
    let mut stims: HashMap<String, u32> = HashMap::new();
    let mut stim_names: Vec<String> = Vec::new();
    let mut neurons: HashMap<String, u32> = HashMap::new();
    let mut neuron_ids: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    let mut line = 1u64;
    loop {
        match rd.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(IngestError::invalid(format!(
                    "file: line {}: {e}",
                    line + 1
                )))
            }
        }
        line += 1;
        let at = |c: usize| rec.get(c).unwrap_or("").trim();
        let int = |c: usize, name: &str| -> Result<i64> {
            at(c).parse::<i64>().map_err(|_| {
                IngestError::invalid(format!(
                    "file: line {line}: {name} {:?} is not an integer",
                    at(c)
                ))
            })
        };
        let value = match at(vc) {
            "" | "nan" | "NaN" | "NA" => f64::NAN,
            v => v.parse::<f64>().map_err(|_| {
                IngestError::invalid(format!("file: line {line}: value {v:?} is not a number"))
            })?,
        };
        let rep = int(rc, "repetition")?;
        let bin = match tc {
            Some(c) => int(c, "time_bin")?,
            None => 0,
        };
        if rep < 0 || bin < 0 {
            return Err(IngestError::invalid(format!(
                "file: line {line}: repetition and time_bin must be >= 0"
            )));
        }
        limits.check("time bins", bin as u64 + 1, limits.max_time_bins)?;
        let s = at(sc).to_string();
        let n_ = stims.len() as u32;
        let stim = *stims.entry(s.clone()).or_insert_with(|| {
            stim_names.push(s);
            n_
        });
        let nid = at(nc).to_string();
        let n_ = neurons.len() as u32;
        let neuron = *neurons.entry(nid.clone()).or_insert_with(|| {
            neuron_ids.push(nid);
            n_
        });
        limits.check("neurons", neurons.len() as u64, limits.max_neurons)?;
        rows.push(Row {
            stim,
            neuron,
            rep,
            bin: bin as u32,
            value,
            line,
        });
    }
    if rows.is_empty() {
        return Err(IngestError::invalid(
            "file: the CSV has a header but no rows",
        ));
    }
    let (stimulus_index, axis) = present_in_set_order(set_ids, &stims)?;
    // Each stimulus's repetition labels, sorted, become 0..k.
    let mut reps: Vec<Vec<i64>> = vec![Vec::new(); stim_names.len()];
    for r in &rows {
        reps[r.stim as usize].push(r.rep);
    }
    for v in reps.iter_mut() {
        v.sort_unstable();
        v.dedup();
    }
    let r_max = reps.iter().map(Vec::len).max().unwrap_or(0) as u64;
    let b = rows.iter().map(|r| r.bin).max().unwrap_or(0) as u64 + 1;
    let (s, n) = (stimulus_index.len() as u64, neuron_ids.len() as u64);
    let shape = if b > 1 {
        vec![r_max, s, n, b]
    } else {
        vec![r_max, s, n]
    };
    let shape = normalized_shape(&shape, limits)?;
    limits.check_bytes("shape", &shape, 8)?;
    let total = (r_max * s * n * b) as usize;
    let mut dense = vec![f64::NAN; total];
    let mut filled = vec![false; total];
    let slot = |r: &Row| -> usize {
        let ri = reps[r.stim as usize]
            .binary_search(&r.rep)
            .expect("collected") as u64;
        let si = axis[&stim_names[r.stim as usize]] as u64;
        (((ri * s + si) * n + r.neuron as u64) * b + r.bin as u64) as usize
    };
    for r in &rows {
        let k = slot(r);
        if filled[k] {
            return Err(IngestError::invalid(format!(
                "file: line {}: a second value for stimulus {:?}, neuron {:?}, repetition {}, time bin {}",
                r.line, stim_names[r.stim as usize], neuron_ids[r.neuron as usize], r.rep, r.bin
            )));
        }
        filled[k] = true;
        dense[k] = r.value;
    }
    // Ragged repetitions leave whole (repetition, stimulus) slots empty: NaN by
    // design. A hole inside a present slot is missing data: only under mask.
    if policy == NanPolicy::Reject {
        let by_axis: HashMap<usize, u32> = stims.iter().map(|(k, &v)| (axis[k], v)).collect();
        for si in 0..s {
            let nreps = reps[by_axis[&(si as usize)] as usize].len() as u64;
            for ri in 0..nreps {
                let base = ((ri * s + si) * n * b) as usize;
                if let Some(hole) = (0..(n * b) as usize).find(|&k| !filled[base + k]) {
                    let stim = &stim_names[by_axis[&(si as usize)] as usize];
                    return Err(IngestError::invalid(format!(
                        "file: no row for stimulus {stim:?}, repetition {}, neuron {:?}, time bin {}; \
                         set nan_policy=mask to store missing values as NaN",
                        reps[by_axis[&(si as usize)] as usize][ri as usize],
                        neuron_ids[hole / b as usize],
                        hole % b as usize
                    )));
                }
            }
        }
    }
    drop(filled);
    let nan_count = write_dense(&dense, &shape, OutType::F64, NanPolicy::Mask, sink)?;
    Ok(RecordingData {
        format: Format::Csv,
        trial_averaged: false,
        shape,
        dtype: OutType::F64,
        source_dtype: "text".into(),
        stimulus_index,
        neuron_ids,
        nan_count,
        bin_size: None,
        source: json!({"rows": rows.len(), "ragged_repetitions": reps.iter().any(|v| v.len() as u64 != r_max)}),
    })
}

fn read_nwb(
    path: &Path,
    opts: &RecordingOptions,
    set_ids: &[String],
    limits: &Limits,
    sink: File,
) -> Result<RecordingData> {
    let h5 = H5::open(path, limits)?;
    if !h5.has("/units/spike_times") {
        return Err(IngestError::invalid(
            "file: the NWB file has no Units table with spike times (/units/spike_times); \
             for a processed array set dataset to its path",
        ));
    }
    if !h5.has("/units/spike_times_index") {
        return Err(IngestError::invalid(
            "file: the NWB Units table has no spike_times_index",
        ));
    }
    let table = opts.intervals.as_deref().unwrap_or("trials");
    let base = format!("/intervals/{table}");
    if !h5.has(&format!("{base}/start_time")) {
        return Err(IngestError::invalid(format!(
            "intervals: the NWB file has no {table} table with start_time at {base}"
        )));
    }
    let column = opts.stimulus_column.as_deref().unwrap_or("stimulus_id");
    let col_path = format!("{base}/{column}");
    if !h5.has(&col_path) {
        return Err(IngestError::invalid(format!(
            "stimulus_column: the {table} table has no column {column:?} ({col_path})"
        )));
    }
    let w0 = opts.window_start.unwrap_or(0.0);
    let w1 = opts.window_end.ok_or_else(|| {
        IngestError::invalid(
            "window_end: required for NWB spike binning (seconds after each presentation's start)",
        )
    })?;
    if !(w0.is_finite() && w1.is_finite() && w1 > w0) {
        return Err(IngestError::invalid(format!(
            "window_end: must be after window_start ({w0}), got {w1}"
        )));
    }
    let bin = opts.bin_size.unwrap_or(w1 - w0);
    let nbins_f = (w1 - w0) / bin;
    let nbins = nbins_f.round();
    if bin.is_nan() || bin <= 0.0 || (nbins_f - nbins).abs() > 1e-6 || nbins < 1.0 {
        return Err(IngestError::invalid(format!(
            "bin_size: {bin} s does not divide the window [{w0}, {w1}) s into whole bins"
        )));
    }
    let b = nbins as u64;
    limits.check("time bins", b, limits.max_time_bins)?;

    let (_, spikes) = h5.read_f64("units", "/units/spike_times", limits)?;
    let (_, index) = h5.read_f64("units", "/units/spike_times_index", limits)?;
    let neuron_ids = if h5.has("/units/id") {
        h5.read_strings("units", "/units/id", limits)?
    } else {
        (0..index.len()).map(|i| i.to_string()).collect()
    };
    if neuron_ids.len() != index.len() {
        return Err(IngestError::invalid(format!(
            "units: {} ids but {} entries in spike_times_index",
            neuron_ids.len(),
            index.len()
        )));
    }
    let mut units: Vec<Vec<f64>> = Vec::with_capacity(index.len());
    let mut lo = 0usize;
    for (u, &end) in index.iter().enumerate() {
        let end = end as usize;
        if end < lo || end > spikes.len() {
            return Err(IngestError::invalid(format!(
                "units: spike_times_index[{u}] = {end} is out of order or past the {} spike times",
                spikes.len()
            )));
        }
        let mut t = spikes[lo..end].to_vec();
        if t.iter().any(|v| !v.is_finite()) {
            return Err(IngestError::invalid(format!(
                "units: unit {:?} has non-finite spike times",
                neuron_ids[u]
            )));
        }
        t.sort_by(f64::total_cmp);
        units.push(t);
        lo = end;
    }
    let (_, starts) = h5.read_f64("intervals", &format!("{base}/start_time"), limits)?;
    let stim_of = h5.read_strings("stimulus_column", &col_path, limits)?;
    if stim_of.len() != starts.len() {
        return Err(IngestError::invalid(format!(
            "stimulus_column: {} values but {} presentations in {base}/start_time",
            stim_of.len(),
            starts.len()
        )));
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    for s in &stim_of {
        *seen.entry(s.clone()).or_insert(0) += 1;
    }
    let (stimulus_index, axis) = present_in_set_order(set_ids, &seen)?;
    let r_max = seen.values().copied().max().unwrap_or(0) as u64;
    let (s, n) = (stimulus_index.len() as u64, units.len() as u64);
    let shape = if b > 1 {
        vec![r_max, s, n, b]
    } else {
        vec![r_max, s, n]
    };
    let shape = normalized_shape(&shape, limits)?;
    limits.check_bytes("shape", &shape, 8)?;
    let mut dense = vec![f64::NAN; (r_max * s * n * b) as usize];
    let mut occurrence: HashMap<&str, u64> = HashMap::new();
    for (t, (stim, &start)) in stim_of.iter().zip(&starts).enumerate() {
        if !start.is_finite() {
            return Err(IngestError::invalid(format!(
                "intervals: start_time[{t}] is not finite"
            )));
        }
        let rep = occurrence.entry(stim.as_str()).or_insert(0);
        let si = axis[stim] as u64;
        for (u, times) in units.iter().enumerate() {
            let mut prev = times.partition_point(|&x| x < start + w0);
            for k in 0..b {
                let edge = start + w0 + (k + 1) as f64 * bin;
                let next = times.partition_point(|&x| x < edge);
                dense[((((*rep * s) + si) * n + u as u64) * b + k) as usize] = (next - prev) as f64;
                prev = next;
            }
        }
        *rep += 1;
    }
    let nan_count = write_dense(&dense, &shape, OutType::F64, NanPolicy::Mask, sink)?;
    Ok(RecordingData {
        format: Format::Nwb,
        trial_averaged: false,
        shape,
        dtype: OutType::F64,
        source_dtype: "spike_times".into(),
        stimulus_index,
        neuron_ids,
        nan_count,
        bin_size: Some(bin),
        source: json!({"intervals": base, "stimulus_column": column, "window": [w0, w1], "bin_size": bin,
                       "presentations": starts.len(), "units": n}),
    })
}
