//! Built-in architectures: every layer addressable with the shapes the spec
//! implies, units wired as the formulas say, weights reproducible from the
//! seed, checkpoints that round-trip.

use neuralign_core::architecture::{LifParams, ModelSpec};
use neuralign_engine::models::builtin::BuiltinModel;
use neuralign_engine::models::units::{divisive, lif_rate};
use serde_json::json;
use tch::{Device, Kind, Tensor};

fn spec(v: serde_json::Value) -> ModelSpec {
    ModelSpec::parse(v).unwrap()
}

fn shapes(m: &BuiltinModel, x: &Tensor) -> Vec<(String, Vec<i64>)> {
    m.forward_layers(x)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect()
}

#[test]
fn cnn_layers_are_named_and_shaped_and_units_follow_the_formulas() {
    let s = spec(json!({
        "architecture": {"type": "cnn", "channels": 3, "height": 16, "width": 16,
          "blocks": [
            {"channels": 6, "pool": {"kind": "max"}, "unit": {"activation": {"lif_rate": {"smoothing": 0.0}}, "norm": {"divisive": {"sigma": 0.5}}}},
            {"channels": 8, "stride": 2, "unit": {"activation": "relu", "norm": "batch"}},
            {"channels": 4, "unit": {"activation": "tanh", "norm": "layer"}}],
          "global_pool": "avg"},
        "seed": 11
    }));
    let m = BuiltinModel::new(&s, Device::Cpu).unwrap();
    let x = Tensor::rand([5, 3, 16, 16], (Kind::Float, Device::Cpu));
    let got = shapes(&m, &x);
    let want: Vec<(String, Vec<i64>)> = [
        ("conv1", vec![5, 6, 16, 16]),
        ("norm1", vec![5, 6, 16, 16]),
        ("act1", vec![5, 6, 16, 16]),
        ("pool1", vec![5, 6, 8, 8]),
        ("conv2", vec![5, 8, 4, 4]),
        ("norm2", vec![5, 8, 4, 4]),
        ("act2", vec![5, 8, 4, 4]),
        ("conv3", vec![5, 4, 4, 4]),
        ("norm3", vec![5, 4, 4, 4]),
        ("act3", vec![5, 4, 4, 4]),
        ("gpool", vec![5, 4]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(got, want);
    let layers = m.forward_layers(&x).unwrap();
    let get = |n: &str| layers.iter().find(|l| l.0 == n).unwrap().1.shallow_clone();
    let dn = divisive(&get("conv1"), 0.5, 2.0, None);
    assert!((get("norm1") - &dn).abs().max().double_value(&[]) < 1e-5);
    let lif = lif_rate(
        &dn,
        &LifParams {
            smoothing: 0.0,
            ..LifParams::default()
        },
    );
    assert!((get("act1") - lif).abs().max().double_value(&[]) < 1e-3);
    assert!(
        (get("act3") - get("norm3").tanh())
            .abs()
            .max()
            .double_value(&[])
            < 1e-6
    );
    assert!(
        (get("gpool") - get("act3").mean_dim([2i64, 3].as_slice(), false, Kind::Float))
            .abs()
            .max()
            .double_value(&[])
            < 1e-6
    );
}

#[test]
fn every_architecture_builds_and_runs() {
    let cases = [
        (
            json!({"type": "mlp", "input": 7, "hidden": [9, 4], "unit": {"activation": "sigmoid", "norm": {"divisive": {"pool": {"gaussian": {"width": 1.5}}}}}}),
            Tensor::rand([3, 7], (Kind::Float, Device::Cpu)),
            vec![
                ("fc1", vec![3, 9]),
                ("norm1", vec![3, 9]),
                ("act1", vec![3, 9]),
                ("fc2", vec![3, 4]),
                ("norm2", vec![3, 4]),
                ("act2", vec![3, 4]),
            ],
        ),
        (
            json!({"type": "recurrent", "cell": "lstm", "input": 5, "hidden": 6, "layers": 2}),
            Tensor::rand([3, 4, 5], (Kind::Float, Device::Cpu)),
            vec![("lstm1", vec![3, 4, 6]), ("lstm2", vec![3, 4, 6])],
        ),
        (
            json!({"type": "recurrent", "cell": "gru", "input": 5, "hidden": 6}),
            Tensor::rand([3, 4, 5], (Kind::Float, Device::Cpu)),
            vec![("gru1", vec![3, 4, 6])],
        ),
        (
            json!({"type": "recurrent", "cell": "rnn", "input": 5, "hidden": 6}),
            Tensor::rand([3, 4, 5], (Kind::Float, Device::Cpu)),
            vec![("rnn1", vec![3, 4, 6])],
        ),
        (
            json!({"type": "attention", "input": 5, "dim": 8, "heads": 2, "blocks": 2, "unit": {"norm": "layer"}}),
            Tensor::rand([3, 4, 5], (Kind::Float, Device::Cpu)),
            vec![
                ("embed", vec![3, 4, 8]),
                ("attn1", vec![3, 4, 8]),
                ("ff1", vec![3, 4, 8]),
                ("attn2", vec![3, 4, 8]),
                ("ff2", vec![3, 4, 8]),
            ],
        ),
    ];
    for (arch, x, want) in cases {
        let m = BuiltinModel::new(
            &spec(json!({"architecture": arch, "init": {"normal": {"std": 0.1}}})),
            Device::Cpu,
        )
        .unwrap();
        let want: Vec<(String, Vec<i64>)> =
            want.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        assert_eq!(shapes(&m, &x), want, "{arch}");
        for (n, t) in m.forward_layers(&x).unwrap() {
            assert!(
                t.isfinite().all().int64_value(&[]) == 1,
                "{arch}: {n} is finite"
            );
        }
    }
}

#[test]
fn the_vanilla_rnn_is_its_recurrence() {
    let m = BuiltinModel::new(&spec(json!({"architecture": {"type": "recurrent", "cell": "rnn", "input": 3, "hidden": 4}, "seed": 2})), Device::Cpu).unwrap();
    let x = Tensor::rand([2, 5, 3], (Kind::Float, Device::Cpu));
    let out = m.forward_layers(&x).unwrap().remove(0).1;
    // Steps are causal: changing the last input leaves earlier steps alone.
    let y = x.copy();
    let _ = y.select(1, 4).fill_(0.5);
    let out2 = m.forward_layers(&y).unwrap().remove(0).1;
    assert!(out.narrow(1, 0, 4).equal(&out2.narrow(1, 0, 4)));
    assert!(!out.select(1, 4).equal(&out2.select(1, 4)));
    assert!(out.abs().max().double_value(&[]) < 1.0, "tanh units");
}

#[test]
fn weights_come_from_the_seed_and_checkpoints_round_trip() {
    let s = |seed: u64| {
        spec(json!({"architecture": {"type": "mlp", "input": 6, "hidden": [5]}, "seed": seed}))
    };
    let (a, b, c) = (
        BuiltinModel::new(&s(1), Device::Cpu).unwrap(),
        BuiltinModel::new(&s(1), Device::Cpu).unwrap(),
        BuiltinModel::new(&s(2), Device::Cpu).unwrap(),
    );
    assert_eq!(a.content_hash().unwrap(), b.content_hash().unwrap());
    assert_ne!(a.content_hash().unwrap(), c.content_hash().unwrap());
    let x = Tensor::rand([4, 6], (Kind::Float, Device::Cpu));
    let ya = a.forward_layers(&x).unwrap().pop().unwrap().1;
    let mut d = BuiltinModel::new(&s(2), Device::Cpu).unwrap();
    d.load_checkpoint(&a.checkpoint().unwrap()).unwrap();
    assert!(d.forward_layers(&x).unwrap().pop().unwrap().1.equal(&ya));
}

#[test]
fn weights_do_not_depend_on_other_threads_drawing_random_numbers() {
    let s = spec(
        json!({"architecture": {"type": "cnn", "channels": 1, "height": 8, "width": 8, "blocks": [{"channels": 4}]}, "seed": 5}),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Tensor::rand([64], (Kind::Float, Device::Cpu));
            }
        })
    };
    let hashes: Vec<String> = (0..4)
        .map(|_| {
            BuiltinModel::new(&s, Device::Cpu)
                .unwrap()
                .content_hash()
                .unwrap()
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    noise.join().unwrap();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

#[test]
fn orthogonal_init_gives_orthonormal_rows_times_gain() {
    let s = spec(
        json!({"architecture": {"type": "mlp", "input": 9, "hidden": [4]}, "init": {"orthogonal": {"gain": 2.0}}, "seed": 3}),
    );
    let m = BuiltinModel::new(&s, Device::Cpu).unwrap();
    // fc1's output for the identity batch is Wᵀ plus a zero bias.
    let eye = Tensor::eye(9, (Kind::Float, Device::Cpu));
    let wt = m.forward_layers(&eye).unwrap().remove(0).1;
    let gram = wt.tr().matmul(&wt);
    let want = Tensor::eye(4, (Kind::Float, Device::Cpu)) * 4.0;
    assert!((gram - want).abs().max().double_value(&[]) < 1e-4);
}

/// Self-attention and recurrent blocks against PyTorch's own modules
/// (nn.MultiheadAttention with LayerNorm, nn.RNN, nn.LSTM, nn.GRU): the
/// fixture script's random weights, loaded as a checkpoint under the
/// built-in variable names, give every layer's output to float32 precision.
#[test]
fn attention_and_recurrent_blocks_match_pytorch_modules() {
    let root = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/fixtures/models/blocks"
    ));
    let read =
        |case: &str, file: &str| std::fs::read_to_string(root.join(case).join(file)).unwrap();
    for case in ["attention", "rnn", "lstm", "gru"] {
        let spec: ModelSpec =
            ModelSpec::parse(serde_json::from_str(&read(case, "spec.json")).unwrap()).unwrap();
        let mut m = BuiltinModel::new(&spec, Device::Cpu).unwrap();
        let names: Vec<String> = serde_json::from_str(&read(case, "weights.json")).unwrap();
        // The fixture names exactly the model's variables.
        let own = std::env::temp_dir().join(format!(
            "blocks-own-{case}-{}.safetensors",
            std::process::id()
        ));
        std::fs::write(&own, m.checkpoint().unwrap()).unwrap();
        let mut own_names: Vec<String> = Tensor::read_safetensors(&own)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        own_names.sort();
        let _ = std::fs::remove_file(&own);
        assert_eq!(own_names, names, "{case}: variable names");
        let weights: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    Tensor::read_npy(root.join(case).join(format!("w_{n}.npy"))).unwrap(),
                )
            })
            .collect();
        let ckpt =
            std::env::temp_dir().join(format!("blocks-{case}-{}.safetensors", std::process::id()));
        Tensor::write_safetensors(&weights, &ckpt).unwrap();
        m.load_checkpoint(&std::fs::read(&ckpt).unwrap()).unwrap();
        let _ = std::fs::remove_file(&ckpt);
        let x = Tensor::read_npy(root.join(case).join("input.npy")).unwrap();
        let got = {
            let _g = tch::no_grad_guard();
            m.forward_layers(&x).unwrap()
        };
        let layers: Vec<String> = serde_json::from_str(&read(case, "layers.json")).unwrap();
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got_names, layers, "{case}: layers");
        for (name, t) in &got {
            let want = Tensor::read_npy(root.join(case).join(format!("out_{name}.npy"))).unwrap();
            assert_eq!(t.size(), want.size(), "{case}/{name}: shape");
            let err = (t.to_kind(Kind::Double) - want.to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            assert!(err < 1e-5, "{case}/{name}: max |ours − PyTorch| = {err:e}");
        }
    }
}
