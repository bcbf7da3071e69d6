//! Options whose value is one of a few named choices (`--kernel`, `--color`, `--invert`): each
//! enum lists its choices, their names and what they do once, here in the library; parsing
//! (`FromStr`), printing (`Display`) and the command line's possible values all come from that.

/// An enum of named choices.
pub trait Choice: Copy + PartialEq + 'static {
    /// Every choice with its name and what it does in a few words (shown by `--help`; `None`
    /// where the name says it), in the order they are listed.
    const CHOICES: &'static [(Self, &'static str, Option<&'static str>)];

    /// The name a user types.
    fn name(self) -> &'static str {
        self.entry().1
    }

    /// What the choice does, if the name does not say it.
    fn description(self) -> Option<&'static str> {
        self.entry().2
    }

    /// This choice's row of [`Choice::CHOICES`].
    fn entry(self) -> &'static (Self, &'static str, Option<&'static str>) {
        Self::CHOICES
            .iter()
            .find(|(choice, _, _)| *choice == self)
            .expect("every choice has a row in CHOICES")
    }
}

/// The choice named `name`, or an error listing the names.
pub fn parse<T: Choice>(name: &str) -> Result<T, String> {
    T::CHOICES
        .iter()
        .find(|(_, known, _)| *known == name)
        .map(|&(choice, _, _)| choice)
        .ok_or_else(|| {
            let names: Vec<&str> = T::CHOICES.iter().map(|(_, name, _)| *name).collect();
            format!("unknown choice {name:?} (expected {})", names.join(", "))
        })
}

/// Declares an enum of named choices: each variant with the name a user types and, unless the
/// name says it, what it does. Implements [`Choice`], `Display` (the name) and `FromStr` (by name).
///
/// ```ignore
/// choices! {
///     pub enum Invert {
///         #[default]
///         Auto = "auto": "Invert when the border is light",
///         Never = "never",
///     }
/// }
/// ```
macro_rules! choices {
    (
        $(#[$meta:meta])*
        pub enum $type:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $name:literal $(: $help:literal)?,
            )+
        }
    ) => {
        $(#[$meta])*
        pub enum $type {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $crate::choice::Choice for $type {
            const CHOICES: &'static [(Self, &'static str, Option<&'static str>)] = &[
                $(($type::$variant, $name, $crate::choice::help!($($help)?)),)+
            ];
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;

            fn from_str(name: &str) -> Result<Self, String> {
                $crate::choice::parse(name)
            }
        }
    };
}
pub(crate) use choices;

/// A choice's help: `None` without one.
macro_rules! help {
    () => {
        None
    };
    ($help:literal) => {
        Some($help)
    };
}
pub(crate) use help;
