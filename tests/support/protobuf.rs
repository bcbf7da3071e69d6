//! A protobuf wire-format reader written from the encoding specification (key = field number
//! << 3 | wire type; varints, length-delimited bytes, fixed 32/64-bit), so that tests read the
//! ONNX and TensorBoard files we write without our own message declarations.

/// One protobuf field: its number and its value by wire type.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
}

pub fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// Splits a message into its fields (protobuf encoding: key = field << 3 | wire type).
pub fn fields(bytes: &[u8]) -> Vec<(u64, Value<'_>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let value = match key & 7 {
            0 => Value::Varint(read_varint(bytes, &mut at)),
            1 => {
                at += 8;
                Value::Fixed64(bytes[at - 8..at].try_into().unwrap())
            }
            2 => {
                let length = read_varint(bytes, &mut at) as usize;
                at += length;
                Value::Bytes(&bytes[at - length..at])
            }
            5 => {
                at += 4;
                Value::Fixed32(bytes[at - 4..at].try_into().unwrap())
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.push((key >> 3, value));
    }
    assert_eq!(at, bytes.len(), "the last field ends exactly at the end");
    out
}

pub fn messages(bytes: &[u8], field: u64) -> Vec<&[u8]> {
    fields(bytes)
        .into_iter()
        .filter(|(number, _)| *number == field)
        .map(|(_, value)| match value {
            Value::Bytes(inner) => inner,
            other => panic!("field {field} is {other:?}, expected length-delimited"),
        })
        .collect()
}

pub fn string(bytes: &[u8], field: u64) -> String {
    messages(bytes, field)
        .last()
        .map(|raw| String::from_utf8(raw.to_vec()).unwrap())
        .unwrap_or_default()
}

pub fn strings(bytes: &[u8], field: u64) -> Vec<String> {
    messages(bytes, field)
        .into_iter()
        .map(|raw| String::from_utf8(raw.to_vec()).unwrap())
        .collect()
}

/// The last value of field `field` that `convert` takes (a field of another wire type is skipped).
fn last<T>(bytes: &[u8], field: u64, convert: impl Fn(Value) -> Option<T>) -> Option<T> {
    fields(bytes)
        .into_iter()
        .rev()
        .filter(|(number, _)| *number == field)
        .find_map(|(_, value)| convert(value))
}

/// The last `int64` (varint) of field `field`.
pub fn int(bytes: &[u8], field: u64) -> Option<i64> {
    last(bytes, field, |value| match value {
        Value::Varint(v) => Some(v as i64),
        _ => None,
    })
}

/// A repeated int64, packed or not (parsers must accept both).
pub fn ints(bytes: &[u8], field: u64) -> Vec<i64> {
    let mut out = Vec::new();
    for (number, value) in fields(bytes) {
        match value {
            Value::Varint(v) if number == field => out.push(v as i64),
            Value::Bytes(packed) if number == field => {
                let mut at = 0;
                while at < packed.len() {
                    out.push(read_varint(packed, &mut at) as i64);
                }
            }
            _ => {}
        }
    }
    out
}

/// The last `double` (fixed64) of field `field`.
pub fn double(bytes: &[u8], field: u64) -> Option<f64> {
    last(bytes, field, |value| match value {
        Value::Fixed64(raw) => Some(f64::from_le_bytes(raw)),
        _ => None,
    })
}

/// The last `float` (fixed32) of field `field`.
pub fn float(bytes: &[u8], field: u64) -> Option<f32> {
    last(bytes, field, |value| match value {
        Value::Fixed32(raw) => Some(f32::from_le_bytes(raw)),
        _ => None,
    })
}
