//! Every bad input the tool reads gets one line on stderr naming the file (or option) and the
//! problem, and a documented exit code (1 = bad file or I/O, 2 = bad command line); never a
//! panic. Also: a diverging run or a failing disk never replaces a good model.

use crate::support;

use std::path::Path;
use std::process::Command;

use mnist_train::checkpoint::{list_checkpoints, Checkpoint};
use mnist_train::data::DatasetKind;
use mnist_train::model_file::{Model, Normalization};
use mnist_train::nn::Architecture;
use support::{gzip, idx_bytes, random_examples, Workdir};

/// Runs `command`, expects exit `code` and a single stderr line containing every `needle`.
fn assert_refused(command: &mut Command, code: i32, needles: &[&str]) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(code), "{command:?}\n{stderr}");
    // Progress lines may come first; the refusal itself is the one last line.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{stderr}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr}");
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} not in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Replaces one of the four data files of `work` (removing both its raw and .gz forms).
fn replace_data_file(work: &Workdir, name: &str, bytes: &[u8]) {
    for candidate in [name.to_string(), format!("{name}.gz")] {
        let _ = std::fs::remove_file(work.path("data").join(candidate));
    }
    std::fs::write(work.path("data").join(name), bytes).unwrap();
}

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";

#[test]
fn bad_data_files_are_named_with_their_problem() {
    let (images, labels) = random_examples(40, 1);
    let valid_images = idx_bytes(&[40, 28, 28], &images);
    let mut wrong_magic = valid_images.clone();
    wrong_magic[0] = 0x50;
    let mut wrong_type = valid_images.clone();
    wrong_type[2] = 0x0D;
    let mut bad_labels = labels.clone();
    bad_labels[17] = 10;
    // The header says 40 labels, the stream carries 16 MB more; the trailer is patched to agree
    // with the header, so only stopping at the expected length catches it.
    let mut bomb = gzip(&{
        let mut bytes = idx_bytes(&[40], &labels);
        bytes.extend(std::iter::repeat_n(0u8, 16 << 20));
        bytes
    });
    let trailer = bomb.len() - 4;
    bomb[trailer..].copy_from_slice(&(8u32 + 40).to_le_bytes());
    let mut corrupt_gzip = gzip(&valid_images);
    let middle = corrupt_gzip.len() / 2;
    for byte in &mut corrupt_gzip[middle..middle + 16] {
        *byte ^= 0x5A;
    }
    let full_gzip = gzip(&valid_images);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (TRAIN_IMAGES, vec![], &["is empty"]),
        (TRAIN_IMAGES, wrong_magic, &["not an IDX file"]),
        (
            TRAIN_IMAGES,
            wrong_type,
            &["element type 0x0d", "unsigned byte"],
        ),
        (
            TRAIN_IMAGES,
            valid_images[..9].to_vec(),
            &["truncated header"],
        ),
        (
            TRAIN_IMAGES,
            valid_images[..valid_images.len() - 100].to_vec(),
            &["truncated file or corrupt header"],
        ),
        (
            TRAIN_IMAGES,
            full_gzip[..full_gzip.len() / 2].to_vec(),
            &["gzip stream is truncated or corrupt"],
        ),
        (
            TRAIN_IMAGES,
            full_gzip[..12].to_vec(),
            &["truncated gzip stream"],
        ),
        (TRAIN_IMAGES, corrupt_gzip, &["gzip"]),
        (
            TRAIN_IMAGES,
            idx_bytes(&[30, 28, 28], &images[..30 * 784]),
            &["has 30 images but", "has 40 labels"],
        ),
        (
            TRAIN_IMAGES,
            idx_bytes(&[10, 56, 56], &images[..10 * 56 * 56]),
            &["images are 56x56, expected 28x28"],
        ),
        (
            TRAIN_IMAGES,
            idx_bytes(&[4_000_000_000, 28, 28], &images),
            &["header claims dimensions 4000000000x28x28"],
        ),
        (
            TRAIN_IMAGES,
            gzip(&idx_bytes(&[4_000_000_000, 28, 28], &images)),
            &["header claims dimensions 4000000000x28x28"],
        ),
        (
            TRAIN_IMAGES,
            idx_bytes(&[0, 28, 28], &[]),
            &["holds no images"],
        ),
        (
            TRAIN_LABELS,
            idx_bytes(&[40], &bad_labels),
            &["label 10 at index 17 is out of range 0-9"],
        ),
        (
            TRAIN_LABELS,
            idx_bytes(&[40, 1], &labels),
            &["has 2 dimensions, expected 1"],
        ),
        (TRAIN_LABELS, bomb, &["more data than its header declares"]),
    ];
    for (name, bytes, needles) in cases {
        let work = Workdir::new(40);
        replace_data_file(&work, name, &bytes);
        let mut all = vec![name];
        all.extend_from_slice(needles);
        assert_refused(work.train().args(["--epochs", "1"]), 1, &all);
    }
}

#[test]
fn folders_and_missing_paths_are_named() {
    let work = Workdir::new(40);
    assert_refused(
        Command::new(support::BINARY)
            .current_dir(work.temp.path())
            .args(["--data-dir", "nowhere"]),
        1,
        &["nowhere", "does not exist"],
    );
    std::fs::write(work.path("plain-file"), b"x").unwrap();
    assert_refused(
        Command::new(support::BINARY)
            .current_dir(work.temp.path())
            .args(["--data-dir", "plain-file"]),
        1,
        &["plain-file", "is not a directory"],
    );
    std::fs::remove_file(work.path("data/t10k-labels-idx1-ubyte")).unwrap();
    assert_refused(&mut work.train(), 1, &["t10k-labels-idx1-ubyte", "missing"]);
    let work = Workdir::new(40);
    std::fs::remove_file(work.path("data/train-images-idx3-ubyte.gz")).unwrap();
    std::fs::create_dir(work.path("data/train-images-idx3-ubyte.gz")).unwrap();
    assert_refused(
        &mut work.train(),
        1,
        &["train-images-idx3-ubyte.gz", "is a directory"],
    );
}

/// A trained model (and its bytes) in `work`.
fn trained_model(work: &Workdir) -> Vec<u8> {
    let status = work
        .train()
        .args([
            "--epochs",
            "1",
            "-q",
            "-o",
            "model.bin",
            "--checkpoint-dir",
            "ck",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(work.path("model.bin")).unwrap()
}

fn eval(work: &Workdir, model: &str) -> Command {
    let mut command = Command::new(support::BINARY);
    command
        .current_dir(work.temp.path())
        .args(["eval", "--data-dir", "data", "--model", model]);
    command
}

fn resume(work: &Workdir, checkpoint: &str) -> Command {
    let mut command = Command::new(support::BINARY);
    command
        .current_dir(work.temp.path())
        .args(["train", "--resume", checkpoint]);
    command
}

/// Re-seals a container after editing it (recomputes the trailing CRC-32).
fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn bad_model_and_checkpoint_files_are_named_with_their_problem() {
    let work = Workdir::new(40);
    let model = trained_model(&work);
    let checkpoint_path = list_checkpoints(&work.path("ck")).unwrap().pop().unwrap();
    let checkpoint = std::fs::read(&checkpoint_path).unwrap();
    std::fs::copy(&checkpoint_path, work.path("good.ckpt")).unwrap();

    let mut cases: Vec<(&str, Vec<u8>, Vec<&str>)> = Vec::new();
    for (label, bytes) in [("model", &model), ("checkpoint", &checkpoint)] {
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&7u32.to_le_bytes());
        let mut older = bytes.clone();
        older[8..12].copy_from_slice(&0u32.to_le_bytes());
        let mut bad_header = bytes.clone();
        bad_header[16] = b'[';
        reseal(&mut bad_header);
        let random: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        cases.extend([
            (label, Vec::new(), vec!["is empty"]),
            (label, random, vec!["wrong magic bytes"]),
            (
                label,
                idx_bytes(&[3], &[1, 2, 3]),
                vec!["wrong magic bytes"],
            ),
            (label, flipped, vec!["checksum mismatch"]),
            (
                label,
                bytes[..bytes.len() - 10].to_vec(),
                vec!["checksum mismatch"],
            ),
            (label, bytes[..12].to_vec(), vec!["truncated"]),
            (label, newer, vec!["format version 7, a newer format"]),
            (label, older, vec!["format version 0, an older format"]),
            (label, bad_header, vec!["invalid", "header"]),
        ]);
    }
    cases.push((
        "model",
        checkpoint.clone(),
        vec!["is a checkpoint file, not a model"],
    ));
    cases.push((
        "checkpoint",
        model.clone(),
        vec!["is a model file, not a checkpoint"],
    ));
    for (index, (kind, bytes, needles)) in cases.into_iter().enumerate() {
        let name = format!("case-{index}.bin");
        std::fs::write(work.path(&name), &bytes).unwrap();
        let mut all = vec![name.as_str()];
        all.extend(needles);
        let mut command = if kind == "model" {
            eval(&work, &name)
        } else {
            resume(&work, &name)
        };
        assert_refused(&mut command, 1, &all);
    }
    std::fs::create_dir(work.path("a-folder.bin")).unwrap();
    assert_refused(
        &mut eval(&work, "a-folder.bin"),
        1,
        &["a-folder.bin", "is a directory"],
    );
    assert_refused(
        &mut eval(&work, "absent.bin"),
        1,
        &["absent.bin", "No such file"],
    );
    // A good checkpoint still resumes (the cases above were refused for their own reason).
    assert!(resume(&work, "good.ckpt")
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn a_model_whose_architecture_does_not_fit_the_data_is_refused() {
    let work = Workdir::new(40);
    let architecture = Architecture {
        inputs: 100,
        hidden: vec![4],
        ..Architecture::tutorial()
    };
    let model = Model {
        parameters: vec![0.5; architecture.parameter_count()],
        architecture,
        normalization: Normalization::default(),
        dataset: DatasetKind::Mnist,
        class_names: (0..10).map(|c| c.to_string()).collect(),
        privacy: None,
    };
    model.save(&work.path("small.bin")).unwrap();
    assert_refused(
        &mut eval(&work, "small.bin"),
        1,
        &["small.bin", "100 inputs"],
    );

    // The same for a checkpoint whose network does not fit (edited and resealed).
    trained_model(&work);
    let path = list_checkpoints(&work.path("ck")).unwrap().pop().unwrap();
    let mut checkpoint = Checkpoint::load(&path).unwrap();
    checkpoint.spec.training.architecture.inputs = 100;
    checkpoint.params = vec![0.1; checkpoint.spec.training.architecture.parameter_count()];
    checkpoint.optimizer.slots = vec![vec![0.0; checkpoint.params.len()]; 2];
    checkpoint.save(&work.path("small.ckpt")).unwrap();
    assert_refused(
        &mut resume(&work, "small.ckpt"),
        1,
        &["small.ckpt", "100 inputs"],
    );
}

#[test]
fn out_of_range_and_contradictory_options_are_usage_errors() {
    let work = Workdir::new(40);
    let cases: &[(&[&str], &[&str])] = &[
        (&["--epochs", "0"], &["--epochs"]),
        (&["--batch-size", "0"], &["--batch-size"]),
        (&["--batch-size", "-3"], &["--batch-size"]),
        (&["--learning-rate", "0"], &["--learning-rate"]),
        (&["--learning-rate", "NaN"], &["--learning-rate"]),
        (&["--learning-rate", "inf"], &["--learning-rate"]),
        (&["--dropout", "1"], &["--dropout"]),
        (&["--hidden", "0"], &["--hidden"]),
        (&["--hidden", "100000"], &["--hidden"]),
        (&["--limit", "0"], &["--limit"]),
        (&["--test-batch-size", "0"], &["--test-batch-size"]),
        (&["--seed", "-1"], &["--seed"]),
        (&["--validation-split", "1.5"], &["--validation-split"]),
        (&["--momentum", "0.5"], &["--momentum"]),
        (&["--checkpoint-every", "0"], &["--checkpoint-every"]),
        (
            &["--checkpoint-every", "5"],
            &["--checkpoint-every", "needs --checkpoint-dir"],
        ),
        (
            &["--checkpoint-dir", "ck", "--keep-checkpoints", "0"],
            &["--keep-checkpoints"],
        ),
        (&["--output", "data"], &["--output", "is a directory"]),
        (&["--no-such-option"], &["--no-such-option"]),
    ];
    for (args, needles) in cases {
        assert_refused(work.train().args(*args), 2, needles);
    }
}

#[test]
fn an_existing_file_that_is_not_ours_is_never_overwritten() {
    let work = Workdir::new(40);
    std::fs::write(work.path("notes.txt"), b"my thesis").unwrap();
    assert_refused(
        work.train().args(["-o", "notes.txt"]),
        2,
        &["notes.txt", "refusing to overwrite"],
    );
    assert_eq!(std::fs::read(work.path("notes.txt")).unwrap(), b"my thesis");
}

#[test]
fn unwritable_output_folders_are_refused_before_training() {
    let work = Workdir::new(40);
    std::fs::write(work.path("a-file"), b"x").unwrap();
    // A path whose folder is a regular file, a folder that does not exist, and sysfs, which
    // refuses new files even to root (chmod-based read-only folders do not stop root).
    for (output, needles) in [
        (
            "a-file/model.bin",
            vec!["a-file/model.bin", "folder a-file"],
        ),
        (
            "no-such-folder/model.bin",
            vec!["no-such-folder", "does not exist"],
        ),
        (
            "/sys/model.bin",
            vec!["/sys/model.bin", "does not accept new files"],
        ),
    ] {
        let stderr = assert_refused(work.train().args(["-o", output]), 1, &needles);
        assert!(
            !stderr.contains("Epoch"),
            "must fail before training: {stderr}"
        );
    }
    assert_refused(
        work.train().args(["--checkpoint-dir", "/sys/ck"]),
        1,
        &["/sys/ck", "cannot create folder"],
    );
}

/// Runs `command` through `sh` with the file-size limit `ulimit -f BLOCKS` (512-byte blocks)
/// and SIGXFSZ ignored: writing past the limit then fails with EFBIG, like a full disk.
fn with_file_size_limit(command: &Command, blocks: u32) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(command.get_program())
        .args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        shell.current_dir(dir);
    }
    shell
}

fn temp_files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.contains(".tmp-"))
        .collect()
}

#[test]
fn a_full_disk_at_the_end_leaves_the_previous_model_untouched() {
    let work = Workdir::new(40);
    let previous = trained_model(&work);
    // The model (~51 KB) no longer fits once files are limited to 20 KB; the probe written
    // before training does, so the failure happens at the very end, as on a disk that fills up
    // during a long run.
    let mut command = work.train();
    command.args(["--epochs", "1", "--seed", "9", "-o", "model.bin"]);
    let stderr = assert_refused(
        &mut with_file_size_limit(&command, 40),
        1,
        &[
            "model.bin",
            "File too large",
            "previous version is untouched",
        ],
    );
    assert!(stderr.contains("error:"), "{stderr}");
    assert_eq!(std::fs::read(work.path("model.bin")).unwrap(), previous);
    assert_eq!(temp_files_in(work.temp.path()), Vec::<String>::new());
}

#[test]
fn a_diverging_run_names_the_step_and_never_saves_nan() {
    let work = Workdir::new(40);
    let previous = trained_model(&work);
    let mut command = work.train();
    command.args([
        "--epochs",
        "3",
        "--learning-rate",
        "1e30",
        "-o",
        "model.bin",
        "--checkpoint-dir",
        "diverged",
        "--checkpoint-every",
        "1",
    ]);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("at epoch 1, step") && last.contains("try a smaller --learning-rate"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(work.path("model.bin")).unwrap(), previous);
    for file in list_checkpoints(&work.path("diverged")).unwrap() {
        let checkpoint = Checkpoint::load(&file).unwrap();
        assert!(checkpoint.params.iter().all(|v| v.is_finite()));
    }
}
