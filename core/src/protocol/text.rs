//! Classic ASCII protocol encoder.
use super::Request;

/// Append the text-protocol bytes of `req` to `out`.
pub fn encode(req: &Request<'_>, out: &mut Vec<u8>) {
    let _ = (req, out);
    todo!("protocol helper")
}
