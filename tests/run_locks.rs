//! One run at a time per checkpoint folder and model file, through real concurrent processes: a
//! second run is refused naming the folder (or file) and the holder's pid; a SIGKILLed holder
//! never blocks the next run; and a folder mixing two runs' checkpoints is not resumed blindly.

use crate::support::{run_fails, run_ok, send_signal, spawn_until, Workdir};

#[test]
fn a_second_run_on_a_busy_checkpoint_folder_or_model_file_is_refused_naming_the_holder() {
    let work = Workdir::new(200);
    // Practically endless; "Loaded" is printed after the run has taken its locks.
    let (mut first, stderr) = spawn_until(
        work.endless_train()
            .args(["--checkpoint-dir", "ck", "-o", "first.bin"]),
        "Loaded",
    );
    let holder = format!("(pid {})", first.id());

    let message = run_fails(
        work.train()
            .args(["--seed", "7", "--checkpoint-dir", "ck", "-o", "second.bin"]),
        2,
    );
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    assert!(
        message.starts_with("error: invalid value for --checkpoint-dir: ck is in use"),
        "{message}"
    );
    assert!(message.contains(&holder), "{message}");

    // Resuming the busy folder is refused the same way.
    let message = run_fails(work.train().args(["--resume", "ck", "-o", "second.bin"]), 2);
    assert!(message.contains("--resume: ck is in use"), "{message}");
    assert!(message.contains(&holder), "{message}");

    // Another folder but the same model file: refused naming the file.
    let message = run_fails(
        work.train().args([
            "--seed",
            "7",
            "--checkpoint-dir",
            "other",
            "-o",
            "first.bin",
        ]),
        2,
    );
    assert!(
        message.contains("--output: first.bin is in use"),
        "{message}"
    );
    assert!(message.contains(&holder), "{message}");

    send_signal(first.id(), "INT");
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", stderr.join().unwrap());
    // The refused runs wrote nothing into the folder: it resumes as the first run's.
    let all = list_names(&work.path("ck"));
    assert!(all.iter().all(|name| name.starts_with("ckpt-")), "{all:?}");
}

#[test]
fn a_lock_left_by_a_sigkilled_run_does_not_block_the_next_run() {
    let work = Workdir::new(200);
    // By the time the second epoch reports, the first epoch's checkpoint is on disk.
    let (mut first, stderr) = spawn_until(
        work.endless_train().args(["--checkpoint-dir", "ck"]),
        "Epoch 2/",
    );
    let pid = first.id();
    send_signal(pid, "KILL");
    first.wait().unwrap();
    stderr.join().unwrap();
    // The killed run could not clean up: its lock file, with its pid, is still there.
    let lock_file = work.path("ck").join(".mnist-train.lock");
    assert_eq!(
        std::fs::read_to_string(&lock_file).unwrap().trim(),
        pid.to_string()
    );

    // Same folder, same (default) model file: the OS released both locks with the process.
    let resumed = run_ok(work.train().args(["--resume", "ck", "--epochs", "3"]));
    let text = String::from_utf8_lossy(&resumed.stderr);
    assert!(text.contains("Resum"), "{text}");
    assert!(work.path("weights.bin").exists());
    assert!(!lock_file.exists(), "a finished run removes its lock file");
}

#[test]
fn resuming_a_folder_that_mixes_two_runs_is_refused_naming_what_differs() {
    let work = Workdir::new(40);
    let train = |seed: &str, epochs: &str, dir: &str| {
        run_ok(work.train().args([
            "--seed",
            seed,
            "--epochs",
            epochs,
            "--checkpoint-dir",
            dir,
            "-o",
            &format!("{dir}.bin"),
        ]));
    };
    train("42", "2", "a");
    train("7", "1", "b");
    // What two runs writing into one folder leave: the second run's first checkpoint replaced
    // the first run's file of the same name.
    let name = "ckpt-e0001-s0000000.ckpt";
    std::fs::copy(work.path("b").join(name), work.path("a").join(name)).unwrap();

    let message = run_fails(work.train().args(["--resume", "a", "--epochs", "3"]), 1);
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    assert!(
        message.contains("holds checkpoints of different runs"),
        "{message}"
    );
    assert!(message.contains("seed (42 vs 7)"), "{message}");
    assert!(
        message.contains("ckpt-e0002-s0000000.ckpt and ckpt-e0001-s0000000.ckpt"),
        "{message}"
    );

    // Naming one file resumes that run.
    run_ok(work.train().args([
        "--resume",
        "a/ckpt-e0002-s0000000.ckpt",
        "--epochs",
        "3",
        "-o",
        "a.bin",
    ]));
}

fn list_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
