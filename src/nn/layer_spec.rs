//! The `--layers` language: a sequential stack written as comma-separated layer names, and shape
//! planning that checks the stack fits an input before anything is allocated.
//!
//! | layer        | meaning                                                     | example     |
//! |--------------|-------------------------------------------------------------|-------------|
//! | `conv<F>x<K>`| F filters of K×K, stride 1, no padding ("valid")            | `conv32x3`  |
//! | `relu`       | max(x, 0)                                                   | `relu`      |
//! | `pool<P>`    | P×P max-pooling, stride P (a leftover row/column is dropped)| `pool2`     |
//! | `flatten`    | image → vector (a no-op on the data: activations are NHWC)  | `flatten`   |
//! | `dropout<R>` | inverted dropout with rate R in [0, 1)                      | `dropout0.5`|
//! | `dense<N>`   | fully connected, N outputs                                  | `dense10`   |
//!
//! The `--arch` presets are named specs: [`CNN_SPEC`] and [`mlp_layers`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bounds on what a spec (from the command line or a model file) may ask for, so nothing is
/// allocated from an absurd number.
pub const MAX_LAYERS: usize = 64;
pub const MAX_WIDTH: usize = 65_536;
pub const MAX_KERNEL: usize = 64;
/// The most values one layer's output may hold per example.
pub const MAX_FEATURES: usize = 1 << 22;
/// The most parameters a stack may have.
pub const MAX_PARAMETERS: usize = 1 << 28;

/// One layer of a sequential stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerSpec {
    Conv { filters: usize, kernel: usize },
    Relu,
    MaxPool { size: usize },
    Flatten,
    Dropout { rate: f32 },
    Dense { units: usize },
}

/// The shape of one example as it flows through the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// height × width × channels, stored channels-last (NHWC).
    Image {
        height: usize,
        width: usize,
        channels: usize,
    },
    Flat(usize),
}

impl Shape {
    /// Values per example.
    pub fn len(self) -> usize {
        match self {
            Shape::Image {
                height,
                width,
                channels,
            } => height * width * channels,
            Shape::Flat(n) => n,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// An image's (height, width, channels); `None` for a flat vector.
    pub fn image(self) -> Option<(usize, usize, usize)> {
        match self {
            Shape::Image {
                height,
                width,
                channels,
            } => Some((height, width, channels)),
            Shape::Flat(_) => None,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Image {
                height,
                width,
                channels,
            } => write!(f, "{height}×{width}×{channels}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv { filters, kernel } => write!(f, "conv{filters}x{kernel}"),
            LayerSpec::Relu => write!(f, "relu"),
            LayerSpec::MaxPool { size } => write!(f, "pool{size}"),
            LayerSpec::Flatten => write!(f, "flatten"),
            LayerSpec::Dropout { rate } => write!(f, "dropout{rate}"),
            LayerSpec::Dense { units } => write!(f, "dense{units}"),
        }
    }
}

fn count(text: &str, what: &str, layer: &str, max: usize) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{layer:?}: {what} must be a whole number from 1 to {max}"
        )),
    }
}

impl FromStr for LayerSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let layer = text.trim();
        let lower = layer.to_ascii_lowercase();
        if lower == "relu" {
            return Ok(LayerSpec::Relu);
        }
        if lower == "flatten" {
            return Ok(LayerSpec::Flatten);
        }
        if let Some(rest) = lower.strip_prefix("conv") {
            let Some((filters, kernel)) = rest.split_once('x') else {
                return Err(format!(
                    "{layer:?}: write a convolution as conv<filters>x<kernel>, e.g. conv32x3"
                ));
            };
            return Ok(LayerSpec::Conv {
                filters: count(filters, "the number of filters", layer, MAX_WIDTH)?,
                kernel: count(kernel, "the kernel size", layer, MAX_KERNEL)?,
            });
        }
        if let Some(size) = lower.strip_prefix("pool") {
            return Ok(LayerSpec::MaxPool {
                size: count(size, "the pool size", layer, MAX_KERNEL)?,
            });
        }
        if let Some(units) = lower.strip_prefix("dense") {
            return Ok(LayerSpec::Dense {
                units: count(units, "the number of units", layer, MAX_WIDTH)?,
            });
        }
        if let Some(rate) = lower.strip_prefix("dropout") {
            return match rate.parse::<f32>() {
                Ok(rate) if (0.0..1.0).contains(&rate) => Ok(LayerSpec::Dropout { rate }),
                _ => Err(format!("{layer:?}: the dropout rate must be in [0, 1)")),
            };
        }
        Err(format!(
            "{layer:?} is not a layer (expected convFxK, relu, poolP, flatten, dropoutR or denseN)"
        ))
    }
}

/// Parses a comma-separated stack, e.g. `conv32x3,relu,pool2,flatten,dense10`.
pub fn parse_layers(spec: &str) -> Result<Vec<LayerSpec>, String> {
    let layers = spec
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<LayerSpec>, String>>()?;
    if layers.len() > MAX_LAYERS {
        return Err(format!("at most {MAX_LAYERS} layers"));
    }
    Ok(layers)
}

/// Joins a stack back into its `--layers` form.
pub fn format_layers(layers: &[LayerSpec]) -> String {
    let names: Vec<String> = layers.iter().map(LayerSpec::to_string).collect();
    names.join(",")
}

/// Keras' `mnist_convnet` as a spec.
pub const CNN_SPEC: &str = "conv32x3,relu,pool2,conv64x3,relu,pool2,flatten,dropout0.5,dense10";

/// The layer list of `--arch cnn`.
pub fn cnn_layers() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Conv {
            filters: 32,
            kernel: 3,
        },
        LayerSpec::Relu,
        LayerSpec::MaxPool { size: 2 },
        LayerSpec::Conv {
            filters: 64,
            kernel: 3,
        },
        LayerSpec::Relu,
        LayerSpec::MaxPool { size: 2 },
        LayerSpec::Flatten,
        LayerSpec::Dropout { rate: 0.5 },
        LayerSpec::Dense { units: 10 },
    ]
}

/// The MLP with the given hidden widths and dropout as a spec (what `--arch mlp` trains).
pub fn mlp_layers(hidden: &[usize], dropout: f32, outputs: usize) -> Vec<LayerSpec> {
    let mut layers = vec![LayerSpec::Flatten];
    for &units in hidden {
        layers.push(LayerSpec::Dense { units });
        layers.push(LayerSpec::Relu);
        if dropout > 0.0 {
            layers.push(LayerSpec::Dropout { rate: dropout });
        }
    }
    layers.push(LayerSpec::Dense { units: outputs });
    layers
}

/// Input and output shape of every layer, checked: an error names the layer (1-based position
/// and its spec) that does not fit, and why.
pub fn plan_shapes(
    layers: &[LayerSpec],
    input: Shape,
    outputs: usize,
) -> Result<Vec<(Shape, Shape)>, String> {
    if layers.is_empty() {
        return Err("the layer list is empty".to_string());
    }
    if layers.len() > MAX_LAYERS {
        return Err(format!("at most {MAX_LAYERS} layers"));
    }
    let mut shape = input;
    let mut planned = Vec::with_capacity(layers.len());
    let mut parameters = 0usize;
    for (index, layer) in layers.iter().enumerate() {
        let fail = |why: String| format!("layer {} ({layer}) does not fit: {why}", index + 1);
        let next = match (*layer, shape.image()) {
            (LayerSpec::Conv { filters, kernel }, Some((height, width, channels))) => {
                if kernel > height || kernel > width {
                    return Err(fail(format!(
                        "a {kernel}×{kernel} kernel is larger than its {shape} input"
                    )));
                }
                parameters = parameters.saturating_add((kernel * kernel * channels + 1) * filters);
                Shape::Image {
                    height: height - kernel + 1,
                    width: width - kernel + 1,
                    channels: filters,
                }
            }
            (LayerSpec::MaxPool { size }, Some((height, width, channels))) => {
                if size > height || size > width {
                    return Err(fail(format!(
                        "a {size}×{size} pool is larger than its {shape} input"
                    )));
                }
                Shape::Image {
                    height: height / size,
                    width: width / size,
                    channels,
                }
            }
            (LayerSpec::Conv { .. } | LayerSpec::MaxPool { .. }, None) => {
                return Err(fail(format!(
                    "it needs an image but gets a flat vector of {shape} values (put it before flatten)"
                )))
            }
            (LayerSpec::Flatten, _) => Shape::Flat(shape.len()),
            (LayerSpec::Dense { units }, None) => {
                let n = shape.len();
                parameters = parameters.saturating_add(n.saturating_mul(units) + units);
                Shape::Flat(units)
            }
            (LayerSpec::Dense { .. }, Some(_)) => {
                return Err(fail(format!(
                    "it needs a flat vector but gets a {shape} image (put flatten before it)"
                )))
            }
            (LayerSpec::Relu | LayerSpec::Dropout { .. }, _) => shape,
        };
        if next.len() > MAX_FEATURES {
            return Err(fail(format!(
                "its output has {} values per example (at most {MAX_FEATURES})",
                next.len()
            )));
        }
        if parameters > MAX_PARAMETERS {
            return Err(fail(format!(
                "the network would have more than {MAX_PARAMETERS} parameters"
            )));
        }
        planned.push((shape, next));
        shape = next;
    }
    if shape != Shape::Flat(outputs) {
        return Err(format!(
            "the last layer ({}) gives {shape} values per example but there are {outputs} classes (end with dense{outputs})",
            layers[layers.len() - 1]
        ));
    }
    Ok(planned)
}

/// Model files and checkpoints store a layer as its spec string ("conv32x3").
impl Serialize for LayerSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MNIST: Shape = Shape::Image {
        height: 28,
        width: 28,
        channels: 1,
    };

    #[test]
    fn the_cnn_preset_reads_back_from_its_spec() {
        assert_eq!(parse_layers(CNN_SPEC), Ok(cnn_layers()));
        assert_eq!(format_layers(&cnn_layers()), CNN_SPEC);
    }

    #[test]
    fn every_layer_round_trips_through_its_text() {
        for text in [
            "conv7x5",
            "relu",
            "pool3",
            "flatten",
            "dropout0.25",
            "dense64",
        ] {
            let layer: LayerSpec = text.parse().unwrap();
            assert_eq!(layer.to_string(), text);
        }
        assert_eq!(
            " Conv8X3 ".parse(),
            Ok(LayerSpec::Conv {
                filters: 8,
                kernel: 3
            })
        );
    }

    #[test]
    fn malformed_layers_are_rejected_with_the_layer_named() {
        for (text, needle) in [
            ("conv32", "conv<filters>x<kernel>"),
            ("conv0x3", "filters"),
            ("conv3x0", "kernel"),
            ("pool", "pool size"),
            ("dropout1", "[0, 1)"),
            ("dropout-0.1", "[0, 1)"),
            ("dense", "units"),
            ("sigmoid", "not a layer"),
            ("", "not a layer"),
        ] {
            let error = text.parse::<LayerSpec>().unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
            assert!(error.contains(&format!("{text:?}")), "{text}: {error}");
        }
    }

    #[test]
    fn the_cnn_shapes_follow_keras_summary() {
        let shapes = plan_shapes(&cnn_layers(), MNIST, 10).unwrap();
        // Height×width×channels of an image, the length of a flat vector.
        let outs: Vec<String> = shapes.iter().map(|(_, out)| out.to_string()).collect();
        #[rustfmt::skip]
        let keras = ["26×26×32", "26×26×32", "13×13×32", "11×11×64", "11×11×64", "5×5×64", "1600", "1600", "10"];
        assert_eq!(outs, keras);
        assert!(matches!(shapes[5].1, Shape::Image { .. }));
        assert!(matches!(shapes[6].1, Shape::Flat(1600)));
    }

    #[test]
    fn shape_errors_name_the_layer_that_does_not_fit() {
        let plan = |spec: &str| plan_shapes(&parse_layers(spec).unwrap(), MNIST, 10);
        let cases: [(&str, &[&str]); 5] = [
            ("conv8x3,dense10", &["layer 2 (dense10)", "flatten"]),
            ("flatten,conv8x3,dense10", &["layer 2 (conv8x3)"]),
            ("pool8,pool8,flatten,dense10", &["layer 2 (pool8)", "3×3×1"]),
            ("conv4x29,flatten,dense10", &["layer 1 (conv4x29)"]),
            ("flatten,dense12", &["dense12", "10 classes"]),
        ];
        for (spec, needles) in cases {
            let error = plan(spec).expect_err(spec);
            for needle in needles {
                assert!(error.contains(needle), "{spec}: {needle:?} not in {error}");
            }
        }
        assert!(plan("conv4x28,flatten,dense10").is_ok());
    }

    #[test]
    fn the_mlp_preset_spec_has_the_mlp_shapes() {
        let layers = mlp_layers(&[128], 0.2, 10);
        assert_eq!(
            format_layers(&layers),
            "flatten,dense128,relu,dropout0.2,dense10"
        );
        let shapes = plan_shapes(&layers, MNIST, 10).unwrap();
        assert_eq!(shapes[1], (Shape::Flat(784), Shape::Flat(128)));
    }
}
