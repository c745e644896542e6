//! Checkpoints written by the binary from before the one-way redesign
//! (tests/fixtures/v0-checkpoints, see its README) resume to exactly the
//! models that binary trained without interruption.

use std::path::{Path, PathBuf};

use crate::support::{output_text, run_cli, temp_dir};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v0-checkpoints")
        .join(name)
}

/// The tensors of a model file, by name.
fn tensors(path: &Path) -> gradfree::io::TensorMap {
    let bytes = std::fs::read(path).unwrap();
    gradfree::io::read_safetensors(&bytes).unwrap().0
}

/// Resumes `checkpoint` in a fresh directory with `args`; returns the
/// resumed run's final tensors.
fn resume(tag: &str, checkpoint: &str, args: &[&str]) -> gradfree::io::TensorMap {
    let dir = temp_dir(tag);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(fixture(checkpoint), run.join("checkpoint.safetensors")).unwrap();
    let run_s = run.display().to_string();
    let mut all = args.to_vec();
    all.extend_from_slice(&["--resume", &run_s]);
    let o = run_cli(&all);
    assert!(o.status.success(), "{}", output_text(&o));
    tensors(&run.join("model.safetensors"))
}

#[test]
fn classifier_checkpoint_of_the_old_binary_resumes_to_its_model() {
    let dir = temp_dir("v0_cls_data");
    let maj = dir.join("maj").display().to_string();
    let o = run_cli(&[
        "data", "majority", "--out", &maj, "--inputs", "9", "--depth", "2",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let (train, test) = (format!("{maj}_train"), format!("{maj}_test"));
    let got = resume(
        "v0_cls",
        "classify-epoch1.safetensors",
        &[
            "rrr",
            "classify",
            "--train",
            &train,
            "--test",
            &test,
            "--device",
            "cpu",
            "--precision",
            "f64",
        ],
    );
    let want = tensors(&fixture("classify-final.safetensors"));
    assert_eq!(
        got, want,
        "the resumed classifier differs from the old binary's"
    );
}

#[test]
fn autoencoder_checkpoint_of_the_old_binary_resumes_to_its_model() {
    let data = fixture("ae.csv").display().to_string();
    let got = resume(
        "v0_ae",
        "autoencode-epoch1.safetensors",
        &[
            "rrr",
            "autoencode",
            "--data",
            &data,
            "--device",
            "cpu",
            "--precision",
            "f64",
        ],
    );
    let want = tensors(&fixture("autoencode-final.safetensors"));
    assert_eq!(
        got, want,
        "the resumed autoencoder differs from the old binary's"
    );
}
