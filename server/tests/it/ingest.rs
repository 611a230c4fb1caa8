//! Brain data in, end to end: files written by numpy, h5py, pynwb and
//! Pillow (`fixtures/ingest_fixtures.py`) uploaded over HTTP and gRPC, the
//! stored normalized arrays downloaded and compared with the arrays the
//! fixture script computed independently; reliability against its numpy
//! formula; bad input refused with a clear 4xx and nothing stored;
//! benchmarks created, versioned, published and deprecated.

use std::collections::HashMap;
use std::path::PathBuf;

use neuralign_proto::v1;
use serde_json::{json, Value};
use sqlx::PgPool;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::common::{self, TestServer};

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/fixtures/ingest"
    ))
}

fn cases() -> Value {
    let p = dir().join("cases.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run scripts/fixtures.sh (scripts/test.sh does)",
            p.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn file(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A float `.npy` file parsed independently of the server's readers.
struct Npy {
    shape: Vec<usize>,
    values: Vec<f64>,
}

fn parse_npy(b: &[u8]) -> Npy {
    assert_eq!(&b[..6], b"\x93NUMPY");
    let len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + len]).unwrap();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &b[10 + len..];
    let values = match descr {
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<f8" => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        d => panic!("unexpected dtype {d}"),
    };
    Npy { shape, values }
}

fn query(params: &Value) -> String {
    params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "&{k}={}",
                        v.as_str()
                            .map_or_else(|| v.to_string(), str::to_string)
                            .replace('/', "%2F")
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default()
}

async fn post(srv: &TestServer, key: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = srv
        .client
        .post(srv.url(path))
        .bearer_auth(key)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(srv: &TestServer, key: &str, path: &str) -> (u16, Value) {
    let r = srv
        .client
        .get(srv.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn download(srv: &TestServer, key: &str, array_id: &str) -> Npy {
    let r = srv
        .client
        .get(srv.url(&format!("/v1/arrays/{array_id}/data")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    parse_npy(&r.bytes().await.unwrap())
}

fn assert_same(what: &str, got: &Npy, want: &Npy, tolerance: f64) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    for (i, (g, w)) in got.values.iter().zip(&want.values).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if tolerance == 0.0 {
            g == w
        } else {
            (g - w).abs() <= tolerance
        };
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

async fn all_stimuli(srv: &TestServer, key: &str, set: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (s, v) = get(
            srv,
            key,
            &format!("/v1/stimulus-sets/{set}/stimuli?limit=5{token}"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        out.extend(v["stimuli"].as_array().unwrap().iter().cloned());
        match v["next_page_token"].as_str() {
            Some(t) => token = format!("&page_token={t}"),
            None => return out,
        }
    }
}

/// Uploads every fixture stimulus set; returns name → set id.
async fn upload_sets(srv: &TestServer, key: &str) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for c in cases()["stimulus_sets"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (s, v) = post(
            srv,
            key,
            &format!("/v1/stimulus-sets?name=t{}", query(&c["params"])),
            file(c["file"].as_str().unwrap()),
        )
        .await;
        assert_eq!(s, 201, "{name}: {v}");
        ids.insert(name.to_string(), v["id"].as_str().unwrap().to_string());
    }
    ids
}

#[sqlx::test(migrations = "../migrations")]
async fn stimulus_sets_round_trip_from_every_format(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("visionlab").await;
    for c in cases()["stimulus_sets"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (s, v) = post(
            &srv,
            &key,
            &format!("/v1/stimulus-sets?name=x{}", query(&c["params"])),
            file(c["file"].as_str().unwrap()),
        )
        .await;
        assert_eq!(s, 201, "{name}: {v}");
        assert_eq!(v["kind"], c["kind"], "{name}");
        if let Some(l) = c["layout"].as_str() {
            assert_eq!(v["source"]["layout"]["source"], l, "{name}: {v}");
        }
        let want = parse_npy(&file(&format!(
            "expected/{}",
            c["expected"].as_str().unwrap()
        )));
        let got = download(&srv, &key, v["array_id"].as_str().unwrap()).await;
        assert_same(name, &got, &want, c["tolerance"].as_f64().unwrap());
        let stimuli = all_stimuli(&srv, &key, v["id"].as_str().unwrap()).await;
        let ids: Vec<&str> = stimuli
            .iter()
            .map(|s| s["stimulus_id"].as_str().unwrap())
            .collect();
        let want_ids: Vec<&str> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(ids, want_ids, "{name}");
        if let Some(labels) = c["labels"].as_array() {
            let got: Vec<&Value> = stimuli.iter().map(|s| &s["label"]).collect();
            assert_eq!(got, labels.iter().collect::<Vec<_>>(), "{name}");
        }
        if let Some(extra) = c["extra"].as_object() {
            for (col, vals) in extra {
                let got: Vec<&Value> = stimuli.iter().map(|s| &s["extra"][col]).collect();
                assert_eq!(
                    got,
                    vals.as_array().unwrap().iter().collect::<Vec<_>>(),
                    "{name}: {col}"
                );
            }
        }
        let images = c["kind"] == "images";
        assert!(
            stimuli.iter().all(|s| s["has_thumbnail"] == images),
            "{name}"
        );
        if images {
            let r = srv
                .client
                .get(srv.url(&format!(
                    "/v1/stimulus-sets/{}/stimuli/{}/thumbnail",
                    v["id"].as_str().unwrap(),
                    ids[0]
                )))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "image/png");
            assert!(
                r.bytes().await.unwrap().starts_with(b"\x89PNG"),
                "{name}: thumbnail is a PNG"
            );
        }
    }
    // Images of different sizes: refused unless the request says how to resize.
    let zip = mixed_size_zip();
    let (s, v) = post(&srv, &key, "/v1/stimulus-sets", zip.clone()).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("resize=WxH"), "{v}");
    let (s, v) = post(
        &srv,
        &key,
        "/v1/stimulus-sets?resize=6x4&resize_filter=nearest",
        zip,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["shape"], json!([2, 3, 4, 6]));
    assert_eq!(v["source"]["resized_to"], "6x4");
    srv.stop().await;
}

/// Two PNGs of different sizes, written with the zip and image crates the
/// way a lab's script would.
fn mixed_size_zip() -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("manifest.csv", opts).unwrap();
    z.write_all(b"stimulus_id,filename\na,a.png\nb,b.png\n")
        .unwrap();
    for (name, w, h) in [("a.png", 10u32, 8u32), ("b.png", 12, 9)] {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 7]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        z.start_file(name, opts).unwrap();
        z.write_all(png.get_ref()).unwrap();
    }
    z.finish().unwrap();
    buf.into_inner()
}

#[sqlx::test(migrations = "../migrations")]
async fn recordings_round_trip_aligned_with_reliability(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("v1lab").await;
    let sets = upload_sets(&srv, &key).await;
    for c in cases()["recordings"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let set = &sets[c["set"].as_str().unwrap()];
        let (s, v) = post(
            &srv,
            &key,
            &format!("/v1/recordings?name=r&stimulus_set={set}&region=V1&species=macaque&modality=spikes{}", query(&c["params"])),
            file(c["file"].as_str().unwrap()),
        )
        .await;
        assert_eq!(s, 201, "{name}: {v}");
        assert_eq!(v["region"], "V1");
        assert_eq!(v["modality"], "spikes");
        let want = parse_npy(&file(&format!(
            "expected/{}",
            c["expected"].as_str().unwrap()
        )));
        let got = download(&srv, &key, v["array_id"].as_str().unwrap()).await;
        assert_same(name, &got, &want, 0.0);
        assert_eq!(v["nan_count"], c["nan_count"], "{name}");
        let id = v["id"].as_str().unwrap();
        let (_, st) = get(&srv, &key, &format!("/v1/recordings/{id}/stimuli")).await;
        assert_eq!(st["stimulus_ids"], c["stimulus_ids"], "{name}");
        let (_, ns) = get(&srv, &key, &format!("/v1/recordings/{id}/neurons")).await;
        let neurons = ns["neurons"].as_array().unwrap();
        if let Some(ids) = c["neuron_ids"].as_array() {
            let got: Vec<&Value> = neurons.iter().map(|n| &n["neuron_id"]).collect();
            assert_eq!(got, ids.iter().collect::<Vec<_>>(), "{name}");
        }
        let want_rel = c["reliability"].as_array().unwrap();
        assert_eq!(neurons.len(), want_rel.len(), "{name}");
        for (n, w) in neurons.iter().zip(want_rel) {
            match (n["reliability"].as_f64(), w.as_f64()) {
                (None, None) => {}
                (Some(g), Some(w)) => {
                    assert!((g - w).abs() < 1e-9, "{name}: reliability {g} vs numpy {w}")
                }
                (g, w) => panic!("{name}: reliability {g:?} vs numpy {w:?}"),
            }
        }
        if want_rel.iter().any(|r| r.is_f64()) {
            assert!(v["reliability"]["median"].is_f64(), "{name}: {v}");
        }
    }
    let (s, v) = get(&srv, &key, "/v1/recordings?limit=3").await;
    assert_eq!(s, 200);
    assert_eq!(v["recordings"].as_array().unwrap().len(), 3);
    assert!(v["next_page_token"].is_string());
    srv.stop().await;
}

async fn stored(srv: &TestServer) -> Vec<i64> {
    let mut v = Vec::new();
    for t in ["blobs", "arrays", "stimulus_sets", "stimuli", "recordings"] {
        v.push(srv.count(t).await);
    }
    v
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_input_is_refused_and_leaves_nothing(pool: PgPool) {
    let srv = common::start(&pool, |c| c.service.max_decoded_bytes = 16 << 20).await;
    let (_, key) = srv.lab("badlab").await;
    let (s, set) = post(&srv, &key, "/v1/stimulus-sets", file("stim.npz")).await;
    assert_eq!(s, 201, "{set}");
    let set = set["id"].as_str().unwrap().to_string();
    let npy = file("rec.npy");
    let h5 = file("rec.h5");
    let stim = |q: &str| format!("/v1/stimulus-sets?{q}");
    let rec = |q: &str| format!("/v1/recordings?stimulus_set={set}&{q}");
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (stim(""), file("bad_complex.npy"), 400, "dtype \"<c16\""),
        (
            stim(""),
            file("stim_nhwc_u8.npy")[..300].to_vec(),
            400,
            "truncated",
        ),
        (
            stim(""),
            file("bad_dup_ids.npz"),
            400,
            "duplicate id(s): \"s00\"",
        ),
        (
            stim(""),
            file("bomb.zip"),
            413,
            "decompress to more than the limit",
        ),
        (stim(""), file("traversal.zip"), 400, "unsafe path"),
        (
            stim(""),
            file("undecodable.zip"),
            400,
            "images[\"b.png\"]: cannot decode",
        ),
        (
            stim("kind=banana"),
            file("stim_seq.npy"),
            400,
            "kind: unknown value \"banana\"",
        ),
        (
            stim(""),
            file("stim_seq.npy"),
            400,
            "set kind=images or kind=sequences",
        ),
        (
            stim("format=hdf5&dataset=%2Fnope"),
            file("stim.h5"),
            400,
            "dataset: no dataset at \"/nope\"",
        ),
        (
            stim("format=hdf5"),
            file("stim.h5")[..2000].to_vec(),
            400,
            "HDF5",
        ),
        (stim(""), file("stim.npz")[..500].to_vec(), 400, "file"),
        (stim(""), Vec::new(), 400, "empty"),
        (
            stim("format=zip"),
            half(file("images_png.zip")),
            400,
            "not a readable zip archive",
        ),
        (
            rec("window_end=0.2"),
            file("rec.nwb")[..3000].to_vec(),
            400,
            "file: ",
        ),
        (
            rec(""),
            common::npy("<f4", &[4, 0, 9], &[]),
            400,
            "zero stimuli",
        ),
        (
            rec(""),
            file("rec_nan.npy"),
            400,
            "values: NaN at repetition 2, stimulus 5, neuron 3; set nan_policy=mask",
        ),
        (
            rec("nan_policy=mask"),
            file("rec_inf.npy"),
            400,
            "infinities are never accepted",
        ),
        (
            rec(""),
            file("rec_wrong_stimuli.npy"),
            400,
            "11 stimuli on its stimulus axis but the stimulus set has 12",
        ),
        (rec(""), file("rec_zero_neurons.npy"), 400, "zero neurons"),
        (rec(""), npy[..npy.len() - 7].to_vec(), 400, "truncated"),
        (
            rec("format=hdf5&dataset=%2Fneural%2Fmissing"),
            h5,
            400,
            "no dataset at \"/neural/missing\"",
        ),
        (
            rec("window_end=0.2"),
            file("nwb_no_units.nwb"),
            400,
            "no Units table",
        ),
        (
            rec("window_end=0.2"),
            file("nwb_no_trials.nwb"),
            400,
            "no trials table",
        ),
        (rec(""), file("rec.nwb"), 400, "window_end: required"),
        (
            rec("window_end=0.2&bin_size=0.03"),
            file("rec.nwb"),
            400,
            "bin_size",
        ),
        (
            rec("format=csv"),
            b"stimulus_id,neuron_id,repetition,value\ns00,n1,0,1.5\ns00,n1,0,2\n".to_vec(),
            400,
            "line 3: a second value",
        ),
        (
            rec("format=csv"),
            b"stimulus_id,neuron_id,repetition,value\nnope,n1,0,1.5\n".to_vec(),
            400,
            "not in the stimulus set: \"nope\"",
        ),
        (
            rec("format=csv"),
            b"stimulus_id,neuron_id,repetition,value\ns00,n1,0,abc\n".to_vec(),
            400,
            "line 2: value \"abc\"",
        ),
        (
            rec("format=csv"),
            b"stimulus_id,neuron_id,value\ns00,n1,1\n".to_vec(),
            400,
            "needs the columns",
        ),
        (
            rec("format=csv"),
            b"stimulus_id,neuron_id,repetition,value\ns00,n1,0,1\ns00,n2,1,1\n".to_vec(),
            400,
            "no row for stimulus \"s00\"",
        ),
        (
            rec("modality=telepathy"),
            npy.clone(),
            400,
            "modality: unknown value",
        ),
        (
            format!("/v1/recordings?stimulus_set={}", uuid_nil()),
            npy.clone(),
            400,
            "not a stimulus set of this lab",
        ),
        (
            "/v1/recordings?".into(),
            npy.clone(),
            400,
            "stimulus_set: required",
        ),
        (rec("colour=blue"), npy, 400, "unknown field `colour`"),
    ];
    let before = stored(&srv).await;
    for (path, body, status, fragment) in cases {
        let (s, v) = post(&srv, &key, &path, body).await;
        assert_eq!(s, status, "{path}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(fragment),
            "{path}: {msg:?} should mention {fragment:?}"
        );
        assert!(v["code"].is_string(), "{path}: {v}");
        assert_eq!(stored(&srv).await, before, "{path}: nothing stored");
    }
    srv.stop().await;
}

fn half(mut b: Vec<u8>) -> Vec<u8> {
    b.truncate(b.len() / 2);
    b
}

fn uuid_nil() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}

#[sqlx::test(migrations = "../migrations")]
async fn spooled_uploads_are_removed_whatever_the_outcome(pool: PgPool) {
    let spool = std::env::temp_dir().join(format!("neuralign-spool-test-{}", std::process::id()));
    let sp = spool.clone();
    let srv = common::start(&pool, move |c| c.service.spool_dir = Some(sp)).await;
    let (_, key) = srv.lab("spoollab").await;
    let (s, _) = post(&srv, &key, "/v1/stimulus-sets", file("images_png.zip")).await;
    assert_eq!(s, 201);
    let (s, _) = post(&srv, &key, "/v1/stimulus-sets", file("undecodable.zip")).await;
    assert_eq!(s, 400);
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "spool dir still holds {left:?}");
    srv.stop().await;
    let _ = std::fs::remove_dir_all(spool);
}

async fn benchmark(srv: &TestServer, key: &str, body: Value) -> (u16, Value) {
    let r = srv
        .client
        .post(srv.url("/v1/benchmarks"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

async fn act(
    srv: &TestServer,
    key: &str,
    reference: &str,
    what: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = srv
        .client
        .post(srv.url(&format!(
            "/v1/benchmarks/{}/{what}",
            reference.replace('/', "%2F")
        )))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

#[sqlx::test(migrations = "../migrations")]
async fn benchmarks_are_versioned_published_and_deprecated(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("owners").await;
    let (_, other) = srv.lab("others").await;
    let (_, set) = post(&srv, &key, "/v1/stimulus-sets", file("stim.npz")).await;
    let set = set["id"].as_str().unwrap();
    let (_, rec) = post(
        &srv,
        &key,
        &format!("/v1/recordings?stimulus_set={set}"),
        file("rec.npy"),
    )
    .await;
    let rec_id = rec["id"].as_str().unwrap();
    let (_, avg) = post(
        &srv,
        &key,
        &format!("/v1/recordings?stimulus_set={set}"),
        file("rec_avg.npy"),
    )
    .await;

    let (_, ns) = get(&srv, &key, &format!("/v1/recordings/{rec_id}/neurons")).await;
    let rel: Vec<f64> = ns["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["reliability"].as_f64().unwrap())
        .collect();
    let mut sorted = rel.clone();
    sorted.sort_by(f64::total_cmp);
    let threshold = sorted[sorted.len() / 2];
    let kept = rel.iter().filter(|&&r| r >= threshold).count() as u64;

    let recipe = json!({
        "name": "v1-ridge", "description": "ridge on the fixture V1 recording", "recording": rec_id,
        "metric": {"id": "ridge", "options": {"folds": 3}},
        "ceiling": {"method": "split_half", "splits": 20, "seed": 1, "normalization": "r2_over_c"},
        "neuron_filter": {"min_reliability": threshold},
        "splits": {"seed": 7}
    });
    let (s, b1) = benchmark(&srv, &key, recipe.clone()).await;
    assert_eq!(s, 201, "{b1}");
    assert_eq!(b1["version"], 1);
    assert_eq!(b1["reference"], "owners/v1-ridge@1");
    assert_eq!(b1["neurons_kept"], kept);
    assert_eq!(b1["metric"]["options"]["seed"], 7);
    assert_eq!(b1["public"], false);
    let (s, b2) = benchmark(&srv, &key, recipe.clone()).await;
    assert_eq!(s, 201);
    assert_eq!(b2["version"], 2);

    // Resolution: exact version, newest, id.
    let (_, g) = get(&srv, &key, "/v1/benchmarks/owners%2Fv1-ridge@1").await;
    assert_eq!(g["id"], b1["id"]);
    let (_, g) = get(&srv, &key, "/v1/benchmarks/owners%2Fv1-ridge").await;
    assert_eq!(g["version"], 2);
    // Private: another lab sees nothing until it is published.
    let (s, _) = get(
        &srv,
        &other,
        &format!("/v1/benchmarks/{}", b1["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 404);
    let (_, l) = get(&srv, &other, "/v1/benchmarks").await;
    assert_eq!(l["benchmarks"].as_array().unwrap().len(), 0);
    let (s, v) = act(&srv, &other, b1["id"].as_str().unwrap(), "publish", None).await;
    assert_eq!(s, 404, "{v}");
    let (s, p) = act(&srv, &key, "owners/v1-ridge@1", "publish", None).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["public"], true);
    assert!(p["published_at"].is_string());
    let (s, g) = get(&srv, &other, "/v1/benchmarks/owners%2Fv1-ridge@1").await;
    assert_eq!(s, 200, "{g}");
    let (_, l) = get(&srv, &other, "/v1/benchmarks?scope=public").await;
    assert_eq!(l["benchmarks"].as_array().unwrap().len(), 1);
    let (s, v) = act(&srv, &other, "owners/v1-ridge@1", "deprecate", None).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["code"], "permission_denied");

    // Deprecating the newest makes the bare name resolve to the one before.
    let (s, d) = act(
        &srv,
        &key,
        "owners/v1-ridge@2",
        "deprecate",
        Some(json!({"reason": "wrong folds"})),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["deprecation_reason"], "wrong folds");
    let (_, g) = get(&srv, &key, "/v1/benchmarks/owners%2Fv1-ridge").await;
    assert_eq!(g["version"], 1);
    let (_, l) = get(&srv, &key, "/v1/benchmarks?name=v1-ridge").await;
    assert_eq!(l["benchmarks"].as_array().unwrap().len(), 1);
    let (_, l) = get(
        &srv,
        &key,
        "/v1/benchmarks?name=v1-ridge&include_deprecated=true",
    )
    .await;
    assert_eq!(l["benchmarks"].as_array().unwrap().len(), 2);
    let (s, v) = act(&srv, &key, "owners/v1-ridge@2", "publish", None).await;
    assert_eq!(s, 409, "{v}");

    // Recipes that could not run are refused at creation.
    let bad = |patch: Value| {
        let mut r = recipe.clone();
        for (k, v) in patch.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    for (patch, fragment) in [
        (json!({"name": "no spaces"}), "name:"),
        (json!({"metric": "banana"}), "unknown metric id \"banana\""),
        (
            json!({"splits": {"explicit": [{"train": [0, 1, 2], "test": [40]}]}}),
            "index 40 is out of range for 12 stimuli",
        ),
        (
            json!({"metric": "rsa", "splits": {"seed": 1}}),
            "does not split its stimuli",
        ),
        (
            json!({"neuron_filter": {"min_reliability": 1.5}}),
            "no neuron of 9 reaches 1.5",
        ),
        (
            json!({"recording": avg["id"], "neuron_filter": null}),
            "needs at least 2 repetitions",
        ),
        (
            json!({"recording": uuid_nil()}),
            "not a recording of this lab",
        ),
    ] {
        let (s, v) = benchmark(&srv, &key, bad(patch.clone())).await;
        assert_eq!(s, 400, "{patch}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(fragment),
            "{patch}: {v}"
        );
    }
    assert_eq!(srv.count("benchmarks").await, 2);
    srv.stop().await;
}

type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

#[sqlx::test(migrations = "../migrations")]
async fn brain_data_over_grpc(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("grpclab").await;
    let channel = Channel::from_shared(srv.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let k = key.clone();
    let auth: Auth = Box::new(move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {k}")).unwrap(),
        );
        Ok(req)
    });
    let mut data =
        v1::data_service_client::DataServiceClient::with_interceptor(channel.clone(), auth);
    let k = key.clone();
    let auth: Auth = Box::new(move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {k}")).unwrap(),
        );
        Ok(req)
    });
    let mut benches =
        v1::benchmark_service_client::BenchmarkServiceClient::with_interceptor(channel, auth);

    let bytes = file("images_png.zip");
    let mut msgs: Vec<v1::UploadStimulusSetRequest> = bytes
        .chunks(4096)
        .map(|c| v1::UploadStimulusSetRequest {
            options: None,
            data: c.to_vec().into(),
        })
        .collect();
    msgs[0].options = Some(v1::StimulusSetOptions {
        name: "png".into(),
        ..Default::default()
    });
    let set = data
        .upload_stimulus_set(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.shape, vec![12, 3, 8, 10]);
    assert_eq!(set.extra_columns, vec!["category".to_string()]);
    let page = data
        .list_stimuli(v1::ListStimuliRequest {
            stimulus_set_id: set.id.clone(),
            limit: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.stimuli.len(), 2);
    assert_eq!(page.stimuli[1].extra["category"], "group1");
    let thumb = data
        .get_thumbnail(v1::GetThumbnailRequest {
            stimulus_set_id: set.id.clone(),
            stimulus_id: "s03".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(thumb.png.starts_with(b"\x89PNG"));

    let bytes = file("rec_long.csv");
    let mut msgs: Vec<v1::UploadRecordingRequest> = bytes
        .chunks(1000)
        .map(|c| v1::UploadRecordingRequest {
            options: None,
            data: c.to_vec().into(),
        })
        .collect();
    msgs[0].options = Some(v1::RecordingOptions {
        stimulus_set: set.id.clone(),
        format: "csv".into(),
        region: "IT".into(),
        ..Default::default()
    });
    let rec = data
        .upload_recording(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rec.shape, vec![3, 10, 5, 2]);
    assert_eq!(rec.region, "IT");
    assert!(rec.nan_count > 0, "ragged repetitions are NaN");
    let neurons = data
        .list_neurons(v1::GetByIdRequest { id: rec.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(neurons.neurons.len(), 5);

    // A bad upload maps to INVALID_ARGUMENT with the field in the message.
    let e = data
        .upload_recording(futures::stream::iter(vec![v1::UploadRecordingRequest {
            options: Some(v1::RecordingOptions {
                stimulus_set: set.id.clone(),
                nan_policy: "sometimes".into(),
                ..Default::default()
            }),
            data: file("rec.npy").into(),
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("nan_policy:"), "{}", e.message());

    let b = benches
        .create_benchmark(v1::CreateBenchmarkRequest {
            name: "it-rsa".into(),
            recording: rec.id.clone(),
            metric: Some(v1::MetricRequest {
                id: "rsa".into(),
                options_json: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.reference, "grpclab/it-rsa@1");
    let p = benches
        .publish_benchmark(v1::BenchmarkRef {
            reference: b.reference.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p.public);
    let l = benches
        .list_benchmarks(v1::ListBenchmarksRequest {
            scope: "public".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.benchmarks.len(), 1);
    let e = benches
        .get_benchmark(v1::BenchmarkRef {
            reference: "grpclab/it-rsa@9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    srv.stop().await;
}
