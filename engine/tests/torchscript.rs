//! TorchScript models exported with PyTorch (`fixtures/model_fixtures.py`):
//! layers read by name, registration errors that say what is wrong, and
//! extraction that reproduces PyTorch eager on the same preprocessing.

use neuralign_core::architecture::{InputKind, InputSpec, Pooling};
use neuralign_engine::models::extract::{extract, ExtractOptions};
use neuralign_engine::models::torchscript::ScriptModel;
use neuralign_engine::models::LayerModel;
use tch::{Device, Kind, Tensor};

fn file(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../target/fixtures/models/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!("cannot read {p} ({e}); run scripts/fixtures.sh (scripts/test.sh does)")
    })
}

fn npy(name: &str) -> Tensor {
    let p = format!(
        "{}/../target/fixtures/models/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Tensor::read_npy(&p).unwrap()
}

fn names(m: &ScriptModel, x: &Tensor) -> Result<Vec<(String, Vec<i64>)>, String> {
    m.forward_layers(x)
        .map(|l| l.into_iter().map(|(n, t)| (n, t.size())).collect())
        .map_err(|e| e.to_string())
}

#[test]
fn layers_come_from_dicts_tuples_and_single_tensors() {
    let cnn = ScriptModel::load(&file("dict_cnn.pt"), Device::Cpu, None).unwrap();
    let mut got = names(
        &cnn,
        &Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)),
    )
    .unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("fc".to_string(), vec![2, 10]),
            ("relu1".into(), vec![2, 8, 16, 16]),
            ("relu2".into(), vec![2, 16, 8, 8]),
            ("relu3".into(), vec![2, 16, 4, 4]),
        ]
    );
    let x = Tensor::rand([2, 6], (Kind::Float, Device::Cpu));
    let tuple = ScriptModel::load(
        &file("tuple_mlp.pt"),
        Device::Cpu,
        Some(vec!["hidden".into(), "out".into()]),
    )
    .unwrap();
    assert_eq!(
        names(&tuple, &x).unwrap(),
        vec![
            ("hidden".to_string(), vec![2, 5]),
            ("out".into(), vec![2, 4])
        ]
    );
    let one = ScriptModel::load(&file("tensor_only.pt"), Device::Cpu, None).unwrap();
    assert_eq!(
        names(&one, &x).unwrap(),
        vec![("output".to_string(), vec![2, 3])]
    );
}

#[test]
fn bad_models_are_clear_errors() {
    let x = Tensor::rand([2, 6], (Kind::Float, Device::Cpu));
    let e = ScriptModel::load(&file("state_dict_not_torchscript.pt"), Device::Cpu, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("file: not a loadable TorchScript module"),
        "{e}"
    );
    let e = ScriptModel::load(b"definitely not a model", Device::Cpu, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("file: not a loadable TorchScript module"),
        "{e}"
    );
    let tuple = ScriptModel::load(&file("tuple_mlp.pt"), Device::Cpu, None).unwrap();
    assert!(names(&tuple, &x)
        .unwrap_err()
        .starts_with("layer_names: the model returns 2 unnamed tensors"));
    let empty = ScriptModel::load(&file("empty_dict.pt"), Device::Cpu, None).unwrap();
    assert!(names(&empty, &x).unwrap_err().contains("no named layers"));
    let needs5 = ScriptModel::load(&file("needs_5_features.pt"), Device::Cpu, None).unwrap();
    let e = names(&needs5, &Tensor::rand([2, 4], (Kind::Float, Device::Cpu))).unwrap_err();
    assert!(
        e.starts_with("input: the model rejected a batch of shape [2, 4]"),
        "{e}"
    );
}

/// The recovery fixtures' input: 16 × 16 RGB images.
fn recovery_spec() -> InputSpec {
    InputSpec {
        kind: InputKind::Images,
        size: Some([16, 16]),
        channels: Some(3),
        ..InputSpec::for_architecture(&neuralign_core::architecture::Architecture::Mlp {
            input: 1,
            hidden: vec![1],
            unit: Default::default(),
        })
    }
}

#[test]
fn a_model_that_rejects_channels_last_batches_gets_contiguous_ones() {
    // The model flattens with `view`, which a channels-last batch fails
    // (the fixture script checks that it does); extraction still works and
    // reproduces PyTorch eager.
    let model = LayerModel::Script(
        ScriptModel::load(&file("views_its_input.pt"), Device::Cpu, None).unwrap(),
    );
    let opts = ExtractOptions {
        pooling: Pooling::Avg,
        layers: None,
        batch_size: None,
        batch_budget: 1 << 30,
    };
    let (layers, batch) = extract(
        &model,
        &npy("recovery_stimuli.npy"),
        &recovery_spec(),
        &opts,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    let fc = &layers.iter().find(|l| l.0 == "fc").unwrap().1;
    let diff = (fc - npy("views_fc_eager.npy"))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-5, "max |neuralign − PyTorch eager| = {diff}");
    // 4 KB of layer outputs per stimulus: the batch is capped, not memory-bound.
    assert_eq!(batch, 256);
}

#[test]
fn extraction_matches_pytorch_eager_with_the_same_preprocessing() {
    let model =
        LayerModel::Script(ScriptModel::load(&file("dict_cnn.pt"), Device::Cpu, None).unwrap());
    let stimuli = npy("recovery_stimuli.npy");
    let spec = recovery_spec();
    let keep = vec!["relu2".to_string(), "fc".to_string()];
    let opts = ExtractOptions {
        pooling: Pooling::Avg,
        layers: Some(&keep),
        batch_size: Some(37),
        batch_budget: 0,
    };
    let mut calls = 0;
    let (layers, batch) = extract(&model, &stimuli, &spec, &opts, &mut |_, _| {
        calls += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(batch, 37);
    assert_eq!(calls, 7, "240 stimuli in batches of 37");
    let relu2 = &layers.iter().find(|l| l.0 == "relu2").unwrap().1;
    assert_eq!(relu2.size(), vec![240, 16]);
    let eager = npy("recovery_relu2_eager.npy");
    let diff = (relu2 - eager).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max |neuralign − PyTorch eager| = {diff}");
    // Batching does not change the numbers.
    let opts1 = ExtractOptions {
        batch_size: Some(240),
        ..opts
    };
    let (again, _) = extract(&model, &stimuli, &spec, &opts1, &mut |_, _| Ok(())).unwrap();
    assert!(
        (&again.iter().find(|l| l.0 == "relu2").unwrap().1 - relu2)
            .abs()
            .max()
            .double_value(&[])
            < 1e-6
    );
    // A missing layer is named.
    let bad = vec!["relu9".to_string()];
    let e = extract(
        &model,
        &stimuli,
        &spec,
        &ExtractOptions {
            layers: Some(&bad),
            ..opts
        },
        &mut |_, _| Ok(()),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("no layer \"relu9\""), "{e}");
}
