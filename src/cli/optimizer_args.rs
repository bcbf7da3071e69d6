//! `train`'s options that choose the optimizer, its hyperparameters and the learning-rate
//! schedule. Defaults follow Keras so results are comparable with the tutorial.

use clap::{Args, ValueEnum};

use crate::cli::{positive, require};
use crate::error::{Error, Result};
use crate::optim::schedule::{LrSchedule, ScheduleKind, Warmup};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::train::Recipe;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Optimizer")]
pub struct OptimizerArgs {
    /// Update rule
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    pub optimizer: OptimizerName,
    /// Step size [default: 0.001 for adam (0.002 with --arch cnn or --layers) and rmsprop, 0.01 for sgd, momentum and nesterov]
    #[arg(long, value_name = "LR", allow_hyphen_values = true)]
    pub learning_rate: Option<f32>,
    /// Momentum coefficient, for momentum and nesterov [default: 0.9]
    #[arg(long, value_name = "M", allow_hyphen_values = true)]
    pub momentum: Option<f32>,
    /// Adam's decay rate of the gradient average [default: 0.9]
    #[arg(long, allow_hyphen_values = true)]
    pub beta1: Option<f32>,
    /// Adam's decay rate of the squared-gradient average [default: 0.999]
    #[arg(long, allow_hyphen_values = true)]
    pub beta2: Option<f32>,
    /// Constant that keeps adam's and rmsprop's denominator away from zero [default: 1e-7]
    #[arg(long, allow_hyphen_values = true)]
    pub epsilon: Option<f32>,
    /// RMSprop's decay rate of the squared-gradient average [default: 0.9]
    #[arg(long, allow_hyphen_values = true)]
    pub rho: Option<f32>,
    /// Decoupled weight decay (AdamW), adam only: every step also does p -= lr * wd * p [default: 0]
    #[arg(long, value_name = "WD", allow_hyphen_values = true)]
    pub weight_decay: Option<f32>,

    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

/// `train`'s options that shape the learning rate over the run.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Learning-rate schedule")]
pub struct ScheduleArgs {
    /// How the learning rate changes during training, computed before every step (--arch cnn and --layers: cosine) [default: constant]
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleName>,
    /// step: epochs between decays [default: 2]
    #[arg(long, value_name = "EPOCHS", value_parser = crate::cli::at_least_one::<usize>)]
    pub lr_step_size: Option<usize>,
    /// step and exponential: factor applied per decay (step) or per epoch (exponential) [default: 0.5]
    #[arg(long, value_name = "GAMMA", allow_hyphen_values = true)]
    pub lr_decay: Option<f32>,
    /// cosine: the learning rate reached at the end of training [default: 0]
    #[arg(long, value_name = "LR", allow_hyphen_values = true)]
    pub lr_min: Option<f32>,
    /// Linear warm-up from lr/W to lr over this many epochs (fractions allowed) before the schedule
    #[arg(
        long,
        value_name = "EPOCHS",
        allow_hyphen_values = true,
        conflicts_with = "warmup_steps"
    )]
    pub warmup_epochs: Option<f32>,
    /// Linear warm-up over this many optimization steps before the schedule
    #[arg(long, value_name = "STEPS", value_parser = crate::cli::at_least_one::<u64>)]
    pub warmup_steps: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerName {
    /// Plain gradient descent, p -= lr * g (stochastic, mini-batch or full-batch by --batch-size)
    Sgd,
    /// SGD with heavy-ball momentum
    Momentum,
    /// SGD with Nesterov momentum
    Nesterov,
    /// Adam (AdamW with --weight-decay)
    Adam,
    /// RMSprop
    Rmsprop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleName {
    /// The same rate throughout
    Constant,
    /// Multiply by --lr-decay every --lr-step-size epochs
    Step,
    /// Multiply by --lr-decay per epoch, smoothly (a little every step)
    Exponential,
    /// Half a cosine from the learning rate down to --lr-min at the end of training
    Cosine,
}

impl OptimizerArgs {
    /// Checks the values and their combinations; returns the optimizer, the base learning rate
    /// and the schedule, taking `recipe`'s defaults where no option is given. Errors name the option.
    pub fn resolve(&self, recipe: &Recipe) -> Result<(OptimizerConfig, f32, LrSchedule)> {
        let name = self.optimizer;
        let given = |option: &str, value: Option<f32>, allowed: &[OptimizerName]| {
            let chosen = ("--optimizer", name);
            applies_only_to(
                option,
                value.is_some(),
                allowed,
                chosen,
                OptimizerName::as_str,
            )
        };
        use OptimizerName::*;
        given("--momentum", self.momentum, &[Momentum, Nesterov])?;
        given("--beta1", self.beta1, &[Adam])?;
        given("--beta2", self.beta2, &[Adam])?;
        given("--weight-decay", self.weight_decay, &[Adam])?;
        given("--epsilon", self.epsilon, &[Adam, Rmsprop])?;
        given("--rho", self.rho, &[Rmsprop])?;

        // Keras' defaults (one place: `OptimizerConfig::defaults`), with the given values.
        let config = match OptimizerConfig::defaults(name.kind()) {
            OptimizerConfig::Sgd => OptimizerConfig::Sgd,
            OptimizerConfig::Momentum { momentum } => OptimizerConfig::Momentum {
                momentum: unit_interval("--momentum", self.momentum.unwrap_or(momentum))?,
            },
            OptimizerConfig::Nesterov { momentum } => OptimizerConfig::Nesterov {
                momentum: unit_interval("--momentum", self.momentum.unwrap_or(momentum))?,
            },
            OptimizerConfig::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => OptimizerConfig::Adam {
                beta1: unit_interval("--beta1", self.beta1.unwrap_or(beta1))?,
                beta2: unit_interval("--beta2", self.beta2.unwrap_or(beta2))?,
                epsilon: positive("--epsilon", self.epsilon.unwrap_or(epsilon))?,
                weight_decay: non_negative(
                    "--weight-decay",
                    self.weight_decay.unwrap_or(weight_decay),
                )?,
            },
            OptimizerConfig::Rmsprop { rho, epsilon } => OptimizerConfig::Rmsprop {
                rho: unit_interval("--rho", self.rho.unwrap_or(rho))?,
                epsilon: positive("--epsilon", self.epsilon.unwrap_or(epsilon))?,
            },
        };
        let learning_rate = positive(
            "--learning-rate",
            self.learning_rate.unwrap_or_else(|| match config {
                OptimizerConfig::Adam { .. } => recipe.adam_learning_rate,
                _ => config.default_learning_rate(),
            }),
        )?;
        Ok((
            config,
            learning_rate,
            self.schedule.resolve(learning_rate, recipe)?,
        ))
    }
}

impl ScheduleArgs {
    /// The schedule for base rate `learning_rate`, `recipe`'s where no option is given.
    fn resolve(&self, learning_rate: f32, recipe: &Recipe) -> Result<LrSchedule> {
        let schedule = self.lr_schedule.unwrap_or(if recipe.cosine_schedule {
            ScheduleName::Cosine
        } else {
            ScheduleName::Constant
        });
        let only_for = |option: &str, given: bool, allowed: &[ScheduleName]| {
            let chosen = ("--lr-schedule", schedule);
            applies_only_to(option, given, allowed, chosen, ScheduleName::as_str)
        };
        only_for(
            "--lr-step-size",
            self.lr_step_size.is_some(),
            &[ScheduleName::Step],
        )?;
        only_for(
            "--lr-decay",
            self.lr_decay.is_some(),
            &[ScheduleName::Step, ScheduleName::Exponential],
        )?;
        only_for("--lr-min", self.lr_min.is_some(), &[ScheduleName::Cosine])?;

        let gamma = self.lr_decay.unwrap_or(ScheduleKind::DEFAULT_GAMMA);
        if !(gamma > 0.0 && gamma <= 1.0) {
            return Err(Error::config("--lr-decay", "must be in (0, 1]"));
        }
        let kind = match schedule {
            ScheduleName::Constant => ScheduleKind::Constant,
            ScheduleName::Step => {
                let step_size = self.lr_step_size.unwrap_or(ScheduleKind::DEFAULT_STEP_SIZE);
                ScheduleKind::Step { step_size, gamma }
            }
            ScheduleName::Exponential => ScheduleKind::Exponential { gamma },
            ScheduleName::Cosine => {
                let min_learning_rate = non_negative("--lr-min", self.lr_min.unwrap_or(0.0))?;
                if min_learning_rate > learning_rate {
                    return Err(Error::config(
                        "--lr-min",
                        format!("{min_learning_rate} is above --learning-rate {learning_rate}"),
                    ));
                }
                ScheduleKind::Cosine { min_learning_rate }
            }
        };
        let warmup = match (self.warmup_epochs, self.warmup_steps) {
            (Some(epochs), _) => {
                if !(epochs.is_finite() && epochs > 0.0) {
                    return Err(Error::config(
                        "--warmup-epochs",
                        "must be a positive number",
                    ));
                }
                Warmup::Epochs(epochs)
            }
            (None, Some(steps)) => Warmup::Steps(steps),
            (None, None) => Warmup::None,
        };
        Ok(LrSchedule { kind, warmup })
    }
}

impl OptimizerName {
    pub fn kind(self) -> OptimizerKind {
        match self {
            OptimizerName::Sgd => OptimizerKind::Sgd,
            OptimizerName::Momentum => OptimizerKind::Momentum,
            OptimizerName::Nesterov => OptimizerKind::Nesterov,
            OptimizerName::Adam => OptimizerKind::Adam,
            OptimizerName::Rmsprop => OptimizerKind::Rmsprop,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.kind().name()
    }
}

impl ScheduleName {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleName::Constant => "constant",
            ScheduleName::Step => "step",
            ScheduleName::Exponential => "exponential",
            ScheduleName::Cosine => "cosine",
        }
    }
}

/// Refuses `option` when `given` unless the value chosen for another option (that option and
/// its value; `name` spells values) is one of `allowed`: e.g. --momentum applies only to
/// --optimizer momentum or nesterov.
fn applies_only_to<T: Copy + PartialEq>(
    option: &str,
    given: bool,
    allowed: &[T],
    (chosen_option, chosen): (&str, T),
    name: fn(T) -> &'static str,
) -> Result<()> {
    if !given || allowed.contains(&chosen) {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed.iter().map(|&value| name(value)).collect();
    Err(Error::config(
        option,
        format!(
            "applies only to {chosen_option} {}, not {}",
            allowed.join(" or "),
            name(chosen)
        ),
    ))
}

/// A finite value ≥ 0.
fn non_negative(option: &str, value: f32) -> Result<f32> {
    let check = value.is_finite() && value >= 0.0;
    require(option, value, check, "be zero or positive")
}

/// A decay or momentum coefficient in [0, 1).
fn unit_interval(option: &str, value: f32) -> Result<f32> {
    require(option, value, (0.0..1.0).contains(&value), "be in [0, 1)")
}
