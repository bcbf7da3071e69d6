//! Checkpoints, resume and interrupts through the real binary: SIGINT then resume gives the
//! byte-identical model, SIGKILL at random moments never leaves a broken newest checkpoint, and
//! resuming with contradicting options is refused with the option's name.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mnist_train::checkpoint::{list_checkpoints, Checkpoint};
use mnist_train::rng::Rng;
use support::{run_fails, run_ok, send_signal, spawn_until, timeless, write_dataset, Workdir};

fn newest_checkpoint(dir: &Path) -> Checkpoint {
    let newest = list_checkpoints(dir).unwrap().pop().expect("a checkpoint");
    Checkpoint::load(&newest).unwrap()
}

#[test]
fn sigint_saves_a_checkpoint_and_the_resumed_run_ends_byte_identical() {
    let work = Workdir::new(200);
    // Practically endless, so the signal always lands mid-run; the resume then shortens the run
    // with --epochs, and the reference is a fresh run with that many epochs.
    let (mut child, stderr) =
        spawn_until(work.endless_train().args(["-o", "model.bin"]), "Epoch 1/");
    send_signal(child.id(), "INT");
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let resume_line = stderr
        .lines()
        .find(|line| line.starts_with("To continue: mnist-train train --resume "))
        .unwrap_or_else(|| panic!("no resume hint in:\n{stderr}"));
    let checkpoint_path = resume_line.rsplit(' ').next().unwrap();
    assert_eq!(checkpoint_path, "model.bin.interrupted.ckpt");
    assert!(
        !work.path("model.bin").exists(),
        "no model before the run ends"
    );
    let checkpoint = Checkpoint::load(&work.path(checkpoint_path)).unwrap();
    assert!(checkpoint.epoch >= 1);
    let epochs = (checkpoint.epoch + 2).to_string();

    let resumed = run_ok(work.train().args([
        "--resume",
        checkpoint_path,
        "--epochs",
        &epochs,
        "--checkpoint-dir",
        "resumed-ck",
    ]));
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("Resuming from"));
    assert!(
        !work.path(checkpoint_path).exists(),
        "the interrupt checkpoint is removed once the run completes"
    );
    run_ok(work.train().args([
        "--epochs",
        &epochs,
        "-o",
        "reference.bin",
        "--checkpoint-dir",
        "reference-ck",
    ]));
    let model = std::fs::read(work.path("model.bin")).unwrap();
    let reference = std::fs::read(work.path("reference.bin")).unwrap();
    assert!(
        model == reference,
        "resumed model differs from the uninterrupted one"
    );
    let resumed_history = newest_checkpoint(&work.path("resumed-ck")).history;
    let reference_history = newest_checkpoint(&work.path("reference-ck")).history;
    assert_eq!(resumed_history.len(), checkpoint.epoch + 2);
    assert_eq!(timeless(&resumed_history), timeless(&reference_history));
}

/// Writing a checkpoint into `ck` after every step.
const CHECKPOINTING_EVERY_STEP: [&str; 4] = ["--checkpoint-dir", "ck", "--checkpoint-every", "1"];

#[test]
fn a_second_signal_exits_at_once_leaving_only_valid_checkpoints() {
    let work = Workdir::new(200);
    let (mut child, stderr) = spawn_until(
        work.endless_train().args(CHECKPOINTING_EVERY_STEP),
        "Epoch 1/",
    );
    // SIGTERM asks to stop like Ctrl-C does; the second signal exits at once.
    send_signal(child.id(), "TERM");
    send_signal(child.id(), "INT");
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let files = list_checkpoints(&work.path("ck")).unwrap();
    assert!(!files.is_empty());
    for file in &files {
        Checkpoint::load(file).unwrap();
    }
    let epochs = (newest_checkpoint(&work.path("ck")).epoch + 1).to_string();
    run_ok(work.train().args(["--resume", "ck", "--epochs", &epochs]));
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_broken_newest_checkpoint() {
    let work = Workdir::new(96);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut rng = Rng::from_u64(seed);
    let dir = work.path("ck");
    let mut newest_position = (0, 0);
    let mut kills_with_checkpoints = 0;
    for round in 0..16 {
        let mut command = work.endless_train();
        command
            .args(CHECKPOINTING_EVERY_STEP)
            .args(["--keep-checkpoints", "3"]);
        if dir.exists() && !list_checkpoints(&dir).unwrap().is_empty() {
            command.args(["--resume", "ck"]);
        }
        let (mut child, stderr) = spawn_until(&mut command, "Loaded");
        // The kill moment is the random part: anywhere from before the first step to dozens
        // of checkpoint writes later, including in the middle of a write.
        std::thread::sleep(Duration::from_micros(rng.next_u64_fast() % 40_000));
        send_signal(child.id(), "KILL");
        child.wait().unwrap();
        let stderr = stderr.join().unwrap();

        let files = if dir.exists() {
            list_checkpoints(&dir).unwrap()
        } else {
            Vec::new()
        };
        for file in &files {
            if let Err(error) = Checkpoint::load(file) {
                panic!("round {round}: {error} (seed {seed})\n{stderr}");
            }
        }
        if let Some(newest) = files.last() {
            let checkpoint = Checkpoint::load(newest).unwrap();
            let position = (checkpoint.epoch, checkpoint.step_in_epoch);
            assert!(position >= newest_position, "round {round}: went back");
            eprintln!("round {round}: newest checkpoint after the kill: {position:?}");
            newest_position = position;
            kills_with_checkpoints += 1;
        }
    }
    assert!(
        kills_with_checkpoints > 0,
        "no run got to its first checkpoint"
    );

    // The survivor resumes to the same model as a run that was never killed.
    let epochs = (newest_position.0 + 1).to_string();
    run_ok(
        work.train()
            .args(["--resume", "ck", "--epochs", &epochs, "-o", "a.bin"]),
    );
    run_ok(work.train().args(["--epochs", &epochs, "-o", "b.bin"]));
    assert!(
        std::fs::read(work.path("a.bin")).unwrap() == std::fs::read(work.path("b.bin")).unwrap(),
        "killed-and-resumed model differs (seed {seed})"
    );
}

/// A finished 2-epoch run with checkpoints in `ck` (3 steps per epoch, one every 2 steps).
fn finished_run() -> Workdir {
    let work = Workdir::new(40);
    run_ok(
        work.train()
            .args(["--epochs", "2", "--checkpoint-dir", "ck"])
            .args(["--checkpoint-every", "2", "--keep-checkpoints", "10"]),
    );
    work
}

#[test]
fn resuming_from_each_periodic_checkpoint_gives_the_same_model() {
    let work = finished_run();
    let files = list_checkpoints(&work.path("ck")).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "ckpt-e0000-s0000002.ckpt",
            "ckpt-e0001-s0000000.ckpt",
            "ckpt-e0001-s0000001.ckpt",
            "ckpt-e0002-s0000000.ckpt"
        ]
    );
    let reference = std::fs::read(work.path("weights.bin")).unwrap();
    work.assert_each_checkpoint_resumes_to(&files[..3], &reference);
}

#[test]
fn keeps_only_the_newest_checkpoints() {
    let work = Workdir::new(40);
    run_ok(work.train().args([
        "--epochs",
        "3",
        "--checkpoint-dir",
        "ck",
        "--checkpoint-every",
        "1",
        "--keep-checkpoints",
        "2",
    ]));
    let names: Vec<String> = list_checkpoints(&work.path("ck"))
        .unwrap()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        ["ckpt-e0002-s0000002.ckpt", "ckpt-e0003-s0000000.ckpt"]
    );
}

#[test]
fn resume_skips_a_corrupt_newest_checkpoint_with_a_warning() {
    let work = finished_run();
    let newest = work.path("ck/ckpt-e0002-s0000000.ckpt");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();
    let output = run_ok(work.train().args(["--resume", "ck", "-o", "again.bin"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: skipping unusable checkpoint"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ckpt-e0002-s0000000.ckpt: checksum mismatch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Resuming from ck/ckpt-e0001-s0000001.ckpt"),
        "{stderr}"
    );
    assert!(
        std::fs::read(work.path("again.bin")).unwrap()
            == std::fs::read(work.path("weights.bin")).unwrap()
    );
}

#[test]
fn resume_refuses_options_that_contradict_the_checkpoint() {
    let work = finished_run();
    let checkpoint = "ck/ckpt-e0001-s0000001.ckpt";
    for (option, value) in [
        ("--hidden", "32"),
        ("--dropout", "0.5"),
        ("--batch-size", "8"),
        ("--seed", "1"),
        ("--learning-rate", "0.5"),
        ("--limit", "20"),
        ("--dataset", "fashion"),
        ("--optimizer", "sgd"),
        ("--lr-schedule", "cosine"),
        ("--beta1", "0.8"),
        ("--warmup-steps", "10"),
        ("--validation-split", "0.2"),
    ] {
        // Only --resume and the option under test (no fixture defaults like --hidden 16).
        let stderr = run_fails(
            Command::new(support::BINARY)
                .current_dir(work.temp.path())
                .args(["train", "--resume", checkpoint, option, value]),
            2,
        );
        assert!(
            stderr.contains(&format!("invalid value for {option}: {value}"))
                && stderr.contains("contradicts the checkpoint"),
            "{option}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let stderr = run_fails(
        work.train().args(["--resume", checkpoint, "--epochs", "1"]),
        2,
    );
    assert!(stderr.contains("--epochs"), "{stderr}");

    write_dataset(&work.path("other-data"), 40, 64, 99);
    let stderr = run_fails(
        Command::new(support::BINARY)
            .current_dir(work.temp.path())
            .args(["train", "--resume", checkpoint, "--data-dir", "other-data"]),
        2,
    );
    assert!(
        stderr.contains("--data-dir") && stderr.contains("is not the data"),
        "{stderr}"
    );
}

#[test]
fn checkpoint_option_errors() {
    let work = finished_run();
    let stderr = run_fails(work.train().args(["--checkpoint-dir", "ck"]), 2);
    assert!(stderr.contains("already holds checkpoints"), "{stderr}");
    let stderr = run_fails(work.train().args(["--checkpoint-every", "5"]), 2);
    assert!(stderr.contains("--checkpoint-every") && stderr.contains("needs --checkpoint-dir"));
    let stderr = run_fails(
        work.train()
            .args(["--checkpoint-dir", "new", "--keep-checkpoints", "0"]),
        2,
    );
    assert!(stderr.contains("--keep-checkpoints"), "{stderr}");
    let stderr = run_fails(
        work.train().args(["--resume", "ck", "--momentum", "0.9"]),
        2,
    );
    assert!(
        stderr.contains("--momentum") && stderr.contains("when resuming, leave out"),
        "{stderr}"
    );
    let stderr = run_fails(work.train().args(["--resume", "weights.bin"]), 1);
    assert!(
        stderr.contains("weights.bin: is a model file, not a checkpoint"),
        "{stderr}"
    );
    let stderr = run_fails(work.train().args(["--resume", "missing.ckpt"]), 1);
    assert!(stderr.contains("missing.ckpt"), "{stderr}");
    std::fs::create_dir(work.path("empty")).unwrap();
    let stderr = run_fails(work.train().args(["--resume", "empty"]), 1);
    assert!(
        stderr.contains("empty: holds no checkpoint files"),
        "{stderr}"
    );
}

#[test]
fn resume_continues_validation_early_stopping_and_restore_best_exactly() {
    let work = Workdir::new(60);
    let controls = [
        "--validation-split",
        "0.25",
        "--early-stopping",
        "2",
        "--restore-best",
        "--monitor",
        "val_accuracy",
    ];
    run_ok(work.train().args(controls).args([
        "--epochs",
        "4",
        "--checkpoint-dir",
        "ck",
        "--checkpoint-every",
        "2",
        "--keep-checkpoints",
        "1",
    ]));
    let files = list_checkpoints(&work.path("ck")).unwrap();
    let newest = Checkpoint::load(files.last().unwrap()).unwrap();
    assert!(newest.callback_state.contains_key("best_weights"));
    assert!(newest.callback_state.contains_key("early_stopping"));
    // Keep 1 plus the best epoch's checkpoint (unless the newest is the best).
    let best_epoch = newest.callback_state["best_weights"].values["epoch"]
        .as_u64()
        .unwrap() as usize;
    let best_name = format!("ckpt-e{best_epoch:04}-s0000000.ckpt");
    assert!(files.iter().any(|f| f.ends_with(&best_name)), "{files:?}");
    assert!(files.len() <= 2, "{files:?}");

    // Interrupt-and-resume from every epoch-end checkpoint of a second copy of the run.
    run_ok(work.train().args(controls).args([
        "--epochs",
        "4",
        "-o",
        "all.bin",
        "--checkpoint-dir",
        "all",
        "--keep-checkpoints",
        "10",
    ]));
    for file in list_checkpoints(&work.path("all")).unwrap() {
        let folder = work.path(&format!(
            "copy-{}",
            file.file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir(&folder).unwrap();
        std::fs::copy(&file, folder.join(file.file_name().unwrap())).unwrap();
        run_ok(
            Command::new(support::BINARY)
                .current_dir(work.temp.path())
                .args(["train", "--resume"])
                .arg(&folder)
                .args(["-o", "resumed.bin"]),
        );
        assert!(
            std::fs::read(work.path("resumed.bin")).unwrap()
                == std::fs::read(work.path("all.bin")).unwrap(),
            "resuming {} gave a different model",
            file.display()
        );
    }
    // The validation settings come from the checkpoint; contradicting them is refused.
    let stderr = run_fails(
        Command::new(support::BINARY)
            .current_dir(work.temp.path())
            .args(["train", "--resume", "ck", "--validation-split", "0.5"]),
        2,
    );
    assert!(stderr.contains("--validation-split"), "{stderr}");
}
