//! The container frame around fuzz input: the decoders' checksum rejects almost every input, so
//! each input is also tried sealed (valid magic, version and CRC-32) to reach the header parsing.

use mnist_train::model_file::{FORMAT_VERSION, MAGIC};

/// `data` between a valid magic and version and its CRC-32.
pub fn sealed(data: &[u8]) -> Vec<u8> {
    let mut sealed = MAGIC.to_vec();
    sealed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    sealed.extend_from_slice(data);
    let crc = crc32fast::hash(&sealed);
    sealed.extend_from_slice(&crc.to_le_bytes());
    sealed
}
