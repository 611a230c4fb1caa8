//! A mutation fuzzer for the ingest readers, on stable Rust (cargo-fuzz needs
//! nightly, which this project's machines cannot install). Each target
//! starts from a seed corpus of real files (the ingest fixtures), mutates
//! them (bit flips, interesting integers, inserted, deleted, duplicated and
//! spliced ranges, truncation) and feeds them to one reader with tight
//! limits. A panic, an input that runs longer than the hang limit, or an
//! allocation the limits should have prevented (the process dies) is a
//! finding: the input is saved under the crash dir and the run fails.
//!
//! Usage: neuralign-fuzz SEED_DIR CRASH_DIR SECONDS_PER_TARGET [TARGET...]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use neuralign_ingest::recording::{self, RecordingOptions};
use neuralign_ingest::stimuli::{self, StimulusKind, StimulusOptions};
use neuralign_ingest::{Format, Limits};

/// One input longer than this is a hang.
const HANG: Duration = Duration::from_secs(20);

struct Target {
    name: &'static str,
    /// Seed files by extension.
    seeds: &'static [&'static str],
    run: fn(&Path, &Path, &Limits),
}

fn ids() -> Vec<String> {
    (0..12)
        .map(|i| format!("s{i:02}"))
        .chain((0..12).map(|i| i.to_string()))
        .collect()
}

fn stim(fmt: Format, opts: StimulusOptions) -> impl Fn(&Path, &Path, &Limits) {
    move |i, o, l| {
        let _ = stimuli::read(
            i,
            &StimulusOptions {
                format: Some(fmt),
                ..opts.clone()
            },
            l,
            o,
        );
    }
}

fn rec(fmt: Format, opts: RecordingOptions) -> impl Fn(&Path, &Path, &Limits) {
    move |i, o, l| {
        let _ = recording::read(
            i,
            &RecordingOptions {
                format: Some(fmt),
                ..opts.clone()
            },
            &ids(),
            l,
            o,
        );
    }
}

const TARGETS: &[Target] = &[
    Target {
        name: "npy_stimuli",
        seeds: &["npy"],
        run: |i, o, l| {
            stim(
                Format::Npy,
                StimulusOptions {
                    kind: Some(StimulusKind::Images),
                    ..Default::default()
                },
            )(i, o, l)
        },
    },
    Target {
        name: "npy_recording",
        seeds: &["npy"],
        run: |i, o, l| rec(Format::Npy, RecordingOptions::default())(i, o, l),
    },
    Target {
        name: "npz",
        seeds: &["npz"],
        run: |i, o, l| {
            stim(Format::Npz, StimulusOptions::default())(i, o, l);
            rec(
                Format::Npz,
                RecordingOptions {
                    nan_policy: Some(recording::NanPolicy::Mask),
                    ..Default::default()
                },
            )(i, o, l);
        },
    },
    Target {
        name: "zip_manifest",
        seeds: &["zip"],
        run: |i, o, l| {
            stim(Format::Zip, StimulusOptions::default())(i, o, l);
            stim(
                Format::Zip,
                StimulusOptions {
                    resize: Some("5x4".into()),
                    ..Default::default()
                },
            )(i, o, l);
        },
    },
    Target {
        name: "csv",
        seeds: &["csv"],
        run: |i, o, l| {
            rec(Format::Csv, RecordingOptions::default())(i, o, l);
            rec(
                Format::Csv,
                RecordingOptions {
                    nan_policy: Some(recording::NanPolicy::Mask),
                    ..Default::default()
                },
            )(i, o, l);
        },
    },
    Target {
        name: "hdf5",
        seeds: &["h5"],
        run: |i, o, l| {
            stim(
                Format::Hdf5,
                StimulusOptions {
                    dataset: Some("/stimuli/images".into()),
                    ids_dataset: Some("/stimuli/ids".into()),
                    ..Default::default()
                },
            )(i, o, l);
            rec(
                Format::Hdf5,
                RecordingOptions {
                    dataset: Some("/neural/counts".into()),
                    stimulus_ids_dataset: Some("/neural/stimulus_ids".into()),
                    ..Default::default()
                },
            )(i, o, l);
        },
    },
    Target {
        name: "nwb",
        seeds: &["nwb"],
        run: |i, o, l| {
            rec(
                Format::Nwb,
                RecordingOptions {
                    window_end: Some(0.2),
                    bin_size: Some(0.05),
                    ..Default::default()
                },
            )(i, o, l);
            rec(
                Format::Nwb,
                RecordingOptions {
                    dataset: Some("/processing/ecephys/mean_rates/data".into()),
                    ..Default::default()
                },
            )(i, o, l);
        },
    },
];

/// xorshift64*: fast, seeded, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX,
    1 << 40,
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let n = data.len();
        match rng.below(8) {
            0 if n > 0 => {
                let i = rng.below(n);
                data[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                data[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            2 if n >= 8 => {
                let i = rng.below(n - 7);
                let w = [1usize, 2, 4, 8][rng.below(4)];
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                data[i..i + w].copy_from_slice(&v[..w]);
            }
            3 if n > 0 => {
                let at = rng.below(n);
                let len = 1 + rng.below(64.min(n - at));
                data.drain(at..at + len);
            }
            4 => {
                let at = rng.below(n + 1);
                let len = 1 + rng.below(64);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            5 if n > 0 => {
                let keep = rng.below(n);
                data.truncate(keep);
            }
            6 if n > 1 => {
                let from = rng.below(n);
                let len = 1 + rng.below(256.min(n - from));
                let chunk = data[from..from + len].to_vec();
                let at = rng.below(n);
                data.splice(at..at, chunk);
            }
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() && !data.is_empty() {
                    let cut = rng.below(data.len());
                    let from = rng.below(other.len());
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
    }
}

fn corpus(dir: &Path, exts: &[&str]) -> Vec<Vec<u8>> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("seed dir {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
        })
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .filter(|(_, b)| b.len() < 4 << 20)
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, b)| b).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: neuralign-fuzz SEED_DIR CRASH_DIR SECONDS_PER_TARGET [TARGET...]");
        std::process::exit(2);
    }
    let (seeds, crashes) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let secs: u64 = args[3].parse().expect("SECONDS_PER_TARGET");
    let only: Vec<&str> = args[4..].iter().map(String::as_str).collect();
    std::fs::create_dir_all(&crashes).unwrap();
    let work = std::env::temp_dir().join(format!("neuralign-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (input, output) = (work.join("input"), work.join("output"));
    let limits = Limits {
        max_decoded_bytes: 64 << 20,
        max_stimuli: 100_000,
        max_neurons: 100_000,
        max_repetitions: 1000,
        max_time_bins: 1000,
        max_image_side: 1024,
        max_archive_entries: 10_000,
    };
    // Quiet the default hook: panics are reported once, below.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    {
        let (started, input, crashes) = (started.clone(), input.clone(), crashes.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let s = started.load(Ordering::SeqCst);
            if s != 0 && epoch.elapsed().as_secs().saturating_sub(s) > HANG.as_secs() {
                let dest = crashes.join("hang");
                let _ = std::fs::copy(&input, &dest);
                eprintln!(
                    "fuzz: an input ran over {HANG:?}; saved as {}",
                    dest.display()
                );
                std::process::exit(1);
            }
        });
    }
    let mut failed = false;
    for t in TARGETS
        .iter()
        .filter(|t| only.is_empty() || only.contains(&t.name))
    {
        let corpus = corpus(&seeds, t.seeds);
        assert!(
            !corpus.is_empty(),
            "no seeds for {} in {}",
            t.name,
            seeds.display()
        );
        let mut rng =
            Rng(0x9E37_79B9_7F4A_7C15 ^ t.name.len() as u64 ^ epoch.elapsed().as_nanos() as u64);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let (mut runs, mut found) = (0u64, 0u32);
        while Instant::now() < deadline {
            let mut data = corpus[rng.below(corpus.len())].clone();
            if runs > 0 {
                mutate(&mut rng, &mut data, &corpus);
            }
            std::fs::write(&input, &data).unwrap();
            started.store(epoch.elapsed().as_secs().max(1), Ordering::SeqCst);
            let r = catch_unwind(AssertUnwindSafe(|| (t.run)(&input, &output, &limits)));
            started.store(0, Ordering::SeqCst);
            runs += 1;
            if let Err(p) = r {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let dest = crashes.join(format!("{}-{runs}", t.name));
                std::fs::write(&dest, &data).unwrap();
                eprintln!(
                    "fuzz: {}: panic ({msg}); input saved as {}",
                    t.name,
                    dest.display()
                );
                found += 1;
                failed = true;
                if found >= 5 {
                    break;
                }
            }
        }
        println!(
            "fuzz: {:<14} {runs:>8} inputs in {secs} s, {found} panics",
            t.name
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    if failed {
        std::process::exit(1);
    }
}
