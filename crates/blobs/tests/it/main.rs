//! The blob stores as their callers see them: the file store on a temporary
//! directory, the S3 store on moto and on servers that fail on purpose.

mod file;
mod s3;

/// `len` bytes that differ from any other length's and from their own
/// shifts, so a truncation or a swapped block is never the same bytes.
fn payload(len: usize, seed: u8) -> bytes::Bytes {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect::<Vec<u8>>()
        .into()
}
