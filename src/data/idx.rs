//! The IDX file format (LeCun's MNIST format), gzip-compressed or raw.
//!
//! Layout: two zero bytes, an element-type byte (0x08 = unsigned byte), a dimension count,
//! one big-endian u32 per dimension, then the elements in row-major order.
//! Every header field is checked against what the file can actually hold *before* anything
//! sized by the header is allocated, so a lying header cannot make us allocate gigabytes.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use byteorder::{BigEndian, ReadBytesExt};
use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};
use crate::kernels::bytes_with_huge_pages;

/// IDX element type code for unsigned bytes, the only type MNIST uses.
const TYPE_U8: u8 = 0x08;
/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Deflate cannot expand data by more than about 1032:1, so a gzip file of `n` bytes holds at most
/// this many times `n` bytes of payload; headers claiming more are lies.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// A check of the dimensions that runs right after the header is parsed, before the body is
/// read (e.g. "images must be 28×28"); the error message is reported with the file name.
pub type DimsCheck<'a> = &'a dyn Fn(&[usize]) -> Result<(), String>;

/// The smallest possible gzip file: 10-byte header, empty deflate block, 8-byte trailer.
const MIN_GZIP_LEN: u64 = 18;

/// Reads an IDX file of unsigned bytes with exactly `expected_ndims` dimensions.
/// Gzip is detected from the magic bytes, never from the file name.
pub fn read_idx_file(path: &Path, expected_ndims: usize) -> Result<IdxArray> {
    read_idx_file_checked(path, expected_ndims, &|_| Ok(()))
}

/// [`read_idx_file`], also running `check` on the header's dimensions before reading the body.
pub fn read_idx_file_checked(
    path: &Path,
    expected_ndims: usize,
    check: DimsCheck,
) -> Result<IdxArray> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if metadata.is_dir() {
        return Err(Error::data(path, "is a directory, expected an IDX file"));
    }
    let file_len = metadata.len();
    if file_len == 0 {
        return Err(Error::data(path, "is empty, expected an IDX file"));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    read_idx_source(file, file_len, expected_ndims, check, false).map_err(|e| e.at(path))
}

/// Only the dimensions of an IDX file (header checks included), without reading its body:
/// lets a loader cross-check two files before reading either.
pub fn read_idx_file_header(path: &Path, expected_ndims: usize) -> Result<Vec<usize>> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if metadata.is_dir() {
        return Err(Error::data(path, "is a directory, expected an IDX file"));
    }
    if metadata.len() == 0 {
        return Err(Error::data(path, "is empty, expected an IDX file"));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    read_idx_source(file, metadata.len(), expected_ndims, &|_| Ok(()), true)
        .map(|array| array.dims)
        .map_err(|e| e.at(path))
}

/// Parses IDX bytes held in memory, gzip-compressed or raw (used by property tests and fuzzing,
/// which exercise exactly the code path files take).
pub fn read_idx_bytes(bytes: &[u8], expected_ndims: usize) -> Result<IdxArray, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError("is empty, expected an IDX file".to_string()));
    }
    read_idx_source(
        std::io::Cursor::new(bytes),
        bytes.len() as u64,
        expected_ndims,
        &|_| Ok(()),
        false,
    )
}

/// Detects gzip by its magic bytes and parses the (decompressed) IDX stream of `len` bytes;
/// with `header_only`, stops after the header (the array's data is left empty).
fn read_idx_source<R: Read + Seek>(
    mut source: R,
    len: u64,
    expected_ndims: usize,
    check: DimsCheck,
    header_only: bool,
) -> Result<IdxArray, ParseError> {
    let read_error = |e: std::io::Error| ParseError(format!("read error: {e}"));
    let mut magic = [0u8; 2];
    let is_gzip = len >= 2 && {
        source.read_exact(&mut magic).map_err(read_error)?;
        source.seek(SeekFrom::Start(0)).map_err(read_error)?;
        magic == GZIP_MAGIC
    };
    if !is_gzip {
        let limits = SizeLimits {
            max_payload: len,
            gzip_declared_size: None,
        };
        return read_stream(
            BufReader::new(source),
            expected_ndims,
            limits,
            check,
            header_only,
        );
    }
    if len < MIN_GZIP_LEN {
        return Err(ParseError(format!(
            "truncated gzip stream ({len} bytes; a gzip file has at least {MIN_GZIP_LEN})"
        )));
    }
    // The gzip trailer stores the uncompressed size modulo 2^32: a cheap cross-check.
    source.seek(SeekFrom::End(-4)).map_err(read_error)?;
    let declared_size = source
        .read_u32::<byteorder::LittleEndian>()
        .map_err(read_error)?;
    source.seek(SeekFrom::Start(0)).map_err(read_error)?;
    let limits = SizeLimits {
        max_payload: len.saturating_mul(MAX_DEFLATE_RATIO),
        gzip_declared_size: Some(declared_size),
    };
    read_stream(
        MultiGzDecoder::new(BufReader::new(source)),
        expected_ndims,
        limits,
        check,
        header_only,
    )
}

fn read_stream(
    mut reader: impl Read,
    expected_ndims: usize,
    limits: SizeLimits,
    check: DimsCheck,
    header_only: bool,
) -> Result<IdxArray, ParseError> {
    if header_only {
        let dims = parse_header(&mut reader, expected_ndims, limits)?;
        check(&dims).map_err(ParseError)?;
        return Ok(IdxArray {
            dims,
            data: Vec::new(),
        });
    }
    read_idx_checked(reader, expected_ndims, limits, check)
}

/// What the container can hold, used to reject impossible headers before allocating.
#[derive(Debug, Clone, Copy)]
pub struct SizeLimits {
    /// An upper bound on the total number of bytes (header + elements) the stream can yield.
    pub max_payload: u64,
    /// For gzip: the uncompressed size modulo 2^32 from the gzip trailer.
    pub gzip_declared_size: Option<u32>,
}

/// A parse failure without a file name yet; [`ParseError::at`] attaches it.
#[derive(Debug)]
pub struct ParseError(pub String);

impl ParseError {
    pub fn at(self, path: &Path) -> Error {
        Error::data(path, self.0)
    }
}

fn describe_read_error(error: std::io::Error, what: &str) -> ParseError {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            ParseError(format!("truncated {what} (the file ends early)"))
        }
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            ParseError(format!("corrupt gzip stream while reading {what}: {error}"))
        }
        _ => ParseError(format!("read error in {what}: {error}")),
    }
}

/// Parses an IDX stream. `limits` bounds what the header may claim.
pub fn read_idx(
    reader: impl Read,
    expected_ndims: usize,
    limits: SizeLimits,
) -> Result<IdxArray, ParseError> {
    read_idx_checked(reader, expected_ndims, limits, &|_| Ok(()))
}

/// [`read_idx`], also running `check` on the dimensions before reading the body.
pub fn read_idx_checked(
    mut reader: impl Read,
    expected_ndims: usize,
    limits: SizeLimits,
    check: DimsCheck,
) -> Result<IdxArray, ParseError> {
    let dims = parse_header(&mut reader, expected_ndims, limits)?;
    check(&dims).map_err(ParseError)?;
    let element_count: usize = dims.iter().product();
    // Grow with the data actually read, never trusting the header for a large allocation. Huge
    // pages for the images, which training reads in random order.
    let mut data = bytes_with_huge_pages(element_count.min(1 << 26));
    let read = (&mut reader)
        .take(element_count as u64)
        .read_to_end(&mut data)
        .map_err(|e| describe_read_error(e, "data"))?;
    if read != element_count {
        return Err(ParseError(format!(
            "truncated: header claims {} ({element_count} bytes of data) but only {read} bytes follow",
            describe_dims(&dims)
        )));
    }
    // Anything after the declared data means the header and the body disagree.
    let mut extra = [0u8; 1];
    match reader.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(ParseError(format!(
                "has more data than its header declares ({})",
                describe_dims(&dims)
            )))
        }
        Err(e) => return Err(describe_read_error(e, "data")),
    }
    Ok(IdxArray { dims, data })
}

/// Parses and checks the header (magic, type, dimensions) against what the source can hold.
fn parse_header(
    reader: &mut impl Read,
    expected_ndims: usize,
    limits: SizeLimits,
) -> Result<Vec<usize>, ParseError> {
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|e| describe_read_error(e, "header"))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(ParseError(format!(
            "not an IDX file (magic bytes {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 {:02x})",
            magic[0], magic[1], magic[2], magic[3], expected_ndims
        )));
    }
    if magic[2] != TYPE_U8 {
        return Err(ParseError(format!(
            "element type 0x{:02x} is not supported, expected 0x08 (unsigned byte)",
            magic[2]
        )));
    }
    let ndims = magic[3] as usize;
    if ndims != expected_ndims {
        return Err(ParseError(format!(
            "has {ndims} dimensions, expected {expected_ndims}"
        )));
    }
    let mut dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        let dim = reader
            .read_u32::<BigEndian>()
            .map_err(|e| describe_read_error(e, "header"))?;
        dims.push(dim as usize);
    }
    let header_len = 4 + 4 * ndims as u64;
    // u32 dimensions multiplied in u128 cannot overflow.
    let element_count: u128 = dims.iter().map(|&d| d as u128).product();
    let total = header_len as u128 + element_count;
    if total > limits.max_payload as u128 {
        return Err(ParseError(format!(
            "header claims {} ({element_count} bytes of data) but the file can hold at most {} bytes (truncated file or corrupt header)",
            describe_dims(&dims),
            limits.max_payload.saturating_sub(header_len)
        )));
    }
    if let Some(declared) = limits.gzip_declared_size {
        if (total as u64) as u32 != declared {
            return Err(ParseError(format!(
                "header claims {} ({total} bytes in all) but the gzip trailer records {declared} bytes: the gzip stream is truncated or corrupt",
                describe_dims(&dims)
            )));
        }
    }
    Ok(dims)
}

fn describe_dims(dims: &[usize]) -> String {
    let joined: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("dimensions {}", joined.join("x"))
}

/// Encodes an IDX file of unsigned bytes (the inverse of [`read_idx`]); used to write
/// datasets and test fixtures.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, TYPE_U8, dims.len() as u8];
    for &dim in dims {
        bytes.extend_from_slice(&(dim as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn error_of(bytes: &[u8], ndims: usize) -> String {
        let (_dir, path) = write_temp(bytes);
        let error = read_idx_file(&path, ndims).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        error
    }

    #[test]
    fn raw_and_gzip_files_decode_to_the_same_array() {
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 7) as u8).collect();
        let encoded = encode_idx(&[2, 3, 4], &data);
        for bytes in [encoded.clone(), gzip(&encoded)] {
            let (_dir, path) = write_temp(&bytes);
            let array = read_idx_file(&path, 3).unwrap();
            assert_eq!(array.dims, vec![2, 3, 4]);
            assert_eq!(array.data, data);
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_by_name() {
        let encoded = encode_idx(&[3], &[1, 2, 3]);
        let dir = tempfile::tempdir().unwrap();
        // A gzip file without .gz, and a raw file named .gz.
        let gzip_path = dir.path().join("labels");
        let raw_path = dir.path().join("labels.gz");
        std::fs::write(&gzip_path, gzip(&encoded)).unwrap();
        std::fs::write(&raw_path, &encoded).unwrap();
        assert_eq!(read_idx_file(&gzip_path, 1).unwrap().data, vec![1, 2, 3]);
        assert_eq!(read_idx_file(&raw_path, 1).unwrap().data, vec![1, 2, 3]);
    }

    #[test]
    fn rejects_wrong_magic() {
        let mut bytes = encode_idx(&[3], &[1, 2, 3]);
        bytes[0] = 0x42;
        assert!(error_of(&bytes, 1).contains("not an IDX file"));
    }

    #[test]
    fn rejects_element_types_other_than_unsigned_byte() {
        let mut bytes = encode_idx(&[3], &[1, 2, 3]);
        bytes[2] = 0x0D; // float
        assert!(error_of(&bytes, 1).contains("element type 0x0d"));
    }

    #[test]
    fn rejects_wrong_dimension_count() {
        let bytes = encode_idx(&[1, 3], &[1, 2, 3]);
        assert!(error_of(&bytes, 1).contains("has 2 dimensions, expected 1"));
    }

    #[test]
    fn rejects_truncated_header_and_body() {
        let bytes = encode_idx(&[2, 2, 2], &[0; 8]);
        assert!(error_of(&bytes[..6], 3).contains("truncated header"));
        let error = error_of(&bytes[..bytes.len() - 1], 3);
        assert!(error.contains("file can hold at most"), "{error}");
        let error = error_of(&gzip(&bytes[..bytes.len() - 1]), 3);
        assert!(error.contains("gzip trailer records"), "{error}");
    }

    #[test]
    fn rejects_data_beyond_the_header() {
        let mut bytes = encode_idx(&[3], &[1, 2, 3]);
        bytes.push(9);
        let error = error_of(&bytes, 1);
        assert!(
            error.contains("more data than its header declares"),
            "{error}"
        );
    }

    #[test]
    fn rejects_empty_files() {
        assert!(error_of(&[], 1).contains("is empty"));
    }

    #[test]
    fn rejects_corrupt_gzip() {
        let mut bytes = gzip(&encode_idx(&[64], &[7; 64]));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xFF;
        bytes[middle + 1] ^= 0xFF;
        let error = error_of(&bytes, 1);
        assert!(
            error.contains("corrupt gzip")
                || error.contains("gzip trailer")
                || error.contains("truncated"),
            "{error}"
        );
    }

    #[test]
    fn rejects_a_header_claiming_billions_of_images_without_allocating() {
        // 4e9 images of 28x28 in a 16-byte file: refused by the size check, before any allocation.
        let bytes = encode_idx(&[4_000_000_000, 28, 28], &[]);
        assert!(error_of(&bytes, 3).contains("header claims"));
        assert!(error_of(&gzip(&bytes), 3).contains("header claims"));
    }

    #[test]
    fn stops_reading_a_gzip_stream_that_inflates_past_its_header() {
        // The header says 4 bytes, the stream carries a megabyte.
        let mut bytes = encode_idx(&[4], &[1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(0u8, 1 << 20));
        let error = error_of(&gzip(&bytes), 1);
        assert!(
            error.contains("gzip trailer") || error.contains("more data"),
            "{error}"
        );
    }
}
