//! Incremental decoder for replies of both protocols.
use super::{ProtocolError, Response};

/// Decodes replies of either protocol.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    /// Largest value the decoder accepts (a larger `VALUE`/`VA` header is a protocol error,
    /// before any allocation).
    pub max_value_size: usize,
}

impl Decoder {
    /// Decode one reply from the start of `buf`. `Ok(None)`: incomplete, read more.
    /// `Ok(Some((response, used)))`: `used` bytes were consumed.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Response, usize)>, ProtocolError> {
        let _ = buf;
        todo!("protocol helper")
    }
}
